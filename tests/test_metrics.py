"""Observability: Prometheus /metrics, /healthz and /readyz of a real proxy (``--metrics-listen``), driven by
real clients; and the HTTP endpoint and the metrics module on their own."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from pgml_proxy import __version__, metrics, metrics_http
from pgml_proxy.metrics_http import MetricsServer
from tests.conftest import EMBED_MODEL, Upstream
from tests.support.raw import RawClient
from tests.support.servers import ProxyProcess, free_port, start_proxy, wait_until

MAX_CONNECTIONS = 4

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- helpers -------------------------------------------------------------------------------------------


class Endpoint:
    """A proxy's monitoring endpoint."""

    def __init__(self, port: int) -> None:
        self.port = port

    def get(self, path: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode(), dict(answer.headers)
        except urllib.error.HTTPError as failed:
            return failed.code, failed.read().decode(), dict(failed.headers)

    def raw(self, data: bytes, *, shutdown: bool = True) -> bytes:
        """Send ``data`` as it is and read the answer until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    def samples(self) -> Samples:
        status, text, headers = self.get("/metrics")
        assert status == 200, text
        assert headers["Content-Type"] == CONTENT_TYPE_LATEST
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.samples().get((name, frozenset(labels.items())), 0.0)


def statements(endpoint: Endpoint) -> dict[str, float]:
    found = endpoint.samples()
    return {
        path: found.get(("pgml_proxy_statements_total", frozenset({("path", path)})), 0.0)
        for path in metrics.PATHS
    }


def grew(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before if after[key] != before[key]}


@pytest.fixture(scope="module")
def metered(upstream: Upstream) -> Iterator[tuple[ProxyProcess, Endpoint]]:
    """A proxy of this module's own, so that no other test's traffic moves its counters."""
    port = free_port()
    process = start_proxy(
        upstream.socket_dsn,
        "--metrics-listen",
        f"127.0.0.1:{port}",
        "--max-connections",
        str(MAX_CONNECTIONS),
    )
    yield process, Endpoint(port)
    process.stop()


@pytest.fixture
def proxy_url(metered: tuple[ProxyProcess, Endpoint]) -> str:
    return metered[0].url()


@pytest.fixture
def endpoint(metered: tuple[ProxyProcess, Endpoint]) -> Endpoint:
    return metered[1]


# -- counters moved by real clients -----------------------------------------------------------------------


def test_metrics_address_is_printed_and_output_parses(metered):
    process, endpoint = metered
    assert f"pgml-proxy metrics: http://127.0.0.1:{endpoint.port}/metrics" in process.log
    status, text, _ = endpoint.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in (
        "pgml_proxy_info",
        "pgml_proxy_client_connections",
        "pgml_proxy_client_connections_accepted",
        "pgml_proxy_client_connections_refused",
        "pgml_proxy_upstream_connections",
        "pgml_proxy_statements",
        "pgml_proxy_relayed_bytes",
        "pgml_proxy_model_cache_bytes",
        "pgml_proxy_models_loaded",
        "pgml_proxy_model_loads",
        "pgml_proxy_model_evictions",
    ):
        assert name in families, name
    assert endpoint.value("pgml_proxy_info", version=__version__) == 1
    assert all(name.startswith("pgml_proxy_") for name in families)


def test_plain_statements_count_once_each_on_the_fast_path(proxy_url, endpoint, metered):
    process, _ = metered
    before = statements(endpoint)
    # extended protocol, never prepared by psycopg: one Parse each
    with psycopg.connect(proxy_url, autocommit=True, prepare_threshold=None) as conn:
        for n in range(5):
            assert conn.execute("select %s::int", (n,)).fetchone() == (n,)
    client = RawClient(process.host, process.port)  # simple protocol: one Query each, however many statements
    client.startup()
    client.query("select 1; select 2")
    client.query("select 3")
    client.close()
    assert grew(before, statements(endpoint)) == {"fast": 7}


def test_bytes_relayed_are_counted_both_ways(proxy_url, endpoint):
    def relayed(direction: str) -> float:
        return endpoint.value("pgml_proxy_relayed_bytes_total", direction=direction)

    up, down = relayed("client_to_upstream"), relayed("upstream_to_client")
    query = "select repeat('x', 200000), '" + "y" * 5000 + "'"
    with psycopg.connect(proxy_url, autocommit=True) as conn:
        conn.execute(query).fetchone()
    assert relayed("client_to_upstream") - up > 5000
    assert relayed("upstream_to_client") - down > 200000


def test_connection_gauges_go_up_and_back_down(proxy_url, endpoint):
    assert wait_until(lambda: endpoint.value("pgml_proxy_client_connections") == 0)
    accepted = endpoint.value("pgml_proxy_client_connections_accepted_total")
    first = psycopg.connect(proxy_url)
    second = psycopg.connect(proxy_url)
    try:
        assert endpoint.value("pgml_proxy_client_connections") == 2
        assert endpoint.value("pgml_proxy_upstream_connections") == 2
        assert endpoint.value("pgml_proxy_client_connections_accepted_total") == accepted + 2
    finally:
        first.close()
        second.close()
    assert wait_until(lambda: endpoint.value("pgml_proxy_client_connections") == 0)
    assert wait_until(lambda: endpoint.value("pgml_proxy_upstream_connections") == 0)


def test_connection_refused_over_the_limit_is_counted_with_its_sqlstate(proxy_url, endpoint):
    refused = endpoint.value("pgml_proxy_client_connections_refused_total")
    too_many = endpoint.value("pgml_proxy_errors_total", sqlstate="53300")
    held = [psycopg.connect(proxy_url) for _ in range(MAX_CONNECTIONS)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            psycopg.connect(proxy_url)
    finally:
        for conn in held:
            conn.close()
    assert endpoint.value("pgml_proxy_client_connections_refused_total") == refused + 1
    assert endpoint.value("pgml_proxy_errors_total", sqlstate="53300") == too_many + 1


def test_proxy_errors_are_counted_by_sqlstate_once_each(proxy_url, endpoint):
    """A call matching no overload fails in the proxy (42883), outside a block and inside one (where the
    upstream is made to raise the same error: still one error of the proxy's)."""
    before = endpoint.value("pgml_proxy_errors_total", sqlstate="42883")
    upstream_errors = endpoint.value("pgml_proxy_errors_total", sqlstate="42P01")
    with psycopg.connect(proxy_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("select pgml.embed(1, 2, 3, 4, 5)")
        conn.execute("begin")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("select pgml.embed(1, 2, 3, 4, 5)")
        conn.execute("rollback")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table_here")
    assert endpoint.value("pgml_proxy_errors_total", sqlstate="42883") == before + 2
    # the upstream's own errors are relayed, not counted
    assert endpoint.value("pgml_proxy_errors_total", sqlstate="42P01") == upstream_errors


def test_upstream_errors_are_counted_apart_from_the_proxys(proxy_url, endpoint):
    """Errors relayed from the upstream count by SQLSTATE under both protocols; an error the proxy has the
    upstream raise for it (inside a transaction block) is the proxy's only."""
    missing = endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="42P01")
    division = endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="22012")
    raised = endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="42883")
    with psycopg.connect(proxy_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table_here")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select %s::int / 0", (1,))  # extended protocol
        conn.execute("begin")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("select pgml.embed(1, 2, 3, 4, 5)")
        conn.execute("rollback")
    assert endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="42P01") == missing + 1
    assert endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="22012") == division + 1
    assert endpoint.value("pgml_proxy_upstream_errors_total", sqlstate="42883") == raised


def test_embed_calls_count_by_path_function_and_model_and_record_batches(proxy_url, endpoint):
    model = EMBED_MODEL
    labels = {"function": "embed", "model": model}
    batch_labels = {"function": "embed", "model": model}
    calls = endpoint.value("pgml_proxy_pgml_calls_total", **labels)
    before = statements(endpoint)
    with psycopg.connect(proxy_url, autocommit=True) as conn:
        conn.execute(f"select pgml.embed('{model}', 'hello')").fetchone()  # answered by the proxy
        assert statements(endpoint)["answer"] == before["answer"] + 1
        assert endpoint.value("pgml_proxy_pgml_calls_total", **labels) == calls + 1
        assert endpoint.value("pgml_proxy_pgml_call_seconds_count", **labels) >= 1
        assert endpoint.value("pgml_proxy_pgml_call_rows_total", **labels) >= 1
        assert endpoint.value("pgml_proxy_engine_batch_items_count", **batch_labels) >= 1
        assert endpoint.value("pgml_proxy_engine_batch_items_sum", **batch_labels) >= 1
        assert endpoint.value("pgml_proxy_engine_queue_wait_seconds_count", **batch_labels) >= 1
        assert endpoint.value("pgml_proxy_engine_started") == 1
        assert endpoint.value("pgml_proxy_models_loaded") >= 1
        assert endpoint.value("pgml_proxy_model_cache_bytes") > 0
        assert endpoint.value("pgml_proxy_model_loads_total") >= 1

        rows = "(values ('a'), ('b'), ('c')) v(t)"
        before = statements(endpoint)
        conn.execute(f"select t, pgml.embed('{model}', t) from {rows}").fetchall()
        conn.execute(f"select count(*) from {rows} where pgml.embed('{model}', t) is not null").fetchall()
        conn.execute(f"select relname, pgml.embed('{model}', 'x') from pg_class limit 1").fetchall()
        conn.execute("select count(*) from pg_class").fetchall()
        assert grew(before, statements(endpoint)) == {"splice": 1, "materialize": 1, "fold": 1, "fast": 1}

    # the extended protocol: counted at Parse, by the plan made there
    with psycopg.connect(proxy_url, autocommit=True, prepare_threshold=None) as conn:
        before = statements(endpoint)
        conn.execute("select pgml.embed(%s, %s) is not null", (model, "x")).fetchall()
        conn.execute(f"select t, pgml.embed(%s, t) from {rows}", (model,)).fetchall()
        assert grew(before, statements(endpoint)) == {"fold": 1, "splice": 1}

        batches = endpoint.value("pgml_proxy_engine_batch_items_count", **batch_labels)
        conn.execute(f"select pgml.embed(m, 'x') from (values ('{model}')) v(m)").fetchall()
        assert endpoint.value("pgml_proxy_engine_batch_items_count", **batch_labels) == batches + 1
        # a model taken from the rows is still one model per window here: its name is the label
        assert endpoint.value("pgml_proxy_pgml_calls_total", **labels) >= calls + 5


def test_healthz_and_readyz_answer_while_serving(endpoint):
    assert endpoint.get("/healthz")[:2] == (200, "ok\n")
    assert endpoint.get("/readyz")[:2] == (200, "ready\n")
    status, body, headers = endpoint.get("/healthz", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, "", "3")


def test_unknown_paths_get_404_and_other_methods_405(endpoint):
    assert endpoint.get("/nope")[0] == 404
    assert endpoint.get("/metrics/x")[0] == 404
    status, _, headers = endpoint.get("/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert endpoint.get("/metrics?name[]=x")[0] == 200  # the query string is ignored


def test_garbage_and_slow_requests_never_harm_the_proxy(metered, proxy_url, endpoint):
    assert endpoint.raw(b"\x00\xff\xfe garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert endpoint.raw(b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert endpoint.raw(b"GET /metrics HTTP/1.1\r\n" + b"X" * 9000).startswith(b"HTTP/1.1 400 ")
    assert endpoint.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").startswith(b"HTTP/1.1 400 ")  # cut short
    assert endpoint.raw(b"") == b""  # connected, sent nothing, went away
    idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(5)]  # slow clients
    try:
        assert endpoint.get("/healthz")[0] == 200
        with psycopg.connect(proxy_url, autocommit=True) as conn:
            assert conn.execute("select 'still relaying'").fetchone() == ("still relaying",)
    finally:
        for sock in idle:
            sock.close()
    assert metered[0].process.poll() is None


def test_readyz_is_503_while_the_upstream_is_unreachable(proxy_factory):
    dead = free_port()  # nothing listens there
    port = free_port()
    proxy = proxy_factory(
        "--metrics-listen", f"127.0.0.1:{port}", upstream_dsn=f"postgresql://127.0.0.1:{dead}/x"
    )
    endpoint = Endpoint(port)
    status, body, _ = endpoint.get("/readyz")
    assert status == 503 and body.startswith("not ready: upstream unreachable"), body
    assert endpoint.get("/healthz")[0] == 200  # alive, just not ready
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.url(), connect_timeout=5)
    assert endpoint.value("pgml_proxy_errors_total", sqlstate="08006") >= 1


def test_readyz_is_503_while_shutting_down(proxy_factory):
    port = free_port()
    proxy = proxy_factory("--metrics-listen", f"127.0.0.1:{port}", "--shutdown-grace", "10")
    endpoint = Endpoint(port)
    assert endpoint.get("/readyz")[0] == 200
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        done = threading.Event()
        worker = threading.Thread(target=lambda: (conn.execute("select pg_sleep(3)"), done.set()))
        worker.start()
        time.sleep(0.5)  # the statement is running
        proxy.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: endpoint.get("/readyz")[:2] == (503, "not ready: shutting down\n"), 5)
        worker.join(10)
        assert done.is_set()  # the running statement finished during the grace period
    assert proxy.process.wait(20) == 0


# -- the endpoint and the module on their own ---------------------------------------------------------------


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_endpoint_answers_each_request_and_closes():
    reasons: list[str | None] = ["upstream unreachable: refused", None]

    async def readiness() -> str | None:
        return reasons.pop(0)

    server = MetricsServer(readiness)
    _, port = await server.listen("127.0.0.1", 0)
    try:
        answer = await _exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Connection: close\r\n" in answer
        assert answer.endswith(b"\r\n\r\nnot ready: upstream unreachable: refused\n")
        assert (await _exchange(port, b"GET /readyz HTTP/1.0\r\n\r\n")).endswith(b"\r\n\r\nready\n")
        head = await _exchange(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert b"Content-Length: 0\r\n" not in head and head.endswith(b"\r\n\r\n")
        assert (await _exchange(port, b"DELETE /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        assert (await _exchange(port, b"GET http://x/ HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        too_many_headers = b"GET /healthz HTTP/1.1\r\n" + b"A: b\r\n" * 200 + b"\r\n"
        assert (await _exchange(port, too_many_headers)).startswith(b"HTTP/1.1 400 ")
    finally:
        await server.close()


async def test_endpoint_drops_a_client_that_is_too_slow(monkeypatch):
    monkeypatch.setattr(metrics_http, "REQUEST_TIMEOUT", 0.2)

    async def readiness() -> str | None:
        return None

    server = MetricsServer(readiness)
    _, port = await server.listen("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HT")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ")
        writer.close()
        assert (await _exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")
    finally:
        await server.close()


async def test_a_failing_collector_fails_the_scrape_not_the_endpoint(monkeypatch):
    def broken(registry: object) -> bytes:
        raise RuntimeError("collector broke")

    monkeypatch.setattr(metrics_http, "generate_latest", broken)

    async def readiness() -> str | None:
        return None

    server = MetricsServer(readiness)
    _, port = await server.listen("127.0.0.1", 0)
    try:
        assert (await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 500 ")
        assert (await _exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    finally:
        await server.close()


def test_samples_lists_every_metric_sorted_with_histograms_as_count_and_sum():
    metrics.pgml_call("embed", metrics.model_label("unit-test-model"), 3, 0.25)
    found = metrics.samples()
    assert found == sorted(found, key=lambda s: (s[0], sorted(s[1].items())))
    names = {name for name, _, _ in found}
    assert {"pgml_proxy_info", "pgml_proxy_statements_total", "pgml_proxy_model_cache_bytes"} <= names
    assert ("pgml_proxy_info", {"version": __version__}, 1.0) in found
    labels = {"function": "embed", "model": "unit-test-model"}
    assert ("pgml_proxy_pgml_call_seconds_count", labels, 1.0) in found
    assert ("pgml_proxy_pgml_call_seconds_sum", labels, 0.25) in found
    assert ("pgml_proxy_pgml_call_rows_total", labels, 3.0) in found
    assert not any(name.endswith(("_bucket", "_created")) for name in names)
    assert all(isinstance(value, float) for _, _, value in found)


def test_model_labels_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "_models", set())
    assert metrics.model_label(42) == "42"  # a model id
    assert metrics.model_label(None) == ""
    assert [metrics.model_label(f"m{i}") for i in range(1, metrics.MAX_MODELS)] == [
        f"m{i}" for i in range(1, metrics.MAX_MODELS)
    ]
    assert metrics.model_label("one-too-many") == metrics.OTHER_MODEL
    assert metrics.model_label("m7") == "m7"  # one seen before keeps its name
    assert metrics.model_label("x" * (metrics.MAX_MODEL_NAME + 1)) == metrics.OTHER_MODEL


def test_fast_path_counts_are_plain_integers():
    """The relay only bumps integers; the collector reads them at scrape time."""
    before = metrics.RELAY.statements
    from pgml_proxy.session.client_side import ClientSide

    side = ClientSide()
    side.authenticated()
    query = b"select 1\x00"
    out, intercepted = side.feed(b"Q" + (len(query) + 4).to_bytes(4, "big") + query)
    assert intercepted is None and out
    assert metrics.RELAY.statements == before + 1
    pgml = b"select pgml.version()\x00"
    _, intercepted = side.feed(b"Q" + (len(pgml) + 4).to_bytes(4, "big") + pgml)
    assert intercepted is not None
    assert metrics.RELAY.statements == before + 1  # handed to the session, which counts it by its path
