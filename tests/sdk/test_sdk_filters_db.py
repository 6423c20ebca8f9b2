"""The compiled filter, order_by and keys (contract §3.4, §3.5) run against crafted jsonb in a real Postgres.

The documents mix missing keys, JSON nulls, arrays, nested objects, numbers next to numeric strings and
booleans, and keys holding dots, quotes, backslashes and ``%``. Every statement also takes a parameter, so a
stray ``%`` in the compiled SQL would fail as a placeholder.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pgml.filters import compile_filter, compile_order_by, project_keys
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.conftest import Upstream

DOCUMENTS: dict[int, dict[str, object]] = {
    1: {
        "id": 1,
        "title": "alpha",
        "year": 2020,
        "score": 5,
        "tags": ["x", "y"],
        "meta": {"rank": 3, "lang": "en"},
    },
    2: {
        "id": 2,
        "title": "beta",
        "year": 2021,
        "score": 10,
        "tags": ["y", "z"],
        "meta": {"rank": 1, "lang": "fr"},
    },
    3: {"id": 3, "title": "gamma", "year": 2022, "score": "10", "tags": ["x"], "meta": {"rank": 2}},
    4: {"id": 4, "title": "delta", "score": True, "tags": [], "meta": {"lang": "en"}},
    5: {"id": 5, "title": None, "year": 2020, "score": 7.5, "meta": {"rank": None}},
    6: {"id": 6, "year": 2023, "score": False, "tags": "x"},
    7: {
        "id": 7,
        "title": "epsilon",
        "score": None,
        "meta": {"rank": 3, "lang": "de"},
        "a.b": 1,
        'q"k': "quoted",
    },
    8: {"id": 8, "a": {"b": 2}, "a.b": 2, "back\\slash": "yes", "tags": [10, True], "50%": "100%s"},
    9: {"id": 9, "title": "zeta", "year": "2020", "score": [1, 5], "meta": {"rank": 2, "lang": "en"}},
    10: {"id": 10, "meta": [{"rank": 4}]},
    11: {"id": 11, "title": "eta", "score": {"v": 1}, "year": 2019},
    12: {"id": 12},
}
ALL = set(DOCUMENTS)


def source_uuid(row_id: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(str(row_id).encode()).hexdigest())


@pytest.fixture(scope="module")
def conn(upstream: Upstream) -> Iterator[psycopg.Connection]:
    """A session with a TEMP ``documents`` table (the same columns the SDK reads) and its GIN index."""
    with psycopg.connect(upstream.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE documents (id bigserial PRIMARY KEY, created_at timestamp NOT NULL,"
            " source_uuid uuid NOT NULL, document jsonb NOT NULL)"
        )
        conn.execute("CREATE INDEX documents_document_index ON documents USING gin (document jsonb_path_ops)")
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO documents VALUES (%s, timestamp '2024-01-01' + %s * interval '1 day', %s, %s)",
                [(row_id, row_id % 3, source_uuid(row_id), Jsonb(doc)) for row_id, doc in DOCUMENTS.items()],
            )
        conn.execute("ANALYZE documents")
        yield conn


def matching(conn: psycopg.Connection, filter: object) -> set[int]:
    query = sql.SQL("SELECT id FROM documents WHERE {} AND id > %s").format(compile_filter(filter))
    return {row_id for (row_id,) in conn.execute(query, [0])}


FILTERS: list[tuple[str, object, set[int]]] = [
    ("empty filter", {}, ALL),
    ("$eq string", {"title": {"$eq": "alpha"}}, {1}),
    ("$eq number is not its string", {"score": {"$eq": 10}}, {2}),
    ("$eq string is not its number", {"score": {"$eq": "10"}}, {3}),
    ("$eq boolean", {"score": {"$eq": True}}, {4}),
    ("$eq nested path", {"meta": {"lang": {"$eq": "en"}}}, {1, 4, 9}),
    ("$eq object is containment", {"meta": {"$eq": {"lang": "en"}}}, {1, 4, 9}),
    ("$eq array contains all", {"tags": {"$eq": ["x"]}}, {1, 3}),
    ("$eq array in any order", {"tags": {"$eq": ["y", "x"]}}, {1}),
    ("$eq empty array matches every array", {"tags": {"$eq": []}}, {1, 2, 3, 4, 8}),
    ("$eq scalar does not reach into an array", {"tags": {"$eq": "x"}}, {6}),
    ("$eq null needs the key present", {"title": {"$eq": None}}, {5}),
    ("$eq does not step into arrays", {"meta": {"rank": {"$eq": 4}}}, set()),
    ("$ne matches missing keys and null", {"title": {"$ne": "alpha"}}, ALL - {1}),
    ("$ne null", {"title": {"$ne": None}}, ALL - {5}),
    ("$gt numbers, then booleans, arrays, objects", {"year": {"$gt": 2020}}, {2, 3, 6}),
    ("$gte", {"year": {"$gte": 2020}}, {1, 2, 3, 5, 6}),
    ("$lt: a string is below every number", {"year": {"$lt": 2020}}, {9, 11}),
    ("$lte", {"year": {"$lte": 2020}}, {1, 5, 9, 11}),
    ("$gt: true > 5 and so on up the type order", {"score": {"$gt": 5}}, {2, 4, 5, 6, 9, 11}),
    ("$lt: strings and null are below numbers", {"score": {"$lt": 5}}, {3, 7}),
    ("$lt strings: null is below every string", {"title": {"$lt": "c"}}, {1, 2, 5}),
    ("$gt on a missing key never matches", {"nothing": {"$gt": None}}, set()),
    ("several operators are ANDed (F6)", {"year": {"$gte": 2020, "$lt": 2022}}, {1, 2, 5}),
    ("$in strings", {"title": {"$in": ["alpha", "zeta", "nope"]}}, {1, 9}),
    ("$in number matches number and numeric string", {"score": {"$in": [10]}}, {2, 3}),
    ("$in numeric string matches number too", {"score": {"$in": ["10"]}}, {2, 3}),
    ("$in boolean", {"score": {"$in": [True]}}, {4}),
    ("$in float", {"score": {"$in": [7.5]}}, {5}),
    ("$in reaches into an array field", {"score": {"$in": [5]}}, {1, 9}),
    ("$in array field or scalar field", {"tags": {"$in": ["x"]}}, {1, 3, 6}),
    ("$in array field", {"tags": {"$in": ["z", "nope"]}}, {2}),
    ("$in number against array elements", {"tags": {"$in": [10]}}, {8}),
    ("$in compares text, so 'true' is true", {"tags": {"$in": ["true"]}}, {8}),
    ("$in lax path through an array of objects", {"meta": {"rank": {"$in": [4]}}}, {10}),
    ("$in object compares as its JSON text", {"score": {"$in": [{"v": 1}]}}, {11}),
    ("$in null never matches", {"title": {"$in": [None]}}, set()),
    ("$in empty list", {"title": {"$in": []}}, set()),
    ("$nin matches missing keys and null", {"title": {"$nin": ["alpha", "beta"]}}, ALL - {1, 2}),
    ("$nin numbers compare as text", {"score": {"$nin": [10, True]}}, ALL - {2, 3, 4}),
    ("$nin empty list", {"title": {"$nin": []}}, ALL),
    ("$and", {"$and": [{"year": {"$gte": 2020}}, {"meta": {"lang": {"$eq": "en"}}}]}, {1}),
    ("$or", {"$or": [{"title": {"$eq": "beta"}}, {"year": {"$lt": 2020}}]}, {2, 9, 11}),
    ("$and empty", {"$and": []}, ALL),
    ("$or empty", {"$or": []}, set()),
    (
        "nested $or inherits the path",
        {"meta": {"$or": [{"rank": {"$eq": 1}}, {"lang": {"$eq": "de"}}]}},
        {2, 7},
    ),
    ("$and of bare operators at a path", {"year": {"$and": [{"$gte": 2020}, {"$lte": 2021}]}}, {1, 2, 5}),
    ("$or of bare operators at a path", {"year": {"$or": [{"$lt": 2020}, {"$gt": 2022}]}}, {6, 9, 11}),
    ("$not list", {"$not": [{"meta": {"lang": {"$eq": "en"}}}, {"year": {"$eq": 2020}}]}, ALL - {1}),
    ("$not object", {"$not": {"title": {"$eq": "alpha"}}}, ALL - {1}),
    ("$not inherits the path", {"meta": {"$not": [{"lang": {"$eq": "en"}}]}}, ALL - {1, 4, 9}),
    (
        "$not of a comparison keeps SQL NULL for missing keys",
        {"$not": {"year": {"$gt": 2020}}},
        {1, 5, 9, 11},
    ),
    ("$in and $ne ANDed", {"tags": {"$in": ["x"], "$ne": ["y"]}}, {3, 6}),
    (
        "keys and operators of one object ANDed",
        {"meta": {"rank": {"$gte": 2}, "lang": {"$eq": "en"}}},
        {1, 9},
    ),
    ("a dot inside a key is not a path: $eq", {"a.b": {"$eq": 1}}, {7}),
    ("a dot inside a key is not a path: $in", {"a.b": {"$in": [2]}}, {8}),
    ("a dot inside a key is not a path: $gt", {"a.b": {"$gt": 1}}, {8}),
    ("a real nested path a→b", {"a": {"b": {"$in": [1, 2]}}}, {8}),
    ("quote in a key: $eq", {'q"k': {"$eq": "quoted"}}, {7}),
    ("quote in a key: $in", {'q"k': {"$in": ["quoted"]}}, {7}),
    ("quote in a key: $gte", {'q"k': {"$gte": "a"}}, {7}),
    ("backslash in a key: $eq", {"back\\slash": {"$eq": "yes"}}, {8}),
    ("backslash in a key: $in", {"back\\slash": {"$in": ["yes"]}}, {8}),
    ("backslash in a key: $lte", {"back\\slash": {"$lte": "yes"}}, {8}),
    ("percent in key and value: $eq", {"50%": {"$eq": "100%s"}}, {8}),
    ("percent in key and value: $in", {"50%": {"$in": ["100%s"]}}, {8}),
    ("percent in key and value: $gte", {"50%": {"$gte": "100%s"}}, {8}),
    ("SQL in a key stays a key", {"x') OR TRUE --": {"$eq": 1}}, set()),
    ("SQL in a value stays a value", {"title": {"$eq": "'; DROP TABLE documents; --"}}, set()),
]


@pytest.mark.parametrize(
    ("filter", "expected"), [case[1:] for case in FILTERS], ids=[case[0] for case in FILTERS]
)
def test_filter(conn: psycopg.Connection, filter: object, expected: set[int]) -> None:
    assert matching(conn, filter) == expected


def test_eq_uses_the_gin_index(conn: psycopg.Connection) -> None:
    """$eq and $ne compile to containment, which the jsonb_path_ops index serves."""
    query = sql.SQL("EXPLAIN SELECT id FROM documents WHERE {}").format(
        compile_filter({"meta": {"lang": {"$eq": "en"}}, "tags": {"$eq": ["x"]}})
    )
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(line for (line,) in conn.execute(query))
    assert "documents_document_index" in plan


@pytest.mark.parametrize("key", ["", "new\nline", "tab\there", "ünïcödé", "emoji 🙂", "a'b\"c\\d.e%f"])
def test_awkward_keys(conn: psycopg.Connection, key: str) -> None:
    """Any jsonb key can be filtered on and projected (F10)."""
    filters = [
        {key: {"$eq": "v"}},
        {key: {"$in": ["v"]}},
        {key: {"$gte": "v", "$ne": "w"}},
        {key: {"$nin": ["w"]}},
    ]
    query = sql.SQL("SELECT {}, {} FROM (VALUES (%s::jsonb)) AS documents (document)").format(
        sql.SQL(", ").join(compile_filter(filter) for filter in filters), project_keys([key])
    )
    assert conn.execute(query, [Jsonb({key: "v"})]).fetchone() == (True, True, True, True, {key: "v"})
    assert conn.execute(query, [Jsonb({key: "w"})]).fetchone() == (False, False, False, False, {key: "w"})


def ordered(conn: psycopg.Connection, order_by: object) -> list[int]:
    query = sql.SQL("SELECT d.id FROM documents d WHERE d.id > %s ORDER BY {}").format(
        compile_order_by(order_by, sql.SQL("d.document"), sql.SQL("d"))
    )
    return [row_id for (row_id,) in conn.execute(query, [0])]


ORDERS: list[tuple[str, object, list[int]]] = [
    ("desc, ties by id, nulls last", {"year": "desc"}, [6, 3, 2, 1, 5, 11, 9, 4, 7, 8, 10, 12]),
    ("asc: a string sorts below numbers", {"year": "ASC"}, [9, 11, 1, 5, 2, 3, 6, 4, 7, 8, 10, 12]),
    (
        "nested path; JSON null sorts first",
        {"meta": {"rank": "asc"}},
        [5, 2, 3, 9, 1, 7, 4, 6, 8, 10, 11, 12],
    ),
    ("nested path desc", {"meta": {"rank": "DESC"}}, [1, 7, 3, 9, 2, 5, 4, 6, 8, 10, 11, 12]),
    ("ties broken by id", {"meta": {"lang": "desc"}}, [2, 1, 4, 9, 7, 3, 5, 6, 8, 10, 11, 12]),
    (
        "terms in the order given (F7)",
        {"year": "desc", "meta": {"lang": "asc"}},
        [6, 3, 2, 1, 5, 11, 9, 7, 4, 8, 10, 12],
    ),
    ("the other order", {"meta": {"lang": "asc"}, "year": "desc"}, [7, 1, 9, 4, 2, 6, 3, 5, 11, 8, 10, 12]),
    (
        "jsonb type order, then COLUMN_id",
        {"score": "asc", "COLUMN_id": "desc"},
        [7, 3, 1, 5, 2, 6, 4, 9, 11, 12, 10, 8],
    ),
    ("COLUMN_id desc", {"COLUMN_id": "desc"}, sorted(ALL, reverse=True)),
    ("COLUMN_created_at", {"COLUMN_created_at": "DESC"}, [2, 5, 8, 11, 1, 4, 7, 10, 3, 6, 9, 12]),
    ("COLUMN_source_uuid", {"COLUMN_source_uuid": "asc"}, sorted(ALL, key=source_uuid)),
    ("a key with a dot", {"a.b": "desc"}, [8, 7, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12]),
    ("empty", {}, sorted(ALL)),
]


@pytest.mark.parametrize(
    ("order_by", "expected"), [case[1:] for case in ORDERS], ids=[case[0] for case in ORDERS]
)
def test_order_by(conn: psycopg.Connection, order_by: object, expected: list[int]) -> None:
    assert ordered(conn, order_by) == expected


def dig(document: object, path: list[str]) -> object:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def test_keys_project_paths_and_missing_paths_give_null(conn: psycopg.Connection) -> None:
    keys = ["id", "meta,rank", "missing", "a.b", 'q"k', "back\\slash", "50%", "tags", "a,b"]
    query = sql.SQL("SELECT id, {} FROM documents WHERE id > %s ORDER BY id").format(project_keys(keys))
    rows = dict(conn.execute(query, [0]).fetchall())
    assert rows == {
        row_id: {key: dig(document, key.split(",")) for key in keys} for row_id, document in DOCUMENTS.items()
    }
    assert rows[7] == {
        "id": 7,
        "meta,rank": 3,
        "missing": None,
        "a.b": 1,
        'q"k': "quoted",
        "back\\slash": None,
        "50%": None,
        "tags": None,
        "a,b": None,
    }


def test_keys_path_steps_into_arrays_by_index(conn: psycopg.Connection) -> None:
    """The path is read with #>, so a numeric step indexes an array (as the upstream does)."""
    query = sql.SQL("SELECT {} FROM documents WHERE id = %s").format(project_keys(["meta,0,rank", "tags,1"]))
    assert conn.execute(query, [10]).fetchone() == ({"meta,0,rank": 4, "tags,1": None},)
    assert conn.execute(query, [8]).fetchone() == ({"meta,0,rank": None, "tags,1": True},)


def test_many_keys(conn: psycopg.Connection) -> None:
    """More keys than one jsonb_build_object call accepts (100 arguments)."""
    keys = [f"k{index}" for index in range(120)] + ["id"]
    query = sql.SQL("SELECT {} FROM documents WHERE id = %s").format(project_keys(keys))
    (projected,) = conn.execute(query, [3]).fetchone()
    assert projected == {**dict.fromkeys(keys[:-1]), "id": 3}


def test_a_get_documents_statement(conn: psycopg.Connection) -> None:
    """Filter, order, keys and parameters together, as get_documents composes them."""
    query = sql.SQL(
        "SELECT documents.id, {} FROM documents WHERE {} AND documents.id > %s ORDER BY {} LIMIT %s"
    ).format(
        project_keys(["title", "50%"]),
        compile_filter({"$or": [{"meta": {"lang": {"$in": ["en", "de"]}}}, {"50%": {"$eq": "100%s"}}]}),
        compile_order_by({"meta": {"rank": "desc"}}),
    )
    assert conn.execute(query, [1, 3]).fetchall() == [
        (7, {"title": "epsilon", "50%": None}),
        (9, {"title": "zeta", "50%": None}),
        (4, {"title": "delta", "50%": None}),
    ]
