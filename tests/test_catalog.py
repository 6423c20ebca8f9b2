"""The pgml catalog (contract §3, §2.5-2.7; design §6): install_sql, drop_sql and the version probe, run
straight against the upstream (not through the proxy), each test in a database of its own."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgml_proxy.catalog import LATEST_VERSION, drop_sql, install_sql, installed_version_sql
from pgml_proxy.catalog.schema import MIGRATIONS, TABLES, TYPES, VIEWS
from pgml_proxy.catalog.stubs import default_sql, signatures
from pgml_proxy.functions.builtin import BUILTIN
from pgml_proxy.functions.registry import Overload, Registry
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import FLOAT4_ARRAY, INT8, JSONB, TEXT
from tests.conftest import Upstream

POSTGRESML_CATALOG = Path(__file__).parent / "sql" / "postgresml_catalog.sql"

# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def database(upstream: Upstream) -> Iterator[str]:
    """A fresh, empty database; its URL."""
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(upstream.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield upstream.url(database=name)
    finally:
        with psycopg.connect(upstream.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def catalog(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A connection to a database with the catalog installed for the built-in registry."""
    install(conn)
    return conn


def install(conn: psycopg.Connection[Any], served: Registry = BUILTIN, *, with_vector: bool = False) -> None:
    """As the session runs CREATE EXTENSION pgml: every statement, in order, in one transaction."""
    with conn.transaction():
        for statement in install_sql(served, with_vector=with_vector):
            conn.execute(statement)


def drop(conn: psycopg.Connection[Any], *, cascade: bool) -> None:
    with conn.transaction():
        for statement in drop_sql(cascade):
            conn.execute(statement)


def version(conn: psycopg.Connection[Any]) -> int | None:
    rows = conn.execute(installed_version_sql()).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def value(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    return conn.execute(sql, params or None).fetchone()[0]  # type: ignore[index]


def columns(conn: psycopg.Connection[Any], relation: str) -> list[tuple[str, str, bool]]:
    """(name, type, NOT NULL) of a relation's columns, in order."""
    return conn.execute(
        """SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        (relation,),
    ).fetchall()


def labels(conn: psycopg.Connection[Any], type_name: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s::regtype ORDER BY enumsortorder", (type_name,)
        )
    ]


def registry(*served: Signature) -> Registry:
    async def unused(engine: Any, calls: list[tuple[Any, ...]]) -> list[Any]:
        raise AssertionError("the catalog never runs a function")

    return Registry(Overload(s, unused) for s in served)


# -- install: version ---------------------------------------------------------------------------------------


def test_version_probe_is_null_without_a_catalog(conn: psycopg.Connection[Any]) -> None:
    assert version(conn) is None


def test_install_records_the_latest_version(conn: psycopg.Connection[Any]) -> None:
    install(conn)
    assert version(conn) == LATEST_VERSION == len(MIGRATIONS)
    applied = conn.execute("SELECT version FROM pgml.proxy_catalog ORDER BY version").fetchall()
    assert [v for (v,) in applied] == list(range(1, LATEST_VERSION + 1))


def test_installing_twice_changes_nothing_and_says_nothing(conn: psycopg.Connection[Any]) -> None:
    install(conn)
    snapshot = """SELECT 'proc', oid::regprocedure::text, xmin::text FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace
                  UNION ALL SELECT 'class', oid::regclass::text, xmin::text FROM pg_class
                  WHERE relnamespace = 'pgml'::regnamespace ORDER BY 1, 2"""
    before = conn.execute(snapshot).fetchall()
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    install(conn)
    assert conn.execute(snapshot).fetchall() == before  # not even rewritten in place
    assert version(conn) == LATEST_VERSION
    assert value(conn, "SELECT count(*) FROM pgml.proxy_catalog") == LATEST_VERSION
    assert notices == []


def test_statements_run_one_by_one_in_autocommit_too(conn: psycopg.Connection[Any]) -> None:
    for statement in install_sql(BUILTIN, with_vector=False):
        conn.execute(statement)
    assert version(conn) == LATEST_VERSION


def test_statements_run_as_one_simple_query(conn: psycopg.Connection[Any]) -> None:
    conn.execute(";\n".join(install_sql(BUILTIN, with_vector=False)))  # one Query message: one transaction
    assert version(conn) == LATEST_VERSION


def test_install_leaves_the_sessions_message_level_alone(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        for statement in install_sql(BUILTIN, with_vector=False):
            conn.execute(statement)
        assert value(conn, "SHOW client_min_messages") == "notice"


def test_concurrent_installs_take_turns(database: str) -> None:
    with psycopg.connect(database) as first, psycopg.connect(database) as second:
        for statement in install_sql(BUILTIN, with_vector=False):
            first.execute(statement)  # in a transaction, not committed yet
        done: list[BaseException | None] = []

        def install_second() -> None:
            try:
                install(second)
                done.append(None)
            except BaseException as exc:
                done.append(exc)

        thread = threading.Thread(target=install_second)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # waiting for the first one's lock
        first.commit()
        thread.join(10)
        assert done == [None]
        assert version(second) == LATEST_VERSION
        assert value(second, "SELECT count(*) FROM pgml.proxy_catalog") == LATEST_VERSION


def test_install_with_vector_creates_pgvector(conn: psycopg.Connection[Any]) -> None:
    install(conn, with_vector=True)
    assert value(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
    assert value(conn, "SELECT '[1,2]'::vector <-> '[1,3]'::vector") == 1.0
    install(conn, with_vector=True)


def test_a_role_that_may_not_create_pgvector_still_gets_the_catalog(
    upstream: Upstream, database: str, conn: psycopg.Connection[Any]
) -> None:
    role, name = f"catalog_user_{uuid.uuid4().hex[:8]}", database.rsplit("/", 1)[1]
    conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        conn.execute(f"GRANT CREATE ON DATABASE {name} TO {role}")
        warnings: list[str] = []
        with psycopg.connect(upstream.url(user=role, database=name), autocommit=True) as user:
            user.add_notice_handler(lambda diagnostic: warnings.append(diagnostic.message_primary or ""))
            install(user, with_vector=True)
            assert version(user) == LATEST_VERSION
        assert [w for w in warnings if w.startswith("pgvector was not created")], warnings
        assert value(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 0
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_install_without_vector_leaves_pgvector_out(catalog: psycopg.Connection[Any]) -> None:
    assert value(catalog, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 0


def test_a_failed_install_leaves_nothing_behind(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE SCHEMA pgml")
    conn.execute("CREATE TABLE pgml.projects (id int)")  # not the catalog's: its index cannot be made
    with pytest.raises(errors.UndefinedColumn):
        install(conn)
    assert version(conn) is None
    assert value(conn, "SELECT to_regtype('pgml.task')") is None


# -- install: tables ----------------------------------------------------------------------------------------

TIMESTAMP = "timestamp without time zone"
EXPECTED_COLUMNS = {
    "pgml.projects": [
        ("id", "bigint", True),
        ("name", "text", True),
        ("task", "pgml.task", True),
        ("created_at", TIMESTAMP, True),
        ("updated_at", TIMESTAMP, True),
    ],
    "pgml.snapshots": [
        ("id", "bigint", True),
        ("relation_name", "text", True),
        ("y_column_name", "text[]", False),
        ("test_size", "real", True),
        ("test_sampling", "pgml.sampling", True),
        ("status", "text", True),
        ("columns", "jsonb", False),
        ("analysis", "jsonb", False),
        ("created_at", TIMESTAMP, True),
        ("updated_at", TIMESTAMP, True),
        ("materialized", "boolean", False),
    ],
    "pgml.models": [
        ("id", "bigint", True),
        ("project_id", "bigint", True),
        ("snapshot_id", "bigint", False),
        ("num_features", "integer", True),
        ("algorithm", "text", True),
        ("runtime", "pgml.runtime", False),
        ("hyperparams", "jsonb", True),
        ("status", "text", True),
        ("metrics", "jsonb", False),
        ("search", "text", False),
        ("search_params", "jsonb", True),
        ("search_args", "jsonb", True),
        ("created_at", TIMESTAMP, True),
        ("updated_at", TIMESTAMP, True),
    ],
    "pgml.deployments": [
        ("id", "bigint", True),
        ("project_id", "bigint", True),
        ("model_id", "bigint", True),
        ("strategy", "pgml.strategy", True),
        ("created_at", TIMESTAMP, True),
    ],
    "pgml.files": [
        ("id", "bigint", True),
        ("model_id", "bigint", True),
        ("path", "text", True),
        ("part", "integer", True),
        ("created_at", TIMESTAMP, True),
        ("updated_at", TIMESTAMP, True),
        ("data", "bytea", True),
    ],
    "pgml.logs": [
        ("id", "integer", True),
        ("model_id", "bigint", False),
        ("project_id", "bigint", False),
        ("created_at", TIMESTAMP, False),
        ("logs", "jsonb", False),
    ],
}


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_tables_have_the_contract_columns(catalog: psycopg.Connection[Any], table: str) -> None:
    assert columns(catalog, table) == EXPECTED_COLUMNS[table]


def test_keys_are_serial_and_timestamps_default_to_the_clock(catalog: psycopg.Connection[Any]) -> None:
    defaults = dict(
        catalog.execute(
            """SELECT c.relname || '.' || a.attname, pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
               JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = 'pgml'::regnamespace"""
        ).fetchall()
    )
    for table in ("projects", "snapshots", "models", "deployments", "files", "logs"):
        assert defaults[f"{table}.id"] == f"nextval('pgml.{table}_id_seq'::regclass)"
        assert defaults[f"{table}.created_at"] == (
            "CURRENT_TIMESTAMP" if table == "logs" else "clock_timestamp()"
        )
    for table in ("projects", "snapshots", "models", "files"):
        assert defaults[f"{table}.updated_at"] == "clock_timestamp()"
    assert defaults["models.runtime"] == "'python'::pgml.runtime"
    assert defaults["snapshots.materialized"] == "false"
    primary_keys = catalog.execute(
        """SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE contype = 'p' AND connamespace = 'pgml'::regnamespace ORDER BY 1"""
    ).fetchall()
    assert {table: definition for table, definition in primary_keys} == {
        f"pgml.{t}": ("PRIMARY KEY (version)" if t == "proxy_catalog" else "PRIMARY KEY (id)") for t in TABLES
    }


def test_indexes_are_named_as_postgresml_names_them(catalog: psycopg.Connection[Any]) -> None:
    indexes = dict(
        catalog.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pgml'").fetchall()
    )
    assert (
        indexes["projects_name_idx"]
        == "CREATE UNIQUE INDEX projects_name_idx ON pgml.projects USING btree (name)"
    )
    assert indexes["files_model_id_path_part_idx"] == (
        "CREATE UNIQUE INDEX files_model_id_path_part_idx ON pgml.files USING btree (model_id, path, part)"
    )
    assert indexes["models_project_id_idx"].endswith("ON pgml.models USING btree (project_id)")
    assert indexes["models_snapshot_id_idx"].endswith("ON pgml.models USING btree (snapshot_id)")
    assert indexes["deployments_project_id_created_at_idx"].endswith(
        "ON pgml.deployments USING btree (project_id, created_at)"
    )
    assert indexes["deployments_model_id_created_at_idx"].endswith(
        "ON pgml.deployments USING btree (model_id)"
    )


def test_foreign_keys_delete_as_the_contract_says(catalog: psycopg.Connection[Any]) -> None:
    keys = catalog.execute(
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE contype = 'f' AND connamespace = 'pgml'::regnamespace ORDER BY 1, 2"""
    ).fetchall()
    assert keys == [
        (
            "pgml.deployments",
            "model_id_fk",
            "FOREIGN KEY (model_id) REFERENCES pgml.models(id) ON DELETE CASCADE",
        ),
        (
            "pgml.deployments",
            "project_id_fk",
            "FOREIGN KEY (project_id) REFERENCES pgml.projects(id) ON DELETE CASCADE",
        ),
        ("pgml.files", "model_id_fk", "FOREIGN KEY (model_id) REFERENCES pgml.models(id) ON DELETE CASCADE"),
        (
            "pgml.models",
            "project_id_fk",
            "FOREIGN KEY (project_id) REFERENCES pgml.projects(id) ON DELETE CASCADE",
        ),
        (
            "pgml.models",
            "snapshot_id_fk",
            "FOREIGN KEY (snapshot_id) REFERENCES pgml.snapshots(id) ON DELETE SET NULL",
        ),
    ]


def add_model(conn: psycopg.Connection[Any], project: str, *, snapshot: bool = True) -> int:
    """A model of ``project`` (created as a classification project if new), with a snapshot unless told."""
    conn.execute(
        "INSERT INTO pgml.projects (name, task) VALUES (%s, 'classification') ON CONFLICT (name) DO NOTHING",
        (project,),
    )
    snapshot_id = (
        value(
            conn,
            """INSERT INTO pgml.snapshots (relation_name, y_column_name, test_size, test_sampling, status)
               VALUES ('t', '{y}', 0.25, 'stratified', 'successful') RETURNING id""",
        )
        if snapshot
        else None
    )
    return value(  # type: ignore[no-any-return]
        conn,
        """INSERT INTO pgml.models (project_id, snapshot_id, num_features, algorithm, hyperparams, status,
                                    search_params, search_args)
           SELECT id, %s, 3, 'xgboost', '{}', 'successful', '{}', '{}' FROM pgml.projects WHERE name = %s
           RETURNING id""",
        snapshot_id,
        project,
    )


def deploy(conn: psycopg.Connection[Any], model: int, strategy: str = "new_score") -> None:
    conn.execute(
        "INSERT INTO pgml.deployments (project_id, model_id, strategy) "
        "SELECT project_id, id, %s FROM pgml.models WHERE id = %s",
        (strategy, model),
    )


def test_deleting_a_project_deletes_its_models_deployments_and_files(
    catalog: psycopg.Connection[Any],
) -> None:
    model = add_model(catalog, "p")
    deploy(catalog, model)
    catalog.execute(
        "INSERT INTO pgml.files (model_id, path, part, data) VALUES (%s, 'estimator.rmp', 0, 'x')", (model,)
    )
    catalog.execute("DELETE FROM pgml.snapshots")
    assert value(catalog, "SELECT snapshot_id FROM pgml.models") is None
    catalog.execute("DELETE FROM pgml.projects")
    for table in ("models", "deployments", "files"):
        assert value(catalog, f"SELECT count(*) FROM pgml.{table}") == 0


def test_a_file_part_is_stored_once(catalog: psycopg.Connection[Any]) -> None:
    model = add_model(catalog, "p")
    insert = "INSERT INTO pgml.files (model_id, path, part, data) VALUES (%s, 'estimator.rmp', 0, 'x')"
    catalog.execute(insert, (model,))
    with pytest.raises(errors.UniqueViolation):
        catalog.execute(insert, (model,))


# -- install: updated_at ------------------------------------------------------------------------------------


def test_updated_at_triggers_sit_on_the_tables_postgresml_puts_them(catalog: psycopg.Connection[Any]) -> None:
    triggers = catalog.execute(
        """SELECT tgrelid::regclass::text, tgname, tgfoid::regprocedure::text FROM pg_trigger
           WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'pgml.%' ORDER BY 1"""
    ).fetchall()
    assert triggers == [
        (f"pgml.{t}", f"{t}_auto_updated_at", "pgml.set_updated_at()")
        for t in sorted(("projects", "snapshots", "models", "deployments", "files"))
    ]


def test_updates_move_updated_at_unless_they_set_it(catalog: psycopg.Connection[Any]) -> None:
    catalog.execute("INSERT INTO pgml.projects (name, task) VALUES ('p', 'regression')")
    created, updated = catalog.execute("SELECT created_at, updated_at FROM pgml.projects").fetchone()  # type: ignore[misc]
    catalog.execute("UPDATE pgml.projects SET task = 'classification'")
    assert value(catalog, "SELECT updated_at FROM pgml.projects") > updated
    catalog.execute("UPDATE pgml.projects SET updated_at = '2001-02-03 04:05:06', name = 'q'")
    assert str(value(catalog, "SELECT updated_at FROM pgml.projects")) == "2001-02-03 04:05:06"
    catalog.execute("UPDATE pgml.projects SET name = 'q'")  # no change: no new timestamp
    assert str(value(catalog, "SELECT updated_at FROM pgml.projects")) == "2001-02-03 04:05:06"
    assert value(catalog, "SELECT created_at FROM pgml.projects") == created


def test_updating_a_deployment_works_despite_its_trigger(catalog: psycopg.Connection[Any]) -> None:
    deploy(catalog, add_model(catalog, "p"))
    catalog.execute("UPDATE pgml.deployments SET strategy = 'best_score'")
    assert value(catalog, "SELECT strategy::text FROM pgml.deployments") == "best_score"


def test_auto_updated_at_maintains_a_table_of_the_user(catalog: psycopg.Connection[Any]) -> None:
    catalog.execute("CREATE TABLE mine (v int, updated_at timestamp DEFAULT '2000-01-01')")
    catalog.execute("SELECT pgml.auto_updated_at('mine')")
    catalog.execute("SELECT pgml.auto_updated_at('mine')")  # again: replaces, does not duplicate
    assert value(catalog, "SELECT count(*) FROM pg_trigger WHERE tgname = 'mine_auto_updated_at'") == 1
    catalog.execute("INSERT INTO mine (v) VALUES (1)")
    catalog.execute("UPDATE mine SET v = 2")
    assert value(catalog, "SELECT updated_at > '2000-01-01' FROM mine")


# -- install: views and enums -------------------------------------------------------------------------------


def test_views_have_the_contract_columns_in_order(catalog: psycopg.Connection[Any]) -> None:
    assert [c[:2] for c in columns(catalog, "pgml.overview")] == [
        ("name", "text"),
        ("deployed_at", TIMESTAMP),
        ("task", "pgml.task"),
        ("algorithm", "text"),
        ("runtime", "pgml.runtime"),
        ("relation_name", "text"),
        ("y_column_name", "text[]"),
        ("test_sampling", "pgml.sampling"),
        ("test_size", "real"),
    ]
    assert [c[:2] for c in columns(catalog, "pgml.trained_models")] == [
        ("id", "bigint"),
        ("name", "text"),
        ("task", "pgml.task"),
        ("algorithm", "text"),
        ("runtime", "pgml.runtime"),
        ("created_at", TIMESTAMP),
        ("test_sampling", "pgml.sampling"),
        ("test_size", "real"),
        ("deployed", "boolean"),
    ]
    assert [c[:2] for c in columns(catalog, "pgml.deployed_models")] == [
        ("id", "bigint"),
        ("name", "text"),
        ("task", "pgml.task"),
        ("algorithm", "text"),
        ("runtime", "pgml.runtime"),
        ("deployed_at", TIMESTAMP),
    ]


def test_views_follow_the_current_deployment(catalog: psycopg.Connection[Any]) -> None:
    first, second = add_model(catalog, "b"), add_model(catalog, "b")
    unsnapshotted = add_model(catalog, "b", snapshot=False)
    other = add_model(catalog, "a")
    deploy(catalog, first)
    deploy(catalog, second)
    deploy(catalog, other)
    deploy(catalog, first, "rollback")  # b's current deployment is the newest row
    assert catalog.execute("SELECT id, name FROM pgml.deployed_models").fetchall() == [
        (other, "a"),
        (first, "b"),
    ]
    assert catalog.execute("SELECT id, deployed FROM pgml.trained_models").fetchall() == [
        (other, True),
        (second, False),
        (first, True),
    ]
    assert unsnapshotted not in [i for (i, _) in catalog.execute("SELECT id, 1 FROM pgml.trained_models")]
    assert catalog.execute("SELECT name, algorithm FROM pgml.overview").fetchall() == [
        ("b", "xgboost"),
        ("a", "xgboost"),
        ("b", "xgboost"),
        ("b", "xgboost"),
    ]


EXPECTED_LABELS = {
    "pgml.task": "regression classification decomposition clustering question_answering summarization translation "
    "text_classification text_generation text2text embedding text_pair_classification conversation",
    "pgml.algorithm": "linear xgboost xgboost_random_forest svm lasso elastic_net ridge kmeans dbscan knn "
    "random_forest least_angle lasso_least_angle orthogonal_matching_pursuit bayesian_ridge "
    "automatic_relevance_determination stochastic_gradient_descent perceptron passive_aggressive ransac "
    "theil_sen huber quantile kernel_ridge gaussian_process nu_svm ada_boost bagging extra_trees "
    "gradient_boosting_trees hist_gradient_boosting linear_svm lightgbm transformers affinity_propagation "
    "birch feature_agglomeration mini_batch_kmeans mean_shift optics spectral spectral_bi spectral_co "
    "catboost pca",
    "pgml.runtime": "python rust openai",
    "pgml.strategy": "new_score best_score most_recent rollback specific",
    "pgml.sampling": "random last stratified",
    "pgml.search": "grid random",
    "pgml.status": "in_progress successful failed",
}


def test_enum_labels_are_in_declaration_order(catalog: psycopg.Connection[Any]) -> None:
    assert {f"pgml.{t}" for t in TYPES} == set(EXPECTED_LABELS)
    assert len(EXPECTED_LABELS["pgml.algorithm"].split()) == 45
    for type_name, expected in EXPECTED_LABELS.items():
        assert labels(catalog, type_name) == expected.split()


def test_the_catalog_owns_exactly_what_drop_removes(catalog: psycopg.Connection[Any]) -> None:
    relations = catalog.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'pgml'::regnamespace AND relkind IN ('r', 'v')"
    ).fetchall()
    assert {name for name, kind in relations if kind == "r"} == set(TABLES)
    assert {name for name, kind in relations if kind == "v"} == set(VIEWS)
    types = catalog.execute(
        "SELECT typname FROM pg_type WHERE typnamespace = 'pgml'::regnamespace AND typtype = 'e'"
    )
    assert {name for (name,) in types} == set(TYPES)


# -- vector functions (§2.6) --------------------------------------------------------------------------------

WIDTHS = [("real", "real[]"), ("double precision", "double precision[]")]


@pytest.mark.parametrize(("scalar", "array"), WIDTHS)
def test_vector_functions_give_the_contract_values(
    catalog: psycopg.Connection[Any], scalar: str, array: str
) -> None:
    a, b = f"ARRAY[1,2,3]::{array}", f"ARRAY[4,5,6]::{array}"
    checks = {
        f"pgml.add({a}, 1)": "{2,3,4}",
        f"pgml.add({a}, {b})": "{5,7,9}",
        f"pgml.subtract({a}, 1)": "{0,1,2}",
        f"pgml.subtract({b}, {a})": "{3,3,3}",
        f"pgml.multiply({a}, 2)": "{2,4,6}",
        f"pgml.multiply({a}, {b})": "{4,10,18}",
        f"pgml.divide({a}, 10)": "{0.1,0.2,0.3}",
        f"pgml.divide({b}, {a})": "{4,2.5,2}",
        f"pgml.norm_l0(ARRAY[0,2,0,3]::{array})": "2",
        f"pgml.norm_l1({a})": "6",
        f"pgml.norm_l2(ARRAY[3,4]::{array})": "5",
        f"pgml.norm_max(ARRAY[1,-3,2]::{array})": "3",
        f"pgml.normalize_l1(ARRAY[1,3]::{array})": "{0.25,0.75}",
        f"pgml.normalize_l2(ARRAY[3,4]::{array})": "{0.6,0.8}",
        f"pgml.normalize_max(ARRAY[2,-4]::{array})": "{0.5,-1}",
        f"pgml.distance_l1({a}, {b})": "9",
        f"pgml.distance_l2(ARRAY[0,0]::{array}, ARRAY[3,4]::{array})": "5",
        f"pgml.dot_product({a}, {b})": "32",
        f"pgml.cosine_similarity({a}, {a})": "1",
        f"pgml.cosine_similarity(ARRAY[1,0]::{array}, ARRAY[0,1]::{array})": "0",
    }
    for call, expected in checks.items():
        text, type_name = catalog.execute(f"SELECT ({call})::text, pg_typeof({call})::text").fetchone()  # type: ignore[misc]
        assert (call, text) == (call, expected)
        assert type_name == (array if expected.startswith("{") else scalar), call


def test_an_untyped_numeric_array_takes_the_double_precision_overload(
    catalog: psycopg.Connection[Any],
) -> None:
    assert value(catalog, "SELECT pg_typeof(pgml.add(ARRAY[1.0, 2.0], 1))::text") == "double precision[]"
    assert value(catalog, "SELECT pgml.divide(ARRAY[1.0, 2.0], 4)::text") == "{0.25,0.5}"
    # With no scalar argument to tip the balance Postgres finds real[] and double precision[] equally good,
    # in PostgresML as here: the same overloads resolve the same way.
    with pytest.raises(errors.AmbiguousFunction):
        catalog.execute("SELECT pgml.norm_l2(ARRAY[1.0, 2.0])")


def test_element_wise_and_distance_functions_stop_at_the_shorter_array(
    catalog: psycopg.Connection[Any],
) -> None:
    a, b = "ARRAY[1,2,3]::real[]", "ARRAY[1,1]::real[]"
    assert value(catalog, f"SELECT pgml.add({a}, {b})::text") == "{2,3}"
    assert value(catalog, f"SELECT pgml.subtract({b}, {a})::text") == "{0,-1}"
    assert value(catalog, f"SELECT pgml.distance_l1({a}, {b})") == 1.0
    assert value(catalog, "SELECT pgml.add('{}'::real[], '{1}'::real[])::text") == "{}"


@pytest.mark.parametrize("function", ["dot_product", "cosine_similarity"])
def test_dot_product_and_cosine_similarity_reject_unequal_lengths(
    catalog: psycopg.Connection[Any], function: str
) -> None:
    with pytest.raises(errors.DataException, match="different vector dimensions 3 and 2"):
        catalog.execute(f"SELECT pgml.{function}(ARRAY[1,2,3]::real[], ARRAY[4,5]::real[])")


@pytest.mark.parametrize(
    "call",
    [
        "pgml.add(ARRAY[1,NULL]::real[], 1)",
        "pgml.add(ARRAY[1,2]::real[], ARRAY[NULL,1]::real[])",
        "pgml.norm_l2(ARRAY[NULL,1]::double precision[])",
        "pgml.normalize_max(ARRAY[NULL]::real[])",
        "pgml.distance_l2(ARRAY[1,NULL]::real[], ARRAY[1,1]::real[])",
        "pgml.dot_product(ARRAY[1,NULL]::real[], ARRAY[1,1]::real[])",
    ],
)
def test_null_elements_are_an_error(catalog: psycopg.Connection[Any], call: str) -> None:
    with pytest.raises(errors.NullValueNotAllowed, match="array contains NULL elements"):
        catalog.execute(f"SELECT {call}")


def test_a_null_argument_gives_null(catalog: psycopg.Connection[Any]) -> None:
    assert value(catalog, "SELECT pgml.add(ARRAY[1]::real[], NULL::real)") is None
    assert value(catalog, "SELECT pgml.dot_product(NULL::real[], ARRAY[1]::real[])") is None


def test_division_by_zero_follows_floats_as_postgresml_does(catalog: psycopg.Connection[Any]) -> None:
    assert value(catalog, "SELECT pgml.divide(ARRAY[1,-1,0]::real[], 0)::text") == "{Infinity,-Infinity,NaN}"
    assert value(catalog, "SELECT pgml.normalize_l2(ARRAY[0,0]::real[])::text") == "{NaN,NaN}"
    assert (
        value(catalog, "SELECT pgml.cosine_similarity(ARRAY[0,0]::real[], ARRAY[1,1]::real[])::text") == "NaN"
    )


def test_vector_functions_are_immutable_strict_parallel_safe(catalog: psycopg.Connection[Any]) -> None:
    functions = catalog.execute(
        """SELECT proname, pg_get_function_identity_arguments(oid), provolatile, proisstrict, proparallel
           FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace AND prokind = 'f'
             AND (proname IN ('add', 'subtract', 'multiply', 'divide', 'dot_product', 'cosine_similarity')
                  OR proname LIKE 'norm%' OR proname LIKE 'distance%')"""
    ).fetchall()
    assert len(functions) == 2 * (4 * 2 + 4 + 3 + 2 + 2)
    assert {(v, s, p) for *_, v, s, p in functions} == {("i", True, "s")}
    signatures = {(name, arguments) for name, arguments, *_ in functions}
    for scalar, array in WIDTHS:
        assert ("subtract", f"vector {array}, subtahend {scalar}") in signatures  # (sic)
        assert ("subtract", f"vector {array}, subtrahend {array}") in signatures
        assert ("divide", f"vector {array}, dividend {scalar}") in signatures
        assert ("multiply", f"vector {array}, multiplicand {array}") in signatures
        assert ("cosine_similarity", f"vector {array}, other {array}") in signatures


@pytest.mark.parametrize(("scalar", "array"), WIDTHS)
def test_aggregates_work_position_by_position(
    catalog: psycopg.Connection[Any], scalar: str, array: str
) -> None:
    rows = f"(VALUES ('{{-2,-4}}'::{array}), ('{{1,2}}'), (NULL)) AS t(v)"
    got = catalog.execute(
        f"""SELECT pgml.sum(v)::text, pgml.max(v)::text, pgml.min(v)::text, pgml.max_abs(v)::text,
                   pgml.min_abs(v)::text, pg_typeof(pgml.sum(v))::text FROM {rows}"""
    ).fetchone()
    assert got == ("{-1,-2}", "{1,2}", "{-2,-4}", "{2,4}", "{1,2}", array)
    one = catalog.execute(
        f"SELECT pgml.max_abs(v)::text, pgml.sum(v)::text FROM (VALUES ('{{-3}}'::{array})) t(v)"
    )
    assert one.fetchone() == ("{3}", "{-3}")
    nothing = f"(VALUES (NULL::{array})) AS t(v)"
    assert catalog.execute(f"SELECT pgml.sum(v), pgml.min_abs(v) FROM {nothing}").fetchone() == (None, None)


def test_aggregates_reject_rows_of_different_lengths(catalog: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.DataException, match="different vector dimensions"):
        catalog.execute("SELECT pgml.sum(v) FROM (VALUES ('{1,2}'::real[]), ('{1}')) t(v)")
    with pytest.raises(errors.NullValueNotAllowed):
        catalog.execute("SELECT pgml.max(v) FROM (VALUES ('{1,NULL}'::real[])) t(v)")


def test_aggregates_are_parallel_safe_and_combine(catalog: psycopg.Connection[Any]) -> None:
    aggregates = catalog.execute(
        """SELECT p.proname, p.proparallel, a.aggcombinefn <> 0 FROM pg_aggregate a
           JOIN pg_proc p ON p.oid = a.aggfnoid WHERE p.pronamespace = 'pgml'::regnamespace"""
    ).fetchall()
    assert sorted(name for name, *_ in aggregates) == sorted(["sum", "max", "min", "max_abs", "min_abs"] * 2)
    assert {(p, c) for _, p, c in aggregates} == {("s", True)}
    catalog.execute(
        "CREATE TABLE many AS SELECT ARRAY[g, -g]::double precision[] AS v FROM generate_series(1, 2000) g"
    )
    catalog.execute("ANALYZE many")
    with catalog.transaction():
        for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
            catalog.execute(f"SET LOCAL {setting} = 0")
        plan = "\n".join(r[0] for r in catalog.execute("EXPLAIN SELECT pgml.sum(v) FROM many"))
        assert "Partial Aggregate" in plan
        assert value(catalog, "SELECT pgml.sum(v)::text FROM many") == "{2001000,-2001000}"


# -- metric helpers (§2.5), against scikit-learn's values ---------------------------------------------------


def test_regression_metrics_match_scikit_learn(catalog: psycopg.Connection[Any]) -> None:
    truth, predicted = "ARRAY[1,2,3]::real[]", "ARRAY[1,2,4]::real[]"
    assert value(catalog, f"SELECT pgml.sklearn_r2_score({truth}, {predicted})") == 0.5
    assert value(catalog, f"SELECT pgml.sklearn_regression_metrics({truth}, {predicted})::text") == (
        '{"r2": 0.5, "mae": 0.33333334, "mse": 0.33333334}'
    )
    assert value(catalog, "SELECT pgml.sklearn_r2_score('{2,2}', '{2,2}')") == 1.0  # constant truth, exact
    with pytest.raises(errors.InvalidParameterValue, match="same number of elements"):
        catalog.execute(f"SELECT pgml.sklearn_r2_score({truth}, '{{1}}')")


def test_classification_metrics_match_scikit_learn(catalog: psycopg.Connection[Any]) -> None:
    binary = value(
        catalog, "SELECT pgml.sklearn_classification_metrics('{0,1,1,0,1}', '{0,1,0,0,1}', 2)::text"
    )
    assert binary == (
        '{"f1": 0.8, "mcc": 0.6666667, "recall": 0.6666667, "roc_auc": 0.8333333, '
        '"accuracy": 0.8, "f1_micro": 0.8, "precision": 1}'
    )
    multiclass = value(
        catalog, "SELECT pgml.sklearn_classification_metrics('{0,1,2,2,1}', '{0,2,2,1,1}', 3)::text"
    )
    assert multiclass == (
        '{"f1": 0.6666667, "mcc": 0.375, "recall": 0.6666667, "accuracy": 0.6, "f1_micro": 0.6, '
        '"precision": 0.6666667}'
    )
    assert value(catalog, "SELECT pgml.sklearn_f1_score('{0,1,1,0,1}', '{0,1,0,0,1}')") == pytest.approx(0.8)
    with pytest.raises(errors.InvalidParameterValue, match="multiclass"):
        catalog.execute("SELECT pgml.sklearn_f1_score('{0,1,2}', '{0,1,2}')")


# -- stubs -------------------------------------------------------------------------------------------------


def test_every_function_of_the_registry_has_its_typed_stub(catalog: psycopg.Connection[Any]) -> None:
    for signature in signatures(BUILTIN):
        identity = f"pgml.{signature.function}({', '.join(p.type for p in signature.parameters)})"
        row = catalog.execute(
            """SELECT coalesce(proargnames[1:pronargs], '{}'), pg_get_function_result(oid), provolatile,
                      proisstrict, proretset FROM pg_proc WHERE oid = to_regprocedure(%s)""",
            (identity,),
        ).fetchone()
        assert row is not None, identity
        names, result, volatility, strict, returns_set = row
        assert names == [p.name for p in signature.parameters], identity
        assert (volatility, strict, returns_set) == ("v", signature.strict, signature.set_returning), identity
        if isinstance(signature.returns, tuple):
            assert result.startswith("TABLE("), identity
        else:
            assert result == ("SETOF " if signature.set_returning else "") + signature.returns.name


def sample(type_name: str) -> str:
    """A non-NULL argument of ``type_name``, as SQL."""
    if type_name.endswith("[]"):
        return f"ARRAY[{sample(type_name[:-2])}]::{type_name}"
    if type_name.startswith("pgml."):
        return f"(enum_range(NULL::{type_name}))[1]"
    return {
        "text": "'x'::text",
        "jsonb": "'{}'::jsonb",
        "boolean": "true",
        "smallint": "1::smallint",
        "integer": "1",
        "bigint": "1::bigint",
        "real": "1::real",
        "double precision": "1::double precision",
        "anyelement": "1",
    }[type_name]


def test_each_stub_says_it_ran_inside_postgresql(catalog: psycopg.Connection[Any]) -> None:
    for signature in signatures(BUILTIN):
        arguments = ", ".join(sample(p.type) for p in signature.parameters)
        call = f"pgml.{signature.function}({arguments})"
        with pytest.raises(errors.FeatureNotSupported) as raised:
            catalog.execute(f"SELECT * FROM {call}" if signature.set_returning else f"SELECT {call}")
        diagnostic = raised.value.diag
        assert diagnostic.message_primary == (
            f"pgml.{signature.function} ran inside PostgreSQL, where pgml-proxy cannot compute it"
        )
        assert diagnostic.message_hint is not None
        assert "through the proxy" in diagnostic.message_hint


def test_a_stub_in_a_view_fails_when_the_view_is_read(catalog: psycopg.Connection[Any]) -> None:
    catalog.execute("CREATE VIEW embedded AS SELECT pgml.embed('m', 'hello') AS e")
    with pytest.raises(errors.FeatureNotSupported, match=r"pgml\.embed ran inside PostgreSQL"):
        catalog.execute("SELECT * FROM embedded")


def test_a_strict_stub_gives_null_for_a_null_argument_as_the_function_would(
    catalog: psycopg.Connection[Any],
) -> None:
    assert value(catalog, "SELECT pgml.embed('m', NULL)") is None
    assert catalog.execute("SELECT * FROM pgml.chunk('character', NULL)").fetchall() == []


def test_stubs_keep_the_contract_defaults(catalog: psycopg.Connection[Any]) -> None:
    arguments = value(
        catalog,
        "SELECT pg_get_function_arguments(to_regprocedure('pgml.transform(text, jsonb, text[], boolean)'))",
    )
    assert arguments == (
        "task text, args jsonb DEFAULT '{}'::jsonb, inputs text[] DEFAULT ARRAY[]::text[], cache boolean DEFAULT false"
    )


def test_stubs_never_shadow_a_helper_that_runs_in_postgresql(conn: psycopg.Connection[Any]) -> None:
    served = registry(
        Signature("add", (Parameter("vector", "real[]"), Parameter("addend", "real")), FLOAT4_ARRAY),
        Signature("embed", (Parameter("transformer", "text"), Parameter("text", "text")), FLOAT4_ARRAY),
    )
    install(conn, served)
    assert value(conn, "SELECT pgml.add(ARRAY[1]::real[], 1)::text") == "{2}"
    with pytest.raises(errors.FeatureNotSupported):
        conn.execute("SELECT pgml.embed('m', 'x')")


def test_reinstalling_follows_the_registry(conn: psycopg.Connection[Any]) -> None:
    gone = Signature("gone", (Parameter("x", "text"),), TEXT)
    changing = Signature("changing", (Parameter("x", "text"),), TEXT)
    install(conn, registry(gone, changing))
    changed = Signature(
        "changing", (Parameter("x", "text"), Parameter("options", "jsonb", {"a": 1})), JSONB, strict=False
    )
    renamed = Signature("changing", (Parameter("y", "text"),), INT8, set_returning=True)
    install(conn, registry(changed, renamed))
    assert value(conn, "SELECT to_regprocedure('pgml.gone(text)')") is None
    assert (
        value(conn, "SELECT pg_get_function_result(to_regprocedure('pgml.changing(text)'))") == "SETOF bigint"
    )
    assert (
        value(conn, "SELECT pg_get_function_arguments(to_regprocedure('pgml.changing(text, jsonb)'))")
        == "x text, options jsonb DEFAULT '{\"a\": 1}'::jsonb"
    )
    assert not value(
        conn, "SELECT proisstrict FROM pg_proc WHERE oid = to_regprocedure('pgml.changing(text, jsonb)')"
    )


def test_a_result_column_named_like_a_parameter_gets_a_stub_too(conn: psycopg.Connection[Any]) -> None:
    snapshot = Signature(
        "snapshot",
        (Parameter("relation_name", "text"), Parameter("y_column_name", "text")),
        (Column("relation", TEXT), Column("y_column_name", TEXT)),
        set_returning=True,
    )
    install(conn, registry(snapshot))
    with pytest.raises(errors.FeatureNotSupported, match=r"pgml\.snapshot ran inside PostgreSQL"):
        conn.execute("SELECT * FROM pgml.snapshot('t', 'y')")
    assert conn.execute("SELECT * FROM pgml.snapshot('t', NULL)").fetchall() == []
    install(conn, registry())  # the helper that raised for it goes with it
    assert (
        value(
            conn,
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace AND proname LIKE 'proxy%'",
        )
        == 0
    )


def test_a_dropped_stub_that_user_objects_use_fails_like_postgres(conn: psycopg.Connection[Any]) -> None:
    install(conn, registry(Signature("gone", (Parameter("x", "text"),), TEXT)))
    conn.execute("CREATE VIEW uses_it AS SELECT pgml.gone('x')")
    with pytest.raises(errors.DependentObjectsStillExist):
        install(conn, registry())


@pytest.mark.parametrize(
    ("value_", "type_name", "expected"),
    [
        ({}, "jsonb", "'{}'::jsonb"),
        ([], "text[]", "ARRAY[]::text[]"),
        (["a'b"], "text[]", "ARRAY['a''b'::text]::text[]"),
        (None, "text", "NULL"),
        (False, "boolean", "false"),
        (0.25, "real", "0.25::real"),
        ("stratified", "pgml.sampling", "'stratified'::pgml.sampling"),
    ],
)
def test_defaults_are_written_as_sql_of_their_type(value_: Any, type_name: str, expected: str) -> None:
    assert default_sql(value_, type_name) == expected


# -- adopting a PostgresML catalog -------------------------------------------------------------------------


def test_install_adopts_a_catalog_postgresml_made(conn: psycopg.Connection[Any]) -> None:
    conn.execute(POSTGRESML_CATALOG.read_text())
    install(conn)
    assert version(conn) == LATEST_VERSION
    for type_name, expected in EXPECTED_LABELS.items():
        present = labels(conn, type_name)
        assert [label for label in present if label in expected.split()] == expected.split()
    assert "text-pair-classification" in labels(conn, "pgml.task")
    assert "agglomerative" in labels(conn, "pgml.algorithm")
    assert conn.execute("SELECT * FROM public.my_deployments").fetchall() == [
        ("Breast Cancer Detection", "xgboost")
    ]
    for table, expected in EXPECTED_COLUMNS.items():
        assert columns(conn, table) == expected
    assert value(conn, "SELECT pgml.sum(v)::text FROM (VALUES ('{1,2}'::real[]), ('{3,4}')) t(v)") == "{4,6}"
    with pytest.raises(errors.FeatureNotSupported):
        conn.execute("SELECT pgml.embed('m', 'x')")
    conn.execute("UPDATE pgml.projects SET task = 'text_pair_classification'")  # the added label is usable
    install(conn)
    assert version(conn) == LATEST_VERSION


# -- drop --------------------------------------------------------------------------------------------------


def test_drop_removes_the_catalog(catalog: psycopg.Connection[Any]) -> None:
    drop(catalog, cascade=False)
    assert version(catalog) is None
    assert value(catalog, "SELECT to_regnamespace('pgml')") is None
    install(catalog)  # and it comes back
    assert version(catalog) == LATEST_VERSION


def test_drop_without_cascade_fails_when_user_objects_depend_on_it(catalog: psycopg.Connection[Any]) -> None:
    catalog.execute("CREATE VIEW project_names AS SELECT name FROM pgml.projects")
    with pytest.raises(errors.DependentObjectsStillExist) as raised:
        drop(catalog, cascade=False)
    assert raised.value.sqlstate == "2BP01"
    assert version(catalog) == LATEST_VERSION  # nothing dropped
    assert value(catalog, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace") > 0
    drop(catalog, cascade=True)
    assert version(catalog) is None
    assert value(catalog, "SELECT to_regclass('project_names')") is None


def test_drop_without_cascade_fails_when_a_user_column_has_a_catalog_type(
    catalog: psycopg.Connection[Any],
) -> None:
    catalog.execute("CREATE TABLE tasks (t pgml.task)")
    with pytest.raises(errors.DependentObjectsStillExist):
        drop(catalog, cascade=False)


def test_drop_leaves_the_users_relations_in_the_schema(catalog: psycopg.Connection[Any]) -> None:
    catalog.execute("CREATE TABLE pgml.iris (sepal_length real)")
    drop(catalog, cascade=True)
    assert value(catalog, "SELECT to_regclass('pgml.iris')::text") == "pgml.iris"
    assert value(catalog, "SELECT to_regclass('pgml.projects')") is None
    assert value(catalog, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace") == 0
    install(catalog)
    assert version(catalog) == LATEST_VERSION


def test_drop_without_a_catalog_says_the_extension_does_not_exist(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.UndefinedObject, match='extension "pgml" does not exist'):
        drop(conn, cascade=False)
