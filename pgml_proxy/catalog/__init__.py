"""The ``pgml`` schema in the upstream database (contract §3, design §6), as SQL text for the session to run.

Sans-I/O: nothing here connects anywhere. ``CREATE EXTENSION pgml`` sent through the proxy becomes
``install_sql(...)``, ``DROP EXTENSION pgml`` becomes ``drop_sql(...)``, and ``installed_version_sql()``
tells whether (and at which version) a database has the catalog.

- ``schema``: migrations (``migrations/NNNN_<name>.sql``), install, version probe, drop.
- ``stubs``: the typed stubs generated from the function registry.
"""

from pgml_proxy.catalog.schema import LATEST_VERSION, drop_sql, install_sql, installed_version_sql

__all__ = ["LATEST_VERSION", "drop_sql", "install_sql", "installed_version_sql"]
