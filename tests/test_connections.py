"""Connection lifecycle through a real proxy: auth relay, TLS, limits, lost peers, shutdown."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import asyncpg
import psycopg
import pytest

from pgml_proxy.wire.startup import startup_message
from tests.support.faults import FaultRelay
from tests.support.raw import RawClient, data_rows, errors
from tests.support.servers import PASSWORD, backends_named, wait_until
from tests.support.tls import self_signed


def sqlstate_of(exc: psycopg.Error) -> str | None:
    return exc.sqlstate or (exc.diag.sqlstate if exc.diag else None)


# -- authentication is relayed --------------------------------------------------------------------


@pytest.mark.parametrize("user", ["md5user", "scramuser"])
def test_password_authentication_is_relayed(proxy, user):
    with psycopg.connect(proxy.url(user=user, password=PASSWORD)) as conn:
        assert conn.execute("select current_user").fetchone() == (user,)


@pytest.mark.parametrize("user", ["md5user", "scramuser"])
def test_wrong_password_gets_upstream_28P01(proxy, user):
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(proxy.url(user=user, password="wrong"))
    assert "password authentication failed" in str(caught.value)
    client = RawClient(proxy.host, proxy.port)
    client.send(startup_message({"user": user, "database": "postgres"}))
    kind, _ = client.read_message()
    assert kind == "R"  # the upstream's password request reaches the client unchanged
    client.send(b"p" + (len(b"wrong") + 5).to_bytes(4, "big") + b"wrong\x00")
    [error] = errors(client.read_until_closed())
    assert error["C"] in ("28P01", "08P01")  # SCRAM rejects a non-SASL answer as a protocol violation


# -- TLS from client to proxy ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_from_client_to_proxy(proxy_factory, certificate):
    cert, key = certificate
    tls_proxy = proxy_factory("--tls-cert", str(cert), "--tls-key", str(key))
    with psycopg.connect(tls_proxy.url(sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 'over tls'").fetchone() == ("over tls",)
    # SCRAM over a TLS leg the proxy terminates: SCRAM-SHA-256-PLUS is never offered.
    with psycopg.connect(tls_proxy.url(user="scramuser", password=PASSWORD, sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select current_user").fetchone() == ("scramuser",)
    with psycopg.connect(tls_proxy.url(sslmode="disable")) as conn:
        assert not conn.pgconn.ssl_in_use


def test_cancel_over_tls_reaches_the_session(proxy_factory, certificate):
    cert, key = certificate
    tls_proxy = proxy_factory("--tls-cert", str(cert), "--tls-key", str(key))
    with psycopg.connect(tls_proxy.url(sslmode="require"), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(30)")
        assert conn.execute("select 'usable'").fetchone() == ("usable",)


def test_tls_required_by_client_but_not_configured_is_refused(proxy):
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(proxy.url(sslmode="require"))


# -- limits ---------------------------------------------------------------------------------------


def test_connections_beyond_limit_get_53300(proxy_factory):
    limited = proxy_factory("--max-connections", "2")
    first = psycopg.connect(limited.url(), autocommit=True)
    second = psycopg.connect(limited.url(), autocommit=True)
    try:
        client = RawClient(limited.host, limited.port)
        client.send(startup_message({"user": "postgres", "database": "postgres"}))
        [error] = errors(client.read_until_closed())
        assert error["C"] == "53300"
        assert error["S"] == "FATAL"

        # A cancel request is not a session: it still gets through at the limit.
        result: list[BaseException] = []

        def sleep() -> None:
            try:
                second.execute("select pg_sleep(30)")
            except psycopg.Error as exc:
                result.append(exc)

        thread = threading.Thread(target=sleep)
        thread.start()
        time.sleep(0.3)
        second.cancel_safe()
        thread.join(10)
        assert isinstance(result[0], psycopg.errors.QueryCanceled)
    finally:
        first.close()
    # A freed slot can be taken again.
    assert wait_until(lambda: _can_connect(limited.url()))
    second.close()


def _can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_max_connections_from_environment(proxy_factory):
    limited = proxy_factory(env={"PGML_PROXY_MAX_CONNECTIONS": "1"})
    with psycopg.connect(limited.url()), pytest.raises(psycopg.OperationalError, match="too many clients"):
        psycopg.connect(limited.url())


def test_max_connections_from_config_file(proxy_factory, tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text("max_connections = 1\n")
    limited = proxy_factory("--config", str(config))
    with psycopg.connect(limited.url()), pytest.raises(psycopg.OperationalError, match="too many clients"):
        psycopg.connect(limited.url())


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_stops_long_statement_promptly(proxy):
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute("select pg_sleep(30)")
        assert time.monotonic() - started < 5
        assert caught.value.sqlstate == "57014"
        assert conn.execute("select 'usable'").fetchone() == ("usable",)


# -- lost peers -----------------------------------------------------------------------------------


def test_upstream_connection_lost_gives_client_08006(proxy_factory, upstream):
    relay = FaultRelay(upstream.tcp_host, upstream.tcp_port)
    try:
        fronted = proxy_factory(
            upstream_dsn=f"postgresql://postgres@127.0.0.1:{relay.port}/postgres?sslmode=disable"
        )
        client = RawClient(fronted.host, fronted.port)
        client.startup()
        assert data_rows(client.query("select 1")) == [["1"]]
        relay.drop_all()
        [error] = errors(client.read_until_closed())
        assert error["C"] == "08006"
        assert error["S"] == "FATAL"
        with psycopg.connect(fronted.url()) as conn:  # the proxy itself carries on
            assert conn.execute("select 2").fetchone() == (2,)
    finally:
        relay.close()


def test_upstream_lost_while_the_proxy_computes_a_bind_fails_that_session_quietly(proxy_factory, upstream):
    """The server ends the session (FATAL 57P01) while the proxy embeds a Bind's arguments: the client's
    connection ends, the proxy logs no traceback (its own failure once went to the closed upstream), and
    serves the next client."""
    fronted = proxy_factory()
    texts = [f"sentence {n} about {n * 7919 % 1000}" for n in range(3000)]
    failures: list[BaseException] = []

    async def bind_and_execute() -> None:
        conn = await asyncpg.connect(fronted.url(), server_settings={"application_name": "bind_lost"})
        try:
            await conn.fetchval(
                "select count(*) from pgml.embed('sentence-transformers/all-MiniLM-L6-v2', $1::text[])", texts
            )
        finally:
            conn.terminate()

    def embed() -> None:
        try:
            asyncio.run(bind_and_execute())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            failures.append(exc)

    with psycopg.connect(fronted.url(), autocommit=True) as conn:  # loaded: what follows is computation
        conn.execute("select pgml.embed('sentence-transformers/all-MiniLM-L6-v2', 'warm')").fetchone()
    worker = threading.Thread(target=embed)
    worker.start()
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        assert wait_until(lambda: backends_named(direct, "bind_lost") == 1, timeout=30)
        time.sleep(1.0)  # embedding 3,000 texts takes seconds: the FATAL lands mid-computation
        direct.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'bind_lost'"
        )
    worker.join(120)
    assert not worker.is_alive()
    # The server's FATAL reaches the client mid-operation; asyncpg reports it as the connection closing.
    assert [getattr(f, "sqlstate", None) for f in failures] in (["57P01"], ["08003"])
    with psycopg.connect(fronted.url()) as conn:  # the proxy itself carries on
        assert conn.execute("select 2").fetchone() == (2,)
    assert fronted.stop() == 0  # a failed task is reported when it is collected: at the latest, on exit
    assert "Traceback" not in fronted.log
    assert "exception was never retrieved" not in fronted.log


def test_client_gone_cancels_its_upstream_statement(proxy, upstream):
    client = RawClient(proxy.host, proxy.port)
    client.startup(application_name="vanishing-client")
    client.send_query("select pg_sleep(30)")
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        assert wait_until(lambda: backends_named(direct, "vanishing-client") == 1)
        client.sock.close()
        started = time.monotonic()
        assert wait_until(lambda: backends_named(direct, "vanishing-client") == 0, timeout=10)
        assert time.monotonic() - started < 5


# -- shutdown -------------------------------------------------------------------------------------


def test_sigterm_lets_running_statement_finish_then_exits(proxy_factory):
    stopping = proxy_factory("--shutdown-grace", "20")
    busy = psycopg.connect(stopping.url(), autocommit=True)
    idle = psycopg.connect(stopping.url(), autocommit=True)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(busy.execute("select pg_sleep(2), 'finished'").fetchone())
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    stopping.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stopping.url(), connect_timeout=2)  # no longer accepting
    thread.join(10)
    assert outcome and not isinstance(outcome[0], BaseException), outcome
    assert outcome[0][1] == "finished"
    with pytest.raises(psycopg.OperationalError) as caught:
        idle.execute("select 1")
    assert "administrator command" in str(caught.value)
    assert stopping.process.wait(10) == 0
    busy.close()
    idle.close()


def test_statement_outliving_shutdown_grace_is_cancelled_upstream(proxy_factory, upstream):
    stopping = proxy_factory("--shutdown-grace", "0.5")
    client = RawClient(stopping.host, stopping.port)
    client.startup(application_name="outlives-grace")
    client.send_query("select pg_sleep(30)")
    with psycopg.connect(upstream.url(), autocommit=True) as direct:
        assert wait_until(lambda: backends_named(direct, "outlives-grace") == 1)
        stopping.process.send_signal(signal.SIGTERM)
        assert stopping.process.wait(10) == 0
        [error] = errors(client.read_until_closed())
        assert error["C"] == "57P01"
        assert wait_until(lambda: backends_named(direct, "outlives-grace") == 0, timeout=5)
