"""``import korvus``: the same SDK under the name PostgresML's SDK was republished as; it also reads
``KORVUS_DATABASE_URL``."""

from pgml import *  # noqa: F403 - a re-export is the whole point
from pgml import __all__, __version__  # noqa: F401
from pgml.connection import DSN_VARIABLES

if "KORVUS_DATABASE_URL" not in DSN_VARIABLES:
    DSN_VARIABLES.insert(0, "KORVUS_DATABASE_URL")
