"""The pgml function registry: signatures, overload resolution, STRICT rules, and calls into the engines.

Nothing here speaks the wire protocol: entries take batches of bound argument tuples and return Python
values; the session encodes them.
"""
