"""pgml.predict and friends through real clients (contract §2.2, §6.2)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import numpy as np
import psycopg
import psycopg.errors
import pytest
from pgml_engines import classical

from tests.conftest import Upstream
from tests.support.servers import ProxyProcess


@pytest.fixture
def database(scratch_database: str, proxy: ProxyProcess) -> str:
    """A database with Iris (xgboost, deployed), Diabetes (linear) trained through the proxy."""
    name = scratch_database
    with psycopg.connect(proxy.url(database=name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgml")
        for source in ("iris", "diabetes"):
            conn.execute("SELECT * FROM pgml.load_dataset(%s)", (source,))
        conn.execute(
            "SELECT * FROM pgml.train('Iris', 'classification', 'pgml.iris', 'target', algorithm => 'xgboost')"
        )
        conn.execute("SELECT * FROM pgml.train('Diabetes', 'regression', 'pgml.diabetes', 'target')")
    return name


def _artifact(conn: psycopg.Connection, model_id: int) -> classical.ClassicalModel:
    parts = conn.execute(
        "SELECT data FROM pgml.files WHERE model_id = %s AND path = 'estimator.rmp' ORDER BY part",
        (model_id,),
    ).fetchall()
    return classical.load_model(b"".join(bytes(p) for (p,) in parts))


def _deployed(conn: psycopg.Connection, project: str) -> int:
    return conn.execute(
        "SELECT d.model_id FROM pgml.deployments d JOIN pgml.projects p ON p.id = d.project_id "
        "WHERE p.name = %s ORDER BY d.created_at DESC, d.id DESC LIMIT 1",
        (project,),
    ).fetchone()[0]


def test_predict_answers_constants_table_rows_and_where(
    upstream: Upstream, proxy: ProxyProcess, database: str
) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        for binary in (False, True):
            cursor = conn.cursor(binary=binary)
            cursor.execute("SELECT pgml.predict('Iris', ARRAY[5.1, 3.5, 1.4, 0.2]::real[])")
            assert cursor.description[0].name == "predict" and cursor.description[0].type_code == 700
            assert cursor.fetchall() == [(0.0,)]
        rows = conn.execute(
            "SELECT target, pgml.predict('Iris', ARRAY[sepal_length, sepal_width, petal_length, petal_width]) "
            "FROM pgml.iris ORDER BY 1"
        ).fetchall()
        features = conn.execute(
            "SELECT sepal_length, sepal_width, petal_length, petal_width FROM pgml.iris ORDER BY target"
        ).fetchall()
        model_id = _deployed(conn, "Iris")
        expected = classical.predict(_artifact(conn, model_id), np.asarray(features, dtype=np.float32))
        assert len(rows) == 150
        assert np.mean([t == p for t, p in rows]) > 0.9
        assert sorted(p for _, p in rows) == sorted(expected.tolist())
        [(agree,)] = conn.execute(
            "SELECT count(*) FROM pgml.iris WHERE pgml.predict('Iris', "
            "ARRAY[sepal_length, sepal_width, petal_length, petal_width]) = target"
        ).fetchall()
        assert agree > 135
        by_id = conn.execute(
            "SELECT pgml.predict(%s::bigint, ARRAY[5.1, 3.5, 1.4, 0.2]::real[])", (model_id,)
        )
        assert by_id.fetchone() == (0.0,)

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(proxy.url(database=database))
        try:
            value = await conn.fetchval("SELECT pgml.predict($1, $2::real[])", "Iris", [6.7, 3.0, 5.2, 2.3])
            assert value == 2.0
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


IRIS_FEATURES = "ARRAY[sepal_length, sepal_width, petal_length, petal_width]"


def test_predictions_over_rows_are_spliced_in_every_protocol(proxy: ProxyProcess, database: str) -> None:
    """Rows stream with their predictions: the model is looked up before the statement runs, so volatile
    arguments and RETURNING (which a per-value lookup cannot serve) work, in text and binary."""
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        ordered = "FROM pgml.iris ORDER BY sepal_length, sepal_width, petal_length, petal_width, target"
        features = conn.execute(
            f"SELECT sepal_length, sepal_width, petal_length, petal_width {ordered}"
        ).fetchall()
        model_id = _deployed(conn, "Iris")
        expected = classical.predict(
            _artifact(conn, model_id), np.asarray(features, dtype=np.float32)
        ).tolist()
        for binary in (False, True):
            rows = conn.cursor(binary=binary).execute(
                f"SELECT pgml.predict('Iris', {IRIS_FEATURES}) {ordered}"
            )
            assert [p for (p,) in rows] == expected
        jittered = "ARRAY[sepal_length + 0 * random(), sepal_width, petal_length, petal_width]"
        rows = conn.execute(f"SELECT pgml.predict('Iris', {jittered}) AS class {ordered}")
        assert rows.description[0].name == "class"
        assert [p for (p,) in rows] == expected
        by_id = conn.execute(f"SELECT pgml.predict({model_id}, {IRIS_FEATURES}::real[]) {ordered}").fetchall()
        assert [p for (p,) in by_id] == expected
        probabilities = conn.execute(
            f"SELECT pgml.predict_proba('Iris', {IRIS_FEATURES}) {ordered}"
        ).fetchall()
        assert [int(np.argmax(p)) for (p,) in probabilities] == expected
        conn.execute("CREATE TEMP TABLE flowers AS SELECT * FROM pgml.iris LIMIT 0")
        inserted = conn.execute(
            f"INSERT INTO flowers SELECT * {ordered} RETURNING target, pgml.predict('Iris', {IRIS_FEATURES})"
        ).fetchall()
        assert [p for _, p in inserted] == expected
        nulls = conn.execute(f"SELECT pgml.predict(NULL::text, {IRIS_FEATURES}) FROM pgml.iris").fetchall()
        assert nulls == [(None,)] * 150

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(proxy.url(database=database))
        try:
            rows = await conn.fetch(f"SELECT pgml.predict($1, {IRIS_FEATURES}) {ordered}", "Iris")
            assert [r[0] for r in rows] == expected
            async with conn.transaction():
                streamed = [
                    r[0]
                    async for r in conn.cursor(
                        f"SELECT pgml.predict('Iris', {IRIS_FEATURES}) {ordered}", prefetch=7
                    )
                ]
            assert streamed == expected
            with pytest.raises(asyncpg.UndefinedObjectError, match="`Nope`"):
                await conn.fetch(f"SELECT pgml.predict($1, {IRIS_FEATURES}) FROM pgml.iris", "Nope")
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


def test_spliced_prediction_errors_leave_the_session_usable(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject, match="`Nope`"):
            conn.execute(f"SELECT pgml.predict('Nope', {IRIS_FEATURES}) FROM pgml.iris")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="expects 4, got 2"):
            conn.execute("SELECT pgml.predict('Iris', ARRAY[sepal_length, sepal_width]) FROM pgml.iris")
        ragged = "CASE WHEN target = 2 THEN ARRAY[sepal_length] ELSE " + IRIS_FEATURES + " END"
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="expects 4, got 1"):
            conn.execute(f"SELECT pgml.predict('Iris', {ragged}) FROM pgml.iris")
        with_missing = "ARRAY[sepal_length, NULL, petal_length, petal_width]::real[]"
        rows = conn.execute(f"SELECT pgml.predict('Iris', {with_missing}) FROM pgml.iris").fetchall()
        assert len(rows) == 150 and all(p in (0.0, 1.0, 2.0) for (p,) in rows)  # NULL: a missing value
        assert conn.execute("SELECT count(*) FROM pgml.iris").fetchone() == (150,)


def test_every_proxy_of_the_database_serves_a_new_deployment_at_its_next_statement(
    proxy: ProxyProcess, proxy_factory: Callable[..., ProxyProcess], database: str
) -> None:
    """Two proxies on one upstream: a deployment made through one is what the other predicts with from
    its next statement (its cached model of the old deployment notwithstanding), constant or over rows."""
    other = proxy_factory()
    x = "ARRAY[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]"
    over_rows = (
        "SELECT pgml.predict('Diabetes', ARRAY[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]) FROM pgml.diabetes"
    )
    with (
        psycopg.connect(proxy.url(database=database), autocommit=True) as first,
        psycopg.connect(other.url(database=database), autocommit=True) as second,
    ):
        [(before,)] = second.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchall()
        rows_before = second.execute(over_rows).fetchall()
        assert first.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchone() == (before,)
        first.execute(
            "SELECT * FROM pgml.train('Diabetes', algorithm => 'ridge', hyperparams => '{\"alpha\": 50}')"
        )
        first.execute("SELECT * FROM pgml.deploy('Diabetes', 'most_recent')")
        [(after,)] = second.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchall()
        assert after != before
        assert first.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchone() == (after,)
        rows_after = second.execute(over_rows).fetchall()
        assert rows_after != rows_before and len(rows_after) == len(rows_before)
        first.execute("SELECT * FROM pgml.deploy('Diabetes', 'rollback')")
        assert second.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchone() == (before,)


def test_probabilities_batches_and_errors(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        [(proba,)] = conn.execute(
            "SELECT pgml.predict_proba('Iris', ARRAY[5.1, 3.5, 1.4, 0.2]::real[])"
        ).fetchall()
        assert len(proba) == 3 and abs(sum(proba) - 1) < 1e-4 and proba[0] > 0.5
        batch = conn.execute(
            "SELECT pgml.predict_batch('Iris', ARRAY[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])"
        ).fetchall()
        assert batch == [(0.0,), (2.0,)]
        model_id = _deployed(conn, "Iris")
        [(by_id,)] = conn.execute(
            f"SELECT pgml.predict_batch({model_id}, ARRAY[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])"
        ).fetchall()
        assert by_id == [0.0, 2.0]
        with pytest.raises(
            psycopg.errors.UndefinedObject, match="No deployed model exists for the project named: `Nope`"
        ):
            conn.execute("SELECT pgml.predict('Nope', ARRAY[1, 2])")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="expects 4"):
            conn.execute("SELECT pgml.predict('Iris', ARRAY[1, 2])")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="probabilities for a regression"):
            conn.execute("SELECT pgml.predict_proba('Diabetes', ARRAY[1,2,3,4,5,6,7,8,9,10])")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_next_statement_uses_a_new_deployment_and_tampering_is_refused(
    upstream: Upstream, proxy: ProxyProcess, database: str
) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        first = _deployed(conn, "Diabetes")
        x = "ARRAY[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]"
        [(before,)] = conn.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchall()
        conn.execute(
            "SELECT * FROM pgml.train('Diabetes', algorithm => 'ridge', hyperparams => '{\"alpha\": 100}')"
        )
        conn.execute("SELECT * FROM pgml.deploy('Diabetes', 'most_recent')")
        second = _deployed(conn, "Diabetes")
        assert second != first
        [(after,)] = conn.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchall()
        assert after != before
        assert after == pytest.approx(
            float(classical.predict(_artifact(conn, second), np.asarray([eval(x[5:])], dtype=np.float32))[0])
        )
        # a model no proxy has loaded yet: its bytes are read (and checked) at its first prediction
        conn.execute("SELECT * FROM pgml.train('Diabetes', algorithm => 'lasso', automatic_deploy => false)")
        [[third]] = conn.execute("SELECT max(id) FROM pgml.models").fetchall()
    with psycopg.connect(upstream.url(database=database), autocommit=True) as direct:
        direct.execute(
            "UPDATE pgml.files SET data = overlay(data PLACING '\\xdeadbeef'::bytea FROM length(data) - 8) "
            "WHERE model_id = %s",
            (third,),
        )
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DataCorrupted, match=r"checksum|artifact"):
            conn.execute(f"SELECT pgml.predict({third}, {x}::real[])")
        assert conn.execute(f"SELECT pgml.predict('Diabetes', {x})").fetchone() == (after,)


HOUSES = "(size, rooms, city, garden)"


@pytest.fixture
def houses(proxy: ProxyProcess, database: str) -> list[tuple]:
    """A regression project over mixed columns, trained with imputation, scaling and one-hot encoding;
    returns the feature rows in id order."""
    rng = np.random.default_rng(5)
    rows = []
    for n in range(120):
        size = None if n % 17 == 0 else float(np.float32(rng.uniform(40, 200)))
        rooms, city, garden = int(rng.integers(1, 6)), ("paris", "lyon", "nice")[n % 3], bool(n % 2)
        price = (size or 100) * 10 + rooms * 50 + (300 if city == "paris" else 0) + (80 if garden else 0)
        rows.append((n, size, rooms, city, garden, price + float(rng.normal(0, 5))))
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        conn.execute("CREATE TABLE houses (id int, size real, rooms int, city text, garden bool, price real)")
        with conn.cursor().copy("COPY houses FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "SELECT * FROM pgml.train('Houses', 'regression', 'public.houses', 'price', 'linear', "
            'preprocess => \'{"size": {"impute": "mean", "scale": "standard"}, '
            '"city": {"encode": "one_hot"}, "id": {"scale": "standard"}}\')'
        )
    return [row[:5] for row in rows]


def _houses_model(conn: psycopg.Connection) -> classical.ClassicalModel:
    model_id = _deployed(conn, "Houses")
    [(columns,)] = conn.execute(
        "SELECT s.columns FROM pgml.models m JOIN pgml.snapshots s ON s.id = m.snapshot_id WHERE m.id = %s",
        (model_id,),
    ).fetchall()
    parts = conn.execute(
        "SELECT data FROM pgml.files WHERE model_id = %s ORDER BY part", (model_id,)
    ).fetchall()
    return classical.load_model(b"".join(bytes(p) for (p,) in parts), columns)


def test_row_form_applies_the_snapshots_preprocessing(
    proxy: ProxyProcess, database: str, houses: list[tuple]
) -> None:
    """``pgml.predict('p', (a, b, c))``: fields by position onto the feature columns, imputed, scaled and
    encoded as in training, wherever the call is (spliced, folded, materialized) and in either format."""
    row_sql = "(id, size, rooms, city, garden)"
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        model = _houses_model(conn)
        expected = classical.predict_rows(model, houses).tolist()
        for binary in (False, True):
            got = conn.cursor(binary=binary).execute(
                f"SELECT pgml.predict('Houses', {row_sql}) FROM houses ORDER BY id"
            )
            assert [p for (p,) in got] == pytest.approx(expected, rel=1e-5)
        [(one,)] = conn.execute(
            "SELECT pgml.predict('Houses', ROW(7, 120.5::real, 3, 'paris', true))"
        ).fetchall()
        assert one == pytest.approx(float(classical.predict_rows(model, [(7, 120.5, 3, "paris", True)])[0]))
        [(missing,)] = conn.execute(
            "SELECT pgml.predict('Houses', ROW(7, NULL::real, 3, 'nice', false))"
        ).fetchall()
        assert missing == pytest.approx(
            float(classical.predict_rows(model, [(7, None, 3, "nice", False)])[0])
        )
        [(above,)] = conn.execute(
            f"SELECT count(*) FROM houses WHERE pgml.predict('Houses', {row_sql}) > 1000"
        ).fetchall()
        assert above == sum(p > 1000 for p in expected)
        assert 0 < above < len(houses)

        with pytest.raises(psycopg.errors.InvalidParameterValue, match="requires Postgres `record` types"):
            conn.execute("SELECT pgml.predict('Houses', 'a house'::text)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="the row has 2 fields"):
            conn.execute("SELECT pgml.predict('Houses', (size, rooms)) FROM houses")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not fit"):
            conn.execute("SELECT pgml.predict('Houses', (id, city, rooms, city, garden)) FROM houses")
        assert conn.execute("SELECT 1").fetchone() == (1,)

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(proxy.url(database=database))
        try:
            got = await conn.fetch(f"SELECT pgml.predict($1, {row_sql}) FROM houses ORDER BY id", "Houses")
            assert [r[0] for r in got] == pytest.approx(expected, rel=1e-5)
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
