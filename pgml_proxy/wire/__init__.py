"""Postgres wire protocol v3: framing and the codecs for the messages the proxy reads or writes.

Nothing here knows about SQL or ML; every module is sans-I/O (bytes in, values or bytes out).
"""
