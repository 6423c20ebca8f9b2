"""Documents through the SDK (contract §2.2, §3.5, §4.6, §4.7): upsert, get, delete, merge, pagination and order,
identity and version as stored, and what a bad input or a failed batch leaves behind. Mostly without pipelines;
the upstream Python suite's DB-only facts (§6.2) and the Rust suite's document facts (§6.3) are re-expressed."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

import pgml
import psycopg
import pytest
from pgml import PgmlError, ValidationError
from psycopg import sql

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


def query(url: str, statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of its own (what a user sees from outside the SDK)."""
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def count(url: str, *table: str) -> int:
    return int(query(url, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))[0][0])


def python_suite_documents(count: int) -> list[dict[str, Any]]:
    """The upstream Python suite's dummy documents (§6.1)."""
    return [
        {
            "id": i,
            "title": f"Test Document {i}",
            "body": f"Test body {i}",
            "text": f"Here is some text {i}",
            "project": "a10",
            "uuid": i * 10,
            "floating_uuid": i * 1.01,
            "test": None,
            "name": f"Test Document {i}",
        }
        for i in range(count)
    ]


def rust_suite_documents(count: int) -> list[dict[str, Any]]:
    """The upstream Rust suite's dummy documents (§6.1), with a short body: no pipeline reads it here."""
    return [
        {
            "id": i,
            "title": f"Test document: {i}",
            "body": f"Here is some text that we will end up splitting on! {i}",
            "text": "here is some test text",
            "notes": f"Here are some notes or something for test document {i}",
            "metadata": {"uuid": i * 10, "name": f"Test Document {i}"},
        }
        for i in range(count)
    ]


def ids(documents: list[dict[str, Any]]) -> list[Any]:
    return [d["document"]["id"] for d in documents]


def row_ids(documents: list[dict[str, Any]]) -> list[int]:
    return [d["row_id"] for d in documents]


def md5_uuid(text: str) -> str:
    return str(uuid.UUID(bytes=hashlib.md5(text.encode()).digest()))


# --- the upstream Python suite's DB-only facts (§6.2) ---------------------------------------------------------


async def test_upsert_and_get_documents(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    documents = python_suite_documents(10)
    await collection.upsert_documents(documents)
    everything = await collection.get_documents()
    assert len(everything) == 10
    assert [d["document"] for d in everything] == documents  # stored verbatim, in row-id order
    assert row_ids(everything) == list(range(1, 11))
    for item in everything:
        assert set(item) >= {"row_id", "created_at", "source_uuid", "document"}
        assert isinstance(item["row_id"], int)
        assert isinstance(item["created_at"], int)
        assert item["source_uuid"] == md5_uuid(str(item["document"]["id"]))

    page = await collection.get_documents({"offset": 1, "limit": 2, "filter": {"id": {"$gt": 0}}})
    assert len(page) == 2
    assert page[0]["document"]["id"] == 2
    keyset = await collection.get_documents({"last_row_id": page[-1]["row_id"], "filter": {"id": {"$lt": 7}}})
    assert len(keyset) == 3
    assert keyset[0]["document"]["id"] == 4


async def test_delete_documents(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(python_suite_documents(3))
    await collection.delete_documents({"id": {"$gte": 2}})
    remaining = await collection.get_documents()
    assert len(remaining) == 2
    assert remaining[0]["document"]["id"] == 0
    assert ids(remaining) == [0, 1]


async def test_order_documents(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(python_suite_documents(3))
    ordered = await collection.get_documents({"order_by": {"id": "desc"}})
    assert ordered[0]["document"]["id"] == 2
    assert ids(ordered) == [2, 1, 0]


# --- the upstream Rust suite's document facts (§6.3) -------------------------------------------------------


async def test_reupsert_replaces_whole_documents(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(
        [
            {"id": 1, "random_key": 10, "text": "hello world 1"},
            {"id": 2, "random_key": 11, "text": "hello world 2"},
            {"id": 3, "random_key": 12, "text": "hello world 3"},
        ]
    )
    assert (await collection.get_documents())[0]["document"]["text"] == "hello world 1"
    await collection.upsert_documents(
        [
            {"id": 1, "text": "hello world new"},
            {"id": 2, "random_key": 12},
            {"id": 3, "random_key": 13},
        ]
    )
    assert [d["document"] for d in await collection.get_documents()] == [
        {"id": 1, "text": "hello world new"},
        {"id": 2, "random_key": 12},
        {"id": 3, "random_key": 13},
    ]
    assert row_ids(await collection.get_documents()) == [1, 2, 3]  # updated in place
    equal = await collection.get_documents({"filter": {"random_key": {"$eq": 12}}})
    assert [d["document"] for d in equal] == [{"id": 2, "random_key": 12}]  # 3's old 12 is gone
    at_least = await collection.get_documents({"filter": {"random_key": {"$gte": 13}}})
    assert [d["document"] for d in at_least] == [{"id": 3, "random_key": 13}]
    assert count(sdk_url, collection_name, "documents") == 3


async def test_keys_project_paths(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(rust_suite_documents(3))
    projected = await collection.get_documents({"keys": ["id", "metadata,uuid", "metadata,name", "missing"]})
    assert [d["document"] for d in projected] == [
        {"id": i, "metadata,uuid": i * 10, "metadata,name": f"Test Document {i}", "missing": None}
        for i in range(3)
    ]
    whole = await collection.get_documents({"keys": ["metadata"], "limit": 1})
    assert whole[0]["document"] == {"metadata": {"uuid": 0, "name": "Test Document 0"}}


async def test_pagination_filters_and_filtered_delete(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(rust_suite_documents(10))

    assert row_ids(await collection.get_documents({"limit": 5, "offset": 0})) == [1, 2, 3, 4, 5]
    page = await collection.get_documents({"limit": 2, "offset": 5})
    assert row_ids(page) == [6, 7]
    page = await collection.get_documents({"limit": 2, "last_row_id": page[-1]["row_id"]})
    assert row_ids(page) == [8, 9]
    page = await collection.get_documents({"limit": 1, "last_row_id": page[-1]["row_id"]})
    assert row_ids(page) == [10]
    assert await collection.get_documents({"last_row_id": 10}) == []

    filtered = await collection.get_documents({"filter": {"id": {"$gte": 2}}, "limit": 2, "offset": 0})
    assert ids(filtered) == [2, 3]
    filtered = await collection.get_documents({"filter": {"id": {"$lte": 5}}, "limit": 100, "offset": 4})
    assert ids(filtered) == [4, 5]

    await collection.delete_documents({"id": {"$lt": 2}})
    remaining = await collection.get_documents()
    assert len(remaining) == 8
    assert all(i >= 2 for i in ids(remaining))
    await collection.delete_documents({"id": {"$gte": 6}})
    remaining = await collection.get_documents()
    assert ids(remaining) == [2, 3, 4, 5]


async def test_nested_order_by_ties_and_columns(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(
        [
            {"id": 1, "text": "Test Document 1", "number": 99, "nested_number": {"number": 3}, "tie": 2},
            {"id": 2, "text": "Test Document 1", "number": 98, "nested_number": {"number": 2}, "tie": 2},
            {"id": 3, "text": "Test Document 1", "number": 97, "nested_number": {"number": 1}, "tie": 2},
        ]
    )

    async def numbers(order_by: dict[str, Any], **args: Any) -> list[int]:
        return [
            d["document"]["number"] for d in await collection.get_documents({"order_by": order_by, **args})
        ]

    assert await numbers({"number": "asc"}) == [97, 98, 99]
    assert await numbers({"number": "DESC"}) == [99, 98, 97]
    assert await numbers({"nested_number": {"number": "asc"}}) == [97, 98, 99]
    assert await numbers({"nested_number": {"number": "asc"}, "tie": "desc"}) == [97, 98, 99]
    # Ties fall back to the row id, ascending; terms apply in the order given (F7).
    assert await numbers({"tie": "desc"}) == [99, 98, 97]
    assert await numbers({"tie": "asc", "number": "asc"}) == [97, 98, 99]
    assert await numbers({"tie": "asc", "COLUMN_id": "desc"}) == [97, 98, 99]
    assert await numbers({"COLUMN_id": "asc"}) == [99, 98, 97]
    # A missing key sorts last whatever the direction (NULLS LAST).
    await collection.upsert_documents([{"id": 4, "number": 100}])
    assert await numbers({"tie": "asc"}) == [99, 98, 97, 100]
    assert await numbers({"tie": "desc"}) == [99, 98, 97, 100]
    # K11: keyset paging ignores the custom order for the cut, and keeps it for the order.
    assert await numbers({"number": "asc"}, last_row_id=1) == [97, 98, 100]
    with pytest.raises(ValidationError):
        await collection.get_documents({"order_by": {"COLUMN_document": "asc"}})
    with pytest.raises(ValidationError):
        await collection.get_documents({"order_by": {"number": "up"}})


async def test_update_replaces_and_merge_keeps_old_keys(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": i, "text": "Test Document 1"} for i in (1, 2, 3)])
    await collection.upsert_documents([{"id": i, "number": i - 1} for i in (1, 2, 3)])
    documents = await collection.get_documents({"order_by": {"number": "asc"}})
    assert [d["document"] for d in documents] == [{"id": i, "number": i - 1} for i in (1, 2, 3)]

    await collection.upsert_documents(
        [{"id": i, "text": "Test Document", "number": 100 - i, "second_number": 9 + i} for i in (1, 2, 3)]
    )
    documents = await collection.get_documents({"order_by": {"number": "asc"}})
    assert [(d["document"]["number"], d["document"]["second_number"]) for d in documents] == [
        (97, 12),
        (98, 11),
        (99, 10),
    ]
    await collection.upsert_documents(
        [{"id": i, "number": i - 1, "another_number": i} for i in (1, 2, 3)], {"merge": True}
    )
    documents = await collection.get_documents({"order_by": {"number": "asc"}})
    assert [
        (d["document"]["number"], d["document"]["another_number"], d["document"]["second_number"])
        for d in documents
    ] == [(0, 1, 10), (1, 2, 11), (2, 3, 12)]
    assert documents[0]["document"]["text"] == "Test Document"
    # K9: the version lists only the keys of the incoming document.
    versions = query(
        sdk_url,
        sql.SQL("SELECT version FROM {} ORDER BY id").format(sql.Identifier(collection_name, "documents")),
    )
    assert all(set(v[0]) == {"id", "number", "another_number"} for v in versions)


async def test_merge_is_shallow(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1, "meta": {"a": 1, "b": 2}, "keep": True}])
    await collection.upsert_documents([{"id": 1, "meta": {"c": 3}}], {"merge": True})
    [stored] = await collection.get_documents()
    assert stored["document"] == {"id": 1, "meta": {"c": 3}, "keep": True}


async def test_repeated_ids_in_one_batch(sdk_url: str, collection_name: str) -> None:
    # F13: the upstream fails with 21000; the last occurrence wins, or with merge they merge in order.
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(
        [{"id": 1, "v": 1, "a": 1}, {"id": 2, "v": 1}, {"id": 1, "v": 2}, {"id": 1, "v": 3, "b": 3}]
    )
    assert [d["document"] for d in await collection.get_documents()] == [
        {"id": 1, "v": 3, "b": 3},
        {"id": 2, "v": 1},
    ]
    await collection.upsert_documents([{"id": 3, "old": True}])
    await collection.upsert_documents(
        [{"id": 3, "v": 1, "a": 1}, {"id": 3, "v": 2, "b": 2}, {"id": 3, "c": 3}], {"merge": True}
    )
    [merged] = await collection.get_documents({"filter": {"id": {"$eq": 3}}})
    assert merged["document"] == {"id": 3, "old": True, "v": 2, "a": 1, "b": 2, "c": 3}
    assert count(sdk_url, collection_name, "documents") == 3


async def test_repeated_ids_across_batches(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1, "v": 1}, {"id": 2}, {"id": 1, "v": 2}], {"batch_size": 1})
    assert [d["document"] for d in await collection.get_documents()] == [{"id": 1, "v": 2}, {"id": 2}]


async def test_parallel_batches_sharing_ids_do_not_deadlock(sdk_url: str, collection_name: str) -> None:
    """Batches in flight at once that write the same documents in different orders must not lock each other
    out: each document ends up once, as one of the versions sent."""
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", {"t": {}}))
    documents = []
    for version in range(12):
        batch = [{"id": i, "t": f"{i}-{version}"} for i in range(4)]
        documents += batch if version % 2 else batch[::-1]
    await collection.upsert_documents(documents, {"batch_size": 4, "parallel_batches": 12})
    stored = await collection.get_documents({"order_by": {"id": "asc"}})
    assert ids(stored) == [0, 1, 2, 3]
    assert all(d["document"]["t"].startswith(f"{d['document']['id']}-") for d in stored)
    chunks = query(
        sdk_url,
        sql.SQL("SELECT d.document ->> 't', c.chunk FROM {} c JOIN {} d ON d.id = c.document_id").format(
            sql.Identifier(f"{collection_name}_p", "t_chunks"), sql.Identifier(collection_name, "documents")
        ),
    )
    assert len(chunks) == 4 and all(text == chunk for text, chunk in chunks)


# --- identity and version as stored (§4.6) -------------------------------------------------------------------


async def test_one_and_the_string_one_are_two_documents(sdk_url: str, collection_name: str) -> None:
    # K8
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1, "kind": "int"}, {"id": "1", "kind": "str"}])
    documents = await collection.get_documents()
    assert [(d["document"]["kind"], d["source_uuid"]) for d in documents] == [
        ("int", "c4ca4238-a0b9-2382-0dcc-509a6f75849b"),
        ("str", "2f7bb230-c708-19ae-b10b-45a709bcf48f"),
    ]
    only_int = await collection.get_documents({"filter": {"id": {"$eq": 1}}})
    assert [d["document"]["kind"] for d in only_int] == ["int"]


SERDE_IDS = [
    (1, "1"),
    ("1", '"1"'),
    (1.0, "1.0"),
    (1e16, "1e16"),
    (1.5e-7, "1.5e-7"),
    (0.00001, "0.00001"),
    (True, "true"),
    ([1, "a"], '[1,"a"]'),
    ({"b": 1, "a": {"d": None, "c": "é"}}, '{"a":{"c":"é","d":null},"b":1}'),
    ("tab\tand 日本", '"tab\\tand 日本"'),
    ("\x1f", '"\\u001f"'),
]


async def test_stored_source_uuids_are_the_contract_vectors(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": value, "n": n} for n, (value, _) in enumerate(SERDE_IDS)])
    expected = [md5_uuid(text) for _, text in SERDE_IDS]
    documents = await collection.get_documents({"order_by": {"n": "asc"}})
    assert [d["source_uuid"] for d in documents] == expected
    assert [d["document"]["id"] for d in documents] == [value for value, _ in SERDE_IDS]
    stored = query(
        sdk_url,
        sql.SQL("SELECT source_uuid FROM {} ORDER BY (document -> 'n')::int").format(
            sql.Identifier(collection_name, "documents")
        ),
    )
    assert [str(row[0]) for row in stored] == expected


async def test_version_and_created_at(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    document = {"id": 5, "text": "héllo", "meta": {"z": 1, "a": [1.5, None]}, "n": 1e16, "flag": False}
    before = int(time.time() * 1000)
    await collection.upsert_documents([document])
    after = int(time.time() * 1000)
    [(version, created_epoch)] = query(
        sdk_url,
        sql.SQL("SELECT version, extract(epoch FROM created_at) FROM {}").format(
            sql.Identifier(collection_name, "documents")
        ),
    )
    texts = {"id": "5", "text": '"héllo"', "meta": '{"a":[1.5,null],"z":1}', "n": "1e16", "flag": "false"}
    assert set(version) == set(texts)
    stamps = {entry["last_updated"] for entry in version.values()}
    assert len(stamps) == 1  # the same for every key of the document
    [stamp] = stamps
    assert isinstance(stamp, int) and before <= stamp <= after  # unix milliseconds
    assert {key: entry["md5"] for key, entry in version.items()} == {
        key: hashlib.md5(text.encode()).hexdigest() for key, text in texts.items()
    }
    [got] = await collection.get_documents()
    assert got["document"] == document
    assert isinstance(got["created_at"], int)
    assert got["created_at"] == int(created_epoch // 1)  # the naive timestamp read as UTC, in seconds
    assert abs(got["created_at"] - time.time()) < 86400


async def test_get_documents_defaults_to_1000(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": i} for i in range(1001)], {"batch_size": 500})
    assert len(await collection.get_documents()) == 1000
    assert len(await collection.get_documents({"limit": 2000})) == 1001


# --- bad input writes nothing ---------------------------------------------------------------------------------

BAD_UPSERTS = [
    pytest.param([{"id": 1}, {"id": 2}, "not a document"], {"batch_size": 1}, "dict", id="not-a-dict"),
    pytest.param([{"id": 1}, {"id": 2}, None], {"batch_size": 1}, "dict", id="none"),
    pytest.param([{"id": 1}, {"title": "no id"}], {"batch_size": 1}, "id", id="missing-id"),
    pytest.param([{"id": 1}, {"id": 2, "tags": {"a", "b"}}], {"batch_size": 1}, "set", id="set-value"),
    pytest.param([{"id": 1}, {"id": 2, "x": object()}], {"batch_size": 1}, "object", id="object-value"),
    pytest.param([{"id": 1}, {"id": {1, 2}}], {"batch_size": 1}, "set", id="set-id"),
    pytest.param([{"id": 1}, {"id": 2, "x": float("nan")}], {"batch_size": 1}, "", id="nan"),
    pytest.param([{"id": 1}, {"id": float("inf")}], {"batch_size": 1}, "", id="infinite-id"),
    pytest.param([{"id": 1}, {"id": 2, 3: "int key"}], {"batch_size": 1}, "", id="int-key"),
    pytest.param([{"id": 1}], {"batchsize": 10}, "batchsize", id="unknown-arg"),
    pytest.param([{"id": 1}], {"batch_size": 0}, "batch_size", id="batch-size-0"),
    pytest.param([{"id": 1}], {"batch_size": -1}, "batch_size", id="batch-size-negative"),
    pytest.param([{"id": 1}], {"parallel_batches": 0}, "parallel_batches", id="parallel-0"),
    pytest.param([{"id": 1}], {"merge": "yes"}, "merge", id="merge-not-bool"),
    pytest.param({"id": 1}, None, "list", id="documents-not-a-list"),
    pytest.param([{"id": 1}], ["batch_size", 1], "dict", id="args-not-a-dict"),
]


@pytest.mark.parametrize(("documents", "args", "named"), BAD_UPSERTS)
async def test_bad_input_raises_and_writes_nothing(
    sdk_url: str, collection_name: str, documents: Any, args: Any, named: str
) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": "seed"}])
    with pytest.raises(ValidationError) as raised:
        await collection.upsert_documents(documents, args)
    assert named.lower() in str(raised.value).lower()
    assert [d["document"] for d in await collection.get_documents()] == [{"id": "seed"}]


@pytest.mark.parametrize(
    "args",
    [
        {"limits": 1},
        {"limit": -1},
        {"offset": "1"},
        {"last_row_id": 1.5},
        {"keys": "id"},
        {"filter": "id"},
        {"filter": []},
        {"order_by": ["id"]},
        {"order_by": []},
    ],
)
async def test_bad_get_documents_args(sdk_url: str, collection_name: str, args: dict[str, Any]) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    with pytest.raises(ValidationError):
        await collection.get_documents(args)


async def test_a_failed_batch_rolls_back_alone(sdk_url: str, collection_name: str) -> None:
    """batch_size 2: the second batch fails after its documents are written (a chunk insert is refused), so its
    documents go too, while the first batch stays committed with its chunks and embeddings (§4.7 step 7)."""
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.add_pipeline(pgml.Pipeline("p", {"title": {"semantic_search": {"model": EMBEDDER}}}))
    chunks = sql.Identifier(f"{collection_name}_p", "title_chunks")
    refuse = sql.Identifier(f"{collection_name}_p", "refuse_poison")
    query(
        sdk_url,
        sql.SQL(
            "CREATE FUNCTION {refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.chunk LIKE '%%poison%%' THEN RAISE EXCEPTION 'poisoned chunk'; END IF; RETURN NEW; END $$"
        ).format(refuse=refuse),
    )
    query(
        sdk_url,
        sql.SQL(
            "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(chunks, refuse),
    )
    documents = [
        {"id": 0, "title": "first"},
        {"id": 1, "title": "second"},
        {"id": 2, "title": "third"},
        {"id": 3, "title": "poison"},
    ]
    with pytest.raises(PgmlError) as raised:
        await collection.upsert_documents(documents, {"batch_size": 2})
    assert "poison" in str(raised.value)
    assert raised.value.sqlstate == "P0001"
    assert ids(await collection.get_documents()) == [0, 1]
    assert count(sdk_url, f"{collection_name}_p", "title_chunks") == 2
    assert count(sdk_url, f"{collection_name}_p", "title_embeddings") == 2
    # Fixed and sent again, everything goes through.
    documents[3]["title"] = "fourth"
    await collection.upsert_documents(documents, {"batch_size": 2})
    assert ids(await collection.get_documents()) == [0, 1, 2, 3]
    status = await collection.get_pipeline_status(pgml.Pipeline("p"))
    assert status == {"title": {"embeddings": {"synced": 4, "not_synced": 0, "total": 4}}}


async def test_delete_with_an_empty_filter_deletes_everything(
    sdk_url: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # K10, with a warning.
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents(python_suite_documents(4))
    caplog.set_level(logging.WARNING, logger="pgml")
    await collection.delete_documents({})
    assert await collection.get_documents() == []
    assert count(sdk_url, collection_name, "documents") == 0
    assert any(r.name == "pgml" and r.levelno == logging.WARNING for r in caplog.records)


async def test_delete_needs_a_filter_object(sdk_url: str, collection_name: str) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1}])
    with pytest.raises(ValidationError):
        await collection.delete_documents([])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await collection.delete_documents({"id": {"$exists": True}})
    assert count(sdk_url, collection_name, "documents") == 1


async def test_debug_logs_every_statement_with_its_parameters(
    sdk_url: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    collection = pgml.Collection(collection_name, sdk_url)
    await collection.upsert_documents([{"id": 1}])
    caplog.set_level(logging.DEBUG, logger="pgml")
    await collection.get_documents({"limit": 7})
    statements = [r.getMessage() for r in caplog.records if r.name == "pgml" and r.levelno == logging.DEBUG]
    assert any("documents" in s and "7" in s for s in statements)
