"""pgml-proxy: the PostgresML SQL API for any PostgreSQL, as a wire-protocol proxy."""

__version__ = "0.1.0"
