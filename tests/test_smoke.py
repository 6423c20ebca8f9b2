from tests.support.servers import run_psql


def test_psql_runs_a_query_through_the_proxy(proxy):
    done = run_psql(proxy.url(), "-Atc", "select 40 + 2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
