"""The proxy's Prometheus metrics: the one place metric objects are defined (served by :mod:`metrics_http`).

Process-wide, in a registry of our own (:data:`REGISTRY`, not prometheus_client's global default), so an
application or a test that imports prometheus_client sees nothing of ours and we see nothing of theirs.

Costs are chosen per path:

- The relay's hot path (every Query or Parse relayed as is, every chunk read) only adds to plain integers in
  :data:`RELAY`, with no lock and no label lookup; :class:`_RelayCollector` turns them into samples when
  someone scrapes. Everything runs on the event loop's thread, so the integers need no lock either.
- What the engine already counts (model cache, loads, evictions) is read from ``Engine.stats()`` at scrape time
  (:class:`_EngineCollector`), never counted twice.
- Everything else happens per connection, per pgml call, per batch or per error, where a prometheus_client
  metric object (a lock and a label lookup) costs nothing that matters.

Label values that come from users (model and project names) are bounded: after :data:`MAX_MODELS` distinct
names, further ones are reported as ``other``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgml_proxy import __version__

if TYPE_CHECKING:
    from pgml_engines import Engine

REGISTRY: Final = CollectorRegistry(auto_describe=True)

PATHS: Final = ("fast", "fold", "splice", "materialize", "answer")
"""How a statement was run (DESIGN §1): relayed unchanged, constant calls folded in, calls spliced into the
rows, calls materialized for the upstream, or the whole answer written by the proxy."""

MAX_MODELS: Final = 200
MAX_MODEL_NAME: Final = 200
OTHER_MODEL: Final = "other"


class RelayCounts:
    """The relay's counters, plain integers bumped on the hot path (see the module's docstring).

    statements: Query and Parse messages relayed as they came (the fast path; a Parse is counted once, however
    often its statement is executed, since the relay does not look at Bind or Execute); client_bytes and
    upstream_bytes: bytes read from clients and from upstream servers, counted per chunk read.
    """

    __slots__ = ("client_bytes", "statements", "upstream_bytes")

    def __init__(self) -> None:
        self.statements = 0
        self.client_bytes = 0
        self.upstream_bytes = 0


RELAY: Final = RelayCounts()
_intercepted: dict[str, int] = dict.fromkeys(PATHS, 0)  # statements by path, "fast" ones handed back included


def statement(path: str) -> None:
    """Count a statement the session looked at (its text mentions pgml, or it follows tracked state)."""
    _intercepted[path] += 1


# -- connections -----------------------------------------------------------------------------------

CLIENT_CONNECTIONS: Final = Gauge(
    "pgml_proxy_client_connections",
    "Client connections open now (cancel requests and connections still starting up included).",
    registry=REGISTRY,
)
CLIENT_CONNECTIONS_ACCEPTED: Final = Counter(
    "pgml_proxy_client_connections_accepted",
    "Client connections accepted.",
    registry=REGISTRY,
)
CLIENT_CONNECTIONS_REFUSED: Final = Counter(
    "pgml_proxy_client_connections_refused",
    "Client connections refused past --max-connections (53300).",
    registry=REGISTRY,
)
UPSTREAM_CONNECTIONS: Final = Gauge(
    "pgml_proxy_upstream_connections",
    "Sessions' connections to the upstream server open now.",
    registry=REGISTRY,
)

# -- errors ----------------------------------------------------------------------------------------

ERRORS: Final = Counter(
    "pgml_proxy_errors",
    "ErrorResponses the proxy itself sent to clients, by SQLSTATE (errors relayed from the upstream are not "
    "counted).",
    ["sqlstate"],
    registry=REGISTRY,
)


def error(sqlstate: str) -> None:
    """Count an ErrorResponse the proxy made (not one relayed from the upstream)."""
    ERRORS.labels(sqlstate).inc()


UPSTREAM_ERRORS: Final = Counter(
    "pgml_proxy_upstream_errors",
    "ErrorResponses the upstream sent to clients through the proxy, by SQLSTATE (errors the upstream raised "
    "for the proxy are counted as the proxy's).",
    ["sqlstate"],
    registry=REGISTRY,
)


def upstream_error(sqlstate: str) -> None:
    """Count an ErrorResponse relayed from the upstream (errors are rare: a label lookup costs nothing)."""
    UPSTREAM_ERRORS.labels(sqlstate).inc()


# -- pgml calls --------------------------------------------------------------------------------------

CALLS: Final = Counter(
    "pgml_proxy_pgml_calls",
    "Calls of pgml functions computed by the proxy (a spliced call counts once per window of rows), by "
    "function and model or project (empty when not one constant text).",
    ["function", "model"],
    registry=REGISTRY,
)
CALL_ROWS: Final = Counter(
    "pgml_proxy_pgml_call_rows",
    "Argument rows given to pgml function calls.",
    ["function", "model"],
    registry=REGISTRY,
)
CALL_SECONDS: Final = Histogram(
    "pgml_proxy_pgml_call_seconds",
    "Time a pgml function call took (a streaming one: from its start to its last row).",
    ["function", "model"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)
BATCH_ITEMS: Final = Histogram(
    "pgml_proxy_engine_batch_items",
    "Inputs per model call of the engine's batchers (requests of all sessions batched together).",
    ["function", "model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    registry=REGISTRY,
)
QUEUE_WAIT: Final = Histogram(
    "pgml_proxy_engine_queue_wait_seconds",
    "Time a request waited in the engine's batch queue before its batch began.",
    ["function", "model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

_models: set[str] = set()


def model_label(model: object) -> str:
    """A model or project name as a label value: at most :data:`MAX_MODELS` distinct ones, then ``other``."""
    if model is None or isinstance(model, bool):
        return ""
    name = model if isinstance(model, str) else str(model)
    if name in _models:
        return name
    if len(_models) >= MAX_MODELS or len(name) > MAX_MODEL_NAME:
        return OTHER_MODEL
    _models.add(name)
    return name


def pgml_call(function: str, model: str, rows: int, seconds: float) -> None:
    """Count one computed call of ``pgml.<function>`` (``model``: a label from :func:`model_label`)."""
    CALLS.labels(function, model).inc()
    CALL_ROWS.labels(function, model).inc(rows)
    CALL_SECONDS.labels(function, model).observe(seconds)


def batch(function: str, model: str, items: int, waits: Sequence[float]) -> None:
    """The engine's batch observer (``Engine.observe_batches``): one model call starting now."""
    label = model_label(model)
    BATCH_ITEMS.labels(function, label).observe(items)
    queue_wait = QUEUE_WAIT.labels(function, label)
    for wait in waits:
        queue_wait.observe(wait)


# -- the engine --------------------------------------------------------------------------------------

_engine: weakref.ref[Engine] | None = None


def watch_engine(engine: Engine) -> None:
    """Report ``engine``'s model cache at scrape time and its batches as they run (the process's engine: one
    per process, started lazily by the interceptor)."""
    global _engine
    if _engine is not None and _engine() is engine:
        return
    _engine = weakref.ref(engine)
    engine.observe_batches(batch)


class _EngineCollector(Collector):
    """The engine's own counters, read from ``Engine.stats()`` when scraped (zeros before it starts)."""

    def collect(self) -> Iterator[Metric]:
        engine = _engine() if _engine is not None else None
        stats = engine.stats() if engine is not None else None
        yield _gauge(
            "pgml_proxy_engine_started",
            "1 once the engine (loaded on first use) has started.",
            int(engine is not None),
        )
        yield _gauge(
            "pgml_proxy_model_cache_bytes",
            "Estimated size of the models held in memory.",
            stats.model_bytes if stats else 0,
        )
        yield _gauge("pgml_proxy_models_loaded", "Models held in memory now.", stats.models if stats else 0)
        yield _counter("pgml_proxy_model_loads", "Models loaded into the cache.", stats.loads if stats else 0)
        yield _counter(
            "pgml_proxy_model_cache_hits",
            "Model cache lookups that found the model.",
            stats.hits if stats else 0,
        )
        yield _counter(
            "pgml_proxy_model_evictions",
            "Models evicted from the cache to stay in its memory budget.",
            stats.evictions if stats else 0,
        )
        yield _counter(
            "pgml_proxy_engine_requests_dropped",
            "Engine requests cancelled before their batch ran.",
            stats.dropped if stats else 0,
        )
        yield _gauge(
            "pgml_proxy_generation_streams_active",
            "Streaming generations running now.",
            stats.streams_active if stats else 0,
        )


class _RelayCollector(Collector):
    """Statements by path and bytes relayed, from plain integers (see :class:`RelayCounts`)."""

    def collect(self) -> Iterator[Metric]:
        statements = CounterMetricFamily(
            "pgml_proxy_statements",
            "Statements by how the proxy ran them: fast (relayed unchanged), fold, splice, materialize, "
            "answer. Counted per Query message, and per Parse under the extended protocol.",
            labels=["path"],
        )
        for path in PATHS:
            count = _intercepted[path] + (RELAY.statements if path == "fast" else 0)
            statements.add_metric([path], count)
        yield statements
        relayed = CounterMetricFamily(
            "pgml_proxy_relayed_bytes",
            "Bytes read from clients (client_to_upstream) and from upstream servers (upstream_to_client).",
            labels=["direction"],
        )
        relayed.add_metric(["client_to_upstream"], RELAY.client_bytes)
        relayed.add_metric(["upstream_to_client"], RELAY.upstream_bytes)
        yield relayed


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


INFO: Final = Gauge("pgml_proxy_info", "The running pgml-proxy (always 1).", ["version"], registry=REGISTRY)
INFO.labels(__version__).set(1)
REGISTRY.register(_RelayCollector())
REGISTRY.register(_EngineCollector())


# -- reading -----------------------------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def samples() -> list[Sample]:
    """Every sample of :data:`REGISTRY` as (name, labels, value), sorted by name and labels (for
    ``pgml.proxy_stats()``); histograms as their ``_count`` and ``_sum``, without buckets or ``_created``."""
    found: list[Sample] = []
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket", "_gcount", "_gsum")):
                continue
            found.append((sample.name, dict(sample.labels), float(sample.value)))
    found.sort(key=lambda s: (s[0], sorted(s[1].items())))
    return found
