"""TLS from the proxy to its upstream, as the DSN's sslmode says.

The embedded PostgreSQL is built without SSL, so the TLS-speaking upstream here is a second pgml-proxy
with a certificate, in front of the real server: a Postgres-protocol TLS endpoint all the same.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.support.servers import ProxyProcess
from tests.support.tls import self_signed


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream-tls")
    return self_signed(folder, "server"), self_signed(folder, "stranger")


@pytest.fixture
def tls_upstream(proxy_factory, certificates) -> ProxyProcess:
    (cert, key), _ = certificates
    return proxy_factory("--tls-cert", str(cert), "--tls-key", str(key))


def chained(proxy_factory, upstream: ProxyProcess, **params: str) -> ProxyProcess:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return proxy_factory(upstream_dsn=f"postgresql://postgres@localhost:{upstream.port}/postgres?{query}")


@pytest.mark.parametrize("sslmode", ["prefer", "require", "verify-ca", "verify-full"])
def test_upstream_tls_per_sslmode(proxy_factory, tls_upstream, certificates, sslmode):
    (cert, _), _ = certificates
    front = chained(proxy_factory, tls_upstream, sslmode=sslmode, sslrootcert=str(cert))
    with psycopg.connect(front.url()) as conn:
        assert conn.execute("select 'through two proxies'").fetchone() == ("through two proxies",)


def test_upstream_certificate_from_unknown_authority_is_refused(proxy_factory, tls_upstream, certificates):
    _, (stranger, _) = certificates
    front = chained(proxy_factory, tls_upstream, sslmode="verify-full", sslrootcert=str(stranger))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(front.url())


def test_sslmode_require_refuses_an_upstream_without_tls(proxy_factory, proxy):
    front = chained(proxy_factory, proxy, sslmode="require")
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(front.url())
