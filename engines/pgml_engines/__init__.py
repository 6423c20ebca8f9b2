"""ML execution for pgml-proxy: model resolution and loading, devices, batching, training workers.

This distribution stands alone (it never imports ``pgml_proxy``) so that it can later run on GPU
hosts apart from the proxy. Importing it is cheap: torch and the model libraries load when an Engine is made.
"""

from .config import EngineConfig
from .engine import Engine, EngineStats
from .errors import EngineError, EngineFailure, InvalidArgument, ModelNotFound, NotAllowed

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineFailure",
    "EngineStats",
    "InvalidArgument",
    "ModelNotFound",
    "NotAllowed",
]
