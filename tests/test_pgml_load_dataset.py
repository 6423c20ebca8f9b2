"""pgml.load_dataset through real clients: the toy tables exactly as PostgresML makes them (contract §2.4)."""

from __future__ import annotations

import asyncpg
import psycopg
import psycopg.errors
import pytest

from tests.support.servers import PASSWORD, ProxyProcess, run_psql

# (table, rows, columns in order with their types as information_schema spells them)
TABLES = {
    "iris": (150, ["sepal_length", "sepal_width", "petal_length", "petal_width", "target"]),
    "wine": (178, None),
    "diabetes": (442, ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"]),
    "digits": (1797, ["image", "target"]),
    "linnerud": (20, ["chins", "situps", "jumps", "weight", "waist", "pulse"]),
    "breast_cancer": (569, None),
}


def _columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'pgml' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()


@pytest.mark.parametrize("source", sorted(TABLES))
def test_each_toy_dataset_becomes_its_table(proxy: ProxyProcess, source: str) -> None:
    rows, names = TABLES[source]
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        cursor = conn.execute("SELECT * FROM pgml.load_dataset(%s)", (source,))
        assert cursor.description is not None
        assert [(c.name, c.type_code) for c in cursor.description] == [("table_name", 25), ("rows", 20)]
        assert cursor.fetchall() == [(f"pgml.{source}", rows)]
        assert conn.execute(f"SELECT count(*) FROM pgml.{source}").fetchone() == (rows,)
        columns = _columns(conn, source)
    if names is not None:
        assert [name for name, _ in columns] == names
    types = dict(columns)
    if source == "digits":
        assert types == {"image": "_int2", "target": "int2"}
    elif source in ("iris", "wine"):
        assert types.pop("target") == "int4" and set(types.values()) == {"float4"}
    elif source == "breast_cancer":
        assert types.pop("malignant") == "bool" and set(types.values()) == {"float4"}
        assert (
            list(types)[:2] == ["mean radius", "mean texture"]
            and list(types)[-1] == "worst fractal dimension"
        )
        assert len(types) == 30
    else:
        assert set(types.values()) == {"float4"}


def test_values_follow_scikit_learn(proxy: ProxyProcess) -> None:
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        for source in ("breast_cancer", "digits", "wine"):
            conn.execute("SELECT * FROM pgml.load_dataset(%s)", (source,))
        malignant = [r[0] for r in conn.execute("SELECT malignant FROM pgml.breast_cancer")]
        image, target = conn.execute("SELECT image, target FROM pgml.digits LIMIT 1").fetchone()
        wine = conn.execute("SELECT hue, color_intensity FROM pgml.wine LIMIT 1").fetchone()
    assert malignant == [bool(t == 0) for t in load_breast_cancer().target]
    digits = load_digits()
    assert image == digits.images[0].astype(int).tolist() and target == digits.target[0]
    first = load_wine(as_frame=True).frame.iloc[0]
    assert wine == pytest.approx((first["hue"], first["color_intensity"]))


def test_limit_and_the_whole_record_form(proxy: ProxyProcess) -> None:
    done = run_psql(proxy.url(), "-X", "-At", "-c", "SELECT pgml.load_dataset('iris', \"limit\" => 7)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(pgml.iris,7)"


async def test_asyncpg_and_a_rolled_back_block(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.url())
    try:
        await conn.execute("DROP TABLE IF EXISTS pgml.linnerud")
        tr = conn.transaction()
        await tr.start()
        assert await conn.fetch("SELECT * FROM pgml.load_dataset($1)", "linnerud") == [("pgml.linnerud", 20)]
        await tr.rollback()
        assert await conn.fetchval("SELECT to_regclass('pgml.linnerud')") is None  # the client's transaction
    finally:
        await conn.close()


def test_bad_sources_are_clear_errors(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="iris"):
            conn.execute("SELECT * FROM pgml.load_dataset('jdxcosta/diamonds')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT * FROM pgml.load_dataset(NULL)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="statement of its own"):
            conn.execute("SELECT upper(table_name) FROM pgml.load_dataset('iris')")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_user_without_create_on_the_schema_gets_the_servers_error(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url(), autocommit=True) as conn:
        conn.execute("SELECT * FROM pgml.load_dataset('iris')")  # the schema exists, owned by postgres
    with psycopg.connect(proxy.url(user="md5user", password=PASSWORD), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgml.load_dataset('iris')")
        assert conn.execute("SELECT 1").fetchone() == (1,)
