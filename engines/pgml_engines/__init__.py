"""ML execution for pgml-proxy: model resolution and loading, devices, batching, training workers.

This distribution stands alone (it never imports ``pgml_proxy``) so that it can later run on GPU
hosts apart from the proxy.
"""

__version__ = "0.1.0"
