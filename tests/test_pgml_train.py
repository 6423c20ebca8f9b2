"""pgml.train, pgml.train_joint and pgml.deploy through real clients (contract §2.1, §3.4–§3.8)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import psycopg
import psycopg.errors
import pytest

from tests.conftest import Upstream
from tests.support.servers import PASSWORD, ProxyProcess


@pytest.fixture
def database(scratch_database: str, proxy: ProxyProcess) -> str:
    """A database of its own with the catalog and the toy tables the tests train on."""
    name = scratch_database
    with psycopg.connect(proxy.url(database=name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgml")
        for source in ("iris", "diabetes", "breast_cancer"):
            conn.execute("SELECT * FROM pgml.load_dataset(%s)", (source,))
    return name


def _notices(conn: psycopg.Connection) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    conn.add_notice_handler(lambda diag: seen.append((diag.severity or "", diag.message_primary or "")))
    return seen


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM pgml.{table}").fetchone()[0]


def test_train_writes_the_catalog_and_says_what_it_does(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)
        cursor = conn.execute(
            "SELECT * FROM pgml.train('Iris', 'classification', 'pgml.iris', 'target', algorithm => 'xgboost')"
        )
        assert cursor.description is not None
        assert [(c.name, c.type_code) for c in cursor.description] == [
            ("project", 25),
            ("task", 25),
            ("algorithm", 25),
            ("deployed", 16),
        ]
        assert cursor.fetchall() == [("Iris", "classification", "xgboost", True)]
        [(model_id,)] = conn.execute("SELECT id FROM pgml.models").fetchall()
        infos = [m for s, m in notices if s == "INFO"]
        assert infos[0] == 'Snapshotting table "pgml.iris", this may take a little while...'
        assert infos[1] == (
            f"Training Model {{ id: {model_id}, task: classification, algorithm: xgboost, runtime: rust }}"
        )
        assert infos[-1] == f"Deploying model id: {model_id}"

        assert conn.execute("SELECT name, task::text FROM pgml.projects").fetchall() == [
            ("Iris", "classification")
        ]
        status, labels, columns, analysis, materialized = conn.execute(
            "SELECT status, y_column_name, columns, analysis, materialized FROM pgml.snapshots"
        ).fetchone()
        assert (status, labels, analysis, materialized) == ("successful", ["target"], {"samples": 150}, False)
        assert [c["name"] for c in columns] == [
            "sepal_length",
            "sepal_width",
            "petal_length",
            "petal_width",
            "target",
        ]
        assert columns[0]["pg_type"] == "float4" and "statistics" in columns[0]
        status, runtime, metrics, num_features = conn.execute(
            "SELECT status, runtime::text, metrics, num_features FROM pgml.models"
        ).fetchone()
        assert (status, runtime, num_features) == ("successful", "rust", 4)
        assert {"f1", "precision", "recall", "accuracy", "mcc", "fit_time", "score_time"} <= set(metrics)
        assert conn.execute(
            "SELECT path, part, length(data) > 0 FROM pgml.files WHERE model_id = %s", (model_id,)
        ).fetchall() == [("estimator.rmp", 0, True)]
        assert conn.execute("SELECT model_id, strategy::text FROM pgml.deployments").fetchall() == [
            (model_id, "new_score")
        ]
        assert conn.execute("SELECT name, algorithm FROM pgml.deployed_models").fetchall() == [
            ("Iris", "xgboost")
        ]


def test_record_form_search_and_snapshot_reuse(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)
        [(record,)] = conn.execute(
            "SELECT pgml.train('Diabetes', 'regression', 'pgml.diabetes', 'target')"
        ).fetchall()
        assert record == ("Diabetes", "regression", "linear", "t")  # psycopg splits the record's text
        [snapshot_id] = conn.execute("SELECT id FROM pgml.snapshots").fetchone()
        notices.clear()
        row = conn.execute(
            "SELECT * FROM pgml.train('Diabetes', algorithm => 'ridge', search => 'grid', "
            "search_params => '{\"alpha\": [0.1, 1.0]}', search_args => '{\"cv\": 2}')"
        ).fetchone()
        assert row[:3] == ("Diabetes", "regression", "ridge")
        infos = [m for s, m in notices if s == "INFO"]
        assert infos[0] == f'Using existing snapshot from "pgml"."snapshot_{snapshot_id}"'
        assert "Hyperparameter searches: 2, cross validation folds: 2" in infos
        assert _count(conn, "snapshots") == 1
        hyperparams, metrics = conn.execute(
            "SELECT hyperparams, metrics FROM pgml.models WHERE algorithm = 'ridge'"
        ).fetchone()
        assert hyperparams["alpha"] in (0.1, 1.0) and "search_results" in metrics
        assert {"r2", "mean_absolute_error", "mean_squared_error"} <= set(metrics)


def test_project_errors_follow_the_contract(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match=r"Project `Nope` does not exist\. To create a new project"):
            conn.execute(
                "SELECT * FROM pgml.train('Nope', relation_name => 'pgml.iris', y_column_name => 'target')"
            )
        conn.execute("SELECT * FROM pgml.train('Flowers', 'classification', 'pgml.iris', 'target')")
        with pytest.raises(
            psycopg.Error,
            match=r'Project `"Flowers"` already exists with a different task: `classification`\. Create a new',
        ):
            conn.execute("SELECT * FROM pgml.train('Flowers', 'regression', 'pgml.iris', 'target')")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match=r"pgml\.task"):
            conn.execute("SELECT * FROM pgml.train('X', 'regresion', 'pgml.iris', 'target')")
        with pytest.raises(psycopg.Error, match="kmeans does not support classification"):
            conn.execute("SELECT * FROM pgml.train('Flowers', algorithm => 'kmeans')")
        with pytest.raises(psycopg.Error, match="could not be found in the public schema"):
            conn.execute(
                "SELECT * FROM pgml.train('Flowers', relation_name => 'iris', y_column_name => 'target')"
            )
        with pytest.raises(psycopg.Error, match="You must pass a `relation_name`"):
            conn.execute("SELECT * FROM pgml.train('Fresh', 'regression')")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_error_mid_train_leaves_no_rows(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="Column `nope` not found"):
            conn.execute("SELECT * FROM pgml.train('Broken', 'regression', 'pgml.diabetes', 'nope')")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert [_count(conn, t) for t in ("projects", "snapshots", "models")] == [0, 0, 0]
    with psycopg.connect(proxy.url(database=database)) as conn:  # inside the client's own block
        conn.execute("SELECT * FROM pgml.train('Rolled', 'regression', 'pgml.diabetes', 'target')")
        assert _count(conn, "models") == 1
        conn.rollback()
        assert [_count(conn, t) for t in ("projects", "models", "files", "deployments")] == [0, 0, 0, 0]


def test_without_the_catalog_it_says_to_create_the_extension(proxy: ProxyProcess, upstream: Upstream) -> None:
    name = f"bare_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(proxy.url(database=name), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as raised:
                conn.execute("SELECT * FROM pgml.train('P', 'regression', 'pgml.diabetes', 'target')")
            assert "CREATE EXTENSION pgml" in (raised.value.diag.message_hint or "")
    finally:
        with psycopg.connect(upstream.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_deploy_strategies(proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)
        train = "SELECT * FROM pgml.train('Cancer', 'classification', 'pgml.breast_cancer', 'malignant', %s)"
        conn.execute(train, ("linear",))
        conn.execute(train, ("random_forest",))
        conn.execute("SELECT * FROM pgml.train('Cancer', algorithm => 'svm', automatic_deploy => false)")
        assert ("WARNING", "Automatic deployment disabled via configuration.") in notices
        models = dict(conn.execute("SELECT algorithm, id FROM pgml.models").fetchall())
        scores = dict(conn.execute("SELECT algorithm, (metrics->>'f1')::float8 FROM pgml.models").fetchall())

        def current() -> int:
            return conn.execute("SELECT model_id FROM pgml.deployments ORDER BY id DESC LIMIT 1").fetchone()[
                0
            ]

        cursor = conn.execute("SELECT * FROM pgml.deploy('Cancer', 'most_recent')")
        assert [c.name for c in cursor.description] == ["project", "strategy", "algorithm"]
        assert cursor.fetchall() == [("Cancer", "most_recent", "svm")]
        best = max(scores, key=lambda a: (scores[a], models[a]))
        assert conn.execute("SELECT * FROM pgml.deploy('Cancer')").fetchall() == [
            ("Cancer", "best_score", best)
        ]
        assert conn.execute("SELECT * FROM pgml.deploy('Cancer', 'best_score', 'linear')").fetchall() == [
            ("Cancer", "best_score", "linear")
        ]
        conn.execute("SELECT * FROM pgml.deploy('Cancer', 'rollback')")
        # the newest deployment of another model than linear: the best one, or svm when linear is the best
        assert current() == models[best if best != "linear" else "svm"]
        conn.execute("SELECT * FROM pgml.deploy('Cancer', 'rollback')")
        assert current() == models["linear"]  # rollbacks oscillate
        assert conn.execute("SELECT * FROM pgml.deploy(%s::bigint)", (models["svm"],)).fetchall() == [
            ("Cancer", "specific", "svm")
        ]
        assert current() == models["svm"]
        with pytest.raises(psycopg.Error, match="invalid strategy"):
            conn.execute("SELECT * FROM pgml.deploy('Cancer', 'specific')")
        with pytest.raises(psycopg.Error, match=r"Project named `Nobody` does not exist\."):
            conn.execute("SELECT * FROM pgml.deploy('Nobody', 'most_recent')")
        with pytest.raises(psycopg.Error, match=r"No qualified models exist for this deployment\."):
            conn.execute("SELECT * FROM pgml.deploy('Cancer', 'best_score', 'lightgbm')")


def test_a_user_without_select_gets_the_servers_error(
    proxy: ProxyProcess, upstream: Upstream, database: str
) -> None:
    with psycopg.connect(upstream.url(database=database), autocommit=True) as admin:
        admin.execute("CREATE TABLE public.secret AS SELECT * FROM pgml.iris")
        admin.execute("GRANT USAGE ON SCHEMA pgml TO md5user")
        admin.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgml TO md5user")
        admin.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgml TO md5user")
    with psycopg.connect(
        proxy.url(user="md5user", password=PASSWORD, database=database), autocommit=True
    ) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgml.train('Secret', 'classification', 'secret', 'target')")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert _count(conn, "projects") == 0


async def test_training_through_asyncpg_with_parameters(proxy: ProxyProcess, database: str) -> None:
    conn = await asyncpg.connect(proxy.url(database=database))
    try:
        row = await conn.fetchrow(
            "SELECT * FROM pgml.train($1, $2, $3, $4, hyperparams => $5::jsonb)",
            "Iris asyncpg",
            "classification",
            "pgml.iris",
            "target",
            json.dumps({"max_iter": 500}),
        )
        assert tuple(row) == ("Iris asyncpg", "classification", "linear", True)
        joint = await conn.fetchrow(
            "SELECT * FROM pgml.train_joint('Joint', 'regression', 'pgml.diabetes', ARRAY['target', 'bmi'])"
        )
        assert tuple(joint) == ("Joint", "regression", "linear", True)
        assert await conn.fetchval("SELECT y_column_name FROM pgml.snapshots ORDER BY id DESC LIMIT 1") == [
            "target",
            "bmi",
        ]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("source", "label"), [("iris", "target"), ("breast_cancer", "malignant"), ("digits", "target")]
)
def test_accuracy_matches_the_library_fitted_directly(
    upstream: Upstream, proxy: ProxyProcess, database: str, source: str, label: str
) -> None:
    """Training through the proxy loses nothing on the way (columns, order, types, labels): on the same
    split (the last 60 rows held out) its test accuracy is within 0.02 of XGBoost fitted on rows read here."""
    import numpy as np
    import xgboost

    table = f"pgml.{source}"
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        if source == "digits":
            conn.execute("SELECT * FROM pgml.load_dataset('digits')")
        conn.execute(
            f"SELECT * FROM pgml.train(%s, 'classification', '{table}', '{label}', 'xgboost', "
            "test_size => 60, test_sampling => 'last')",
            (f"accuracy {source}",),
        )
        [(metrics,)] = conn.execute("SELECT metrics FROM pgml.models ORDER BY id DESC LIMIT 1").fetchall()
        if source == "digits":  # an 8x8 array column: the array form and the row form, text and binary
            by_array = conn.execute(
                "SELECT pgml.predict('accuracy digits', image) FROM pgml.digits"
            ).fetchall()
            for binary in (False, True):
                by_row = conn.cursor(binary=binary).execute(
                    "SELECT pgml.predict('accuracy digits', ROW(image)) FROM pgml.digits"
                )
                assert by_row.fetchall() == by_array
            # the extended protocol, a parameter and a bare column: resolved again once its type is known
            by_parameter = conn.execute(
                "SELECT pgml.predict(%s, image) FROM pgml.digits", ("accuracy digits",)
            )
            assert by_parameter.fetchall() == by_array
    with psycopg.connect(upstream.url(database=database), autocommit=True) as direct:
        cursor = direct.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cursor.description]
        rows = cursor.fetchall()
    at = names.index(label)
    x = np.asarray(
        [np.concatenate([np.ravel(v) for i, v in enumerate(row) if i != at]) for row in rows],
        dtype=np.float32,
    )
    y = np.asarray([row[at] for row in rows])
    classes, codes = np.unique(y, return_inverse=True)
    fitted = xgboost.XGBClassifier().fit(x[:-60], codes[:-60])
    direct_accuracy = float(np.mean(classes[fitted.predict(x[-60:])] == y[-60:]))
    assert abs(metrics["accuracy"] - direct_accuracy) <= 0.02, (metrics["accuracy"], direct_accuracy)


def test_text_features_arrive_unchanged_through_copy(proxy: ProxyProcess, database: str) -> None:
    """Rows are read with COPY: its escapes (tabs, newlines, backslashes) are undone, NULL is NULL."""
    odd = ["tab\there", "new\nline", "back\\slash", "ünïcødé 😀", "\\N", "plain"]
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        conn.execute("CREATE TABLE odd_texts (kind text, size real, y real)")
        rows = [(odd[n % len(odd)] if n % 7 else None, float(n % 5), float(n % 2)) for n in range(60)]
        conn.cursor().executemany("INSERT INTO odd_texts VALUES (%s, %s, %s)", rows)
        conn.execute(
            "SELECT * FROM pgml.train('Odd texts', 'regression', 'public.odd_texts', 'y', 'linear', "
            "test_sampling => 'last')"
        )
        [(columns,)] = conn.execute("SELECT columns FROM pgml.snapshots ORDER BY id DESC LIMIT 1").fetchall()
    kind = next(c for c in columns if c["name"] == "kind")
    seen = {v for v, _, _ in rows[:45]}  # the training rows
    assert set(kind["statistics"]["categories"]) == {"__NULL__"} | {v for v in seen if v is not None}


@pytest.mark.parametrize("with_nulls", [False, True])
def test_numeric_tables_arrive_exactly_through_binary_copy(
    proxy: ProxyProcess, database: str, with_nulls: bool
) -> None:
    """A table of fixed-width numbers is read with a binary COPY: every type and extreme value, and NULL
    where there is one, arrives as it is stored (the snapshot's statistics over the training rows)."""
    import numpy as np

    table = f"numbers_{int(with_nulls)}"
    rng = np.random.default_rng(9)
    rows = [
        (
            None if with_nulls and n % 9 == 0 else float(np.float32(rng.normal())),
            int(rng.integers(-32768, 32767)),
            int(rng.integers(-(2**31), 2**31 - 1)),
            int(rng.integers(-(2**40), 2**40)),
            float(rng.normal() * 1e30) if n % 11 else -0.0,
            float(n % 3),
        )
        for n in range(80)
    ]
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (a real, b smallint, c integer, d bigint, e double precision, y real)"
        )
        conn.cursor().executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)", rows)
        conn.execute(
            f"SELECT * FROM pgml.train('Numbers {int(with_nulls)}', 'regression', 'public.{table}', 'y', 'linear', "
            'test_sampling => \'last\', preprocess => \'{"a": {"impute": "mean"}}\')'
        )
        [(columns,)] = conn.execute("SELECT columns FROM pgml.snapshots ORDER BY id DESC LIMIT 1").fetchall()
    training = rows[:60]
    for index, column in enumerate(c for c in columns if c["name"] != "y"):
        present = [r[index] for r in training if r[index] is not None]
        stats = column["statistics"]
        assert stats["missing"] == len(training) - len(present), column["name"]
        assert stats["min"] == pytest.approx(min(present), rel=1e-12), column["name"]
        assert stats["max"] == pytest.approx(max(present), rel=1e-12), column["name"]


def test_enum_typed_arguments_are_accepted(proxy: ProxyProcess, database: str) -> None:
    """PostgresML's enum-typed parameters: a literal cast to the catalog's enum works like the bare literal."""
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        trained = conn.execute(
            "SELECT * FROM pgml.train('Enums', 'classification', 'pgml.iris', 'target', 'xgboost'::pgml.algorithm, "
            "test_sampling => 'last'::pgml.sampling, search => 'grid'::pgml.search, "
            "search_params => '{\"max_depth\": [2, 3]}')"
        ).fetchall()
        assert trained == [("Enums", "classification", "xgboost", True)]
        deployed = conn.execute("SELECT * FROM pgml.deploy('Enums', 'most_recent'::pgml.strategy)").fetchall()
        assert deployed == [("Enums", "most_recent", "xgboost")]
        [(sampling,)] = conn.execute(
            "SELECT test_sampling FROM pgml.snapshots ORDER BY id DESC LIMIT 1"
        ).fetchall()
        assert sampling == "last"


def test_snapshot_is_materialized_and_attached_to_no_project(proxy: ProxyProcess, database: str) -> None:
    """pgml.snapshot (§2.1): a materialized copy and its catalog row, its two inputs back; a train without
    a relation never picks it up; STRICT; the contract's errors."""
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        taken = conn.execute("SELECT * FROM pgml.snapshot('pgml.iris', 'target', test_sampling => 'last')")
        assert [d.name for d in taken.description] == ["relation", "y_column_name"]
        assert taken.fetchall() == [("pgml.iris", "target")]
        [(snapshot_id, materialized, labels, sampling, analysis)] = conn.execute(
            "SELECT id, materialized, y_column_name, test_sampling, analysis FROM pgml.snapshots"
        ).fetchall()
        assert (materialized, labels, sampling, analysis) == (True, ["target"], "last", {"samples": 150})
        assert conn.execute(f'SELECT count(*) FROM pgml."snapshot_{snapshot_id}"').fetchone() == (150,)
        assert conn.execute("SELECT * FROM pgml.snapshot('pgml.iris', NULL)").fetchall() == []
        assert _count(conn, "snapshots") == 1
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="You must pass a `relation_name`"):
            conn.execute("SELECT * FROM pgml.train('Fresh', 'classification')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="Column `nope` not found"):
            conn.execute("SELECT * FROM pgml.snapshot('pgml.iris', 'nope')")
        with pytest.raises(
            psycopg.errors.InvalidParameterValue, match=r'Relation "pgml\.nope" does not exist'
        ):
            conn.execute("SELECT * FROM pgml.snapshot('pgml.nope', 'target')")
        assert _count(conn, "snapshots") == 1


def test_training_outlives_the_upstreams_idle_in_transaction_timeout(
    proxy: ProxyProcess, database: str
) -> None:
    """The proxy trains inside a transaction of its own while the upstream session waits idle in it."""
    with psycopg.connect(proxy.url(database=database), autocommit=True) as conn:
        conn.execute("SET idle_in_transaction_session_timeout = '20ms'")
        rows = conn.execute(
            "SELECT * FROM pgml.train('Idle', 'classification', 'pgml.iris', 'target', algorithm => 'random_forest')"
        ).fetchall()
        assert rows == [("Idle", "classification", "random_forest", True)]
        assert _count(conn, "models") == 1
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("20ms",)
