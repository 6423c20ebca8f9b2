"""pgml.tune, and serving what it tuned through pgml.transform and pgml.generate (issue 6), with the tiny
models built at test time as bases (``nlp_proxy`` serves them from its models directory)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg.errors
import pytest

from tests.support.servers import ProxyProcess

POSITIVE = ["good", "great", "wonderful", "happy", "loved"]  # words of the tiny models' vocabulary
NEGATIVE = ["bad", "terrible", "boring", "dirty", "late"]
FRAMES = [
    "the food was {}",
    "this movie is {}",
    "a {} day in paris",
    "the service was {} today",
    "what a {} book",
]
CLASSIFIER = '{"task": "text-classification", "model": "Reviews"}'


@pytest.fixture
def database(scratch_database: str, nlp_proxy: ProxyProcess) -> str:
    """The catalog, a table of reviews whose label a word decides, and a table of tiny conversations."""
    with psycopg.connect(nlp_proxy.url(database=scratch_database), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgml")
        conn.execute("CREATE TABLE reviews (id int, body text, sentiment text)")
        rows = []
        for n in range(48):
            words = POSITIVE if n % 2 else NEGATIVE
            body = FRAMES[(n // 2) % len(FRAMES)].format(words[(n // 2) % len(words)])
            rows.append((n, body, "positive" if n % 2 else "negative"))
        conn.cursor().executemany("INSERT INTO reviews VALUES (%s, %s, %s)", rows)
        conn.execute("CREATE TABLE chats (id int, system text, question text, answer text)")
        conn.cursor().executemany(
            "INSERT INTO chats VALUES (%s, %s, %s, %s)",
            [(n, "be brief", f"say {w}", f"{w} {w}") for n, w in enumerate(POSITIVE * 3)],
        )
    return scratch_database


def _notices(conn: psycopg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda diag: seen.append(diag.message_primary or ""))
    return seen


def _tune_reviews(conn: psycopg.Connection, deploy: bool = True, **extra: Any) -> list[tuple]:
    hyperparams = {
        "dataset_args": {"text_column": "body", "class_column": "sentiment"},
        "epochs": 30,
        "learning_rate": 0.02,
        "batch_size": 8,
        "logging_steps": 2,
        **extra,
    }
    return conn.execute(
        "SELECT * FROM pgml.tune('Reviews', 'text-classification', 'public.reviews', 'sentiment', "
        "'text-classification', hyperparams => %s::jsonb, test_size => 0.25, automatic_deploy => %s)",
        (json.dumps(hyperparams), deploy),
    ).fetchall()


def _stored_files(conn: psycopg.Connection, model_id: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path, data in conn.execute(
        "SELECT path, data FROM pgml.files WHERE model_id = %s ORDER BY path, part", (model_id,)
    ):
        files[path] = files.get(path, b"") + bytes(data)
    return files


def test_tune_a_classifier_and_serve_it_through_transform(
    nlp_proxy: ProxyProcess, database: str, tiny_models: Path, tmp_path: Path
) -> None:
    from pgml_engines import tuning
    from transformers import pipeline

    with psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)
        assert _tune_reviews(conn) == [("Reviews", "text-classification", "transformers", True)]
        [(model_id, algorithm, runtime, metrics, hyperparams)] = conn.execute(
            "SELECT id, algorithm, runtime, metrics, hyperparams FROM pgml.models"
        ).fetchall()
        assert (algorithm, runtime) == ("transformers", "python")
        assert {"accuracy", "f1", "loss"} <= set(metrics)
        assert hyperparams["model_name"] == "text-classification" and hyperparams["project_name"] == "Reviews"
        assert (
            hyperparams["dataset_args"]["text_column"] == "body" and hyperparams["r"] == 8
        )  # given and effective
        assert any(
            n.startswith(f"Training Model {{ id: {model_id}, task: text_classification") for n in notices
        )
        losses = [float(n.rsplit("loss ", 1)[1]) for n in notices if n.startswith("epoch ")]
        assert len(losses) >= 6 and sum(losses[-3:]) < sum(losses[:3])
        assert f"Deploying model id: {model_id}" in notices
        files = _stored_files(conn, model_id)
        assert "adapter_config.json" in files

        inputs = ["the food was good", "this movie is terrible", "what a happy day in paris"]
        [(served,)] = conn.execute(
            "SELECT pgml.transform(%s::jsonb, inputs => %s::text[])", (CLASSIFIER, inputs)
        ).fetchall()
        merged = tuning.materialize(files, str(tiny_models / "text-classification"), tmp_path / "merged")
        expected = pipeline("text-classification", model=str(merged))(inputs)
        assert [r["label"] for r in served] == [r["label"] for r in expected]
        assert [r["score"] for r in served] == pytest.approx([r["score"] for r in expected], abs=1e-4)

        base_task = '{"task": "text-classification", "model": "text-classification"}'
        [(untuned,)] = conn.execute(
            "SELECT pgml.transform(%s::jsonb, inputs => %s::text[])", (base_task, inputs)
        ).fetchall()
        assert [r["score"] for r in untuned] != [r["score"] for r in served]  # the base is not what serves
        rows = conn.execute(
            f"SELECT sentiment, pgml.transform('{CLASSIFIER}'::jsonb, inputs => ARRAY[body]) -> 0 ->> 'label' "
            "FROM reviews ORDER BY id"
        ).fetchall()
        assert sum(label == predicted for label, predicted in rows) > len(rows) * 0.8


def test_a_new_deployment_of_a_tuned_project_is_served_from_the_next_statement(
    nlp_proxy: ProxyProcess, database: str
) -> None:
    with psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as conn:
        _tune_reviews(conn)
        query = "SELECT pgml.transform(%s::jsonb, inputs => ARRAY['the food was good', 'a bad book'])"
        [(first,)] = conn.execute(query, (CLASSIFIER,)).fetchall()
        assert _tune_reviews(conn, deploy=False, learning_rate=0.0001, epochs=1, seed=7)[0][3] is False
        [[second_id]] = conn.execute("SELECT max(id) FROM pgml.models").fetchall()
        [(again,)] = conn.execute(query, (CLASSIFIER,)).fetchall()
        assert again == first
        conn.execute("SELECT * FROM pgml.deploy(%s::bigint)", (second_id,))
        [(after,)] = conn.execute(query, (CLASSIFIER,)).fetchall()
        assert [r["score"] for r in after] != [r["score"] for r in first]


def test_tune_a_conversation_model_and_generate(
    nlp_proxy: ProxyProcess, database: str, tiny_models: Path, tmp_path: Path
) -> None:
    from pgml_engines import tuning
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)
        hyperparams = {
            "dataset_args": {
                "system_column": "system",
                "user_column": "question",
                "assistant_column": "answer",
            },
            "epochs": 4,
            "learning_rate": 0.01,
        }
        tuned = conn.execute(
            "SELECT * FROM pgml.tune('Chat', 'conversation', 'public.chats', model_name => 'text-generation', "
            "hyperparams => %s::jsonb)",
            (json.dumps(hyperparams),),
        ).fetchall()
        assert tuned == [("Chat", "conversation", "transformers", True)]
        [(model_id, metrics)] = conn.execute("SELECT id, metrics FROM pgml.models").fetchall()
        assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["loss"], rel=1e-6)
        assert 0.0 <= metrics["bleu"] <= 1.0
        losses = [float(n.rsplit("loss ", 1)[1]) for n in notices if n.startswith("epoch ")]
        assert sum(losses[-3:]) < sum(losses[:3])
        config = {"max_new_tokens": 6, "do_sample": False}
        [(one,)] = conn.execute("SELECT pgml.generate('Chat', 'say good', %s::jsonb)", (json.dumps(config),))
        [(many,)] = conn.execute(
            "SELECT pgml.generate('Chat', ARRAY['say good', 'say nice'], %s::jsonb)", (json.dumps(config),)
        )
        assert many[0] == one and len(many) == 2
        stream_args = json.dumps({**config, "return_full_text": False})
        pieces = conn.execute(
            'SELECT * FROM pgml.transform_stream(\'{"task": "text-generation", "model": "Chat"}\'::jsonb, '
            "%s::jsonb, 'say good')",
            (stream_args,),
        ).fetchall()
        assert len(pieces) > 1 and one.endswith("".join(p[0][0] for p in pieces))  # the tuned model streams
        files = _stored_files(conn, model_id)

    async def streamed_through_a_cursor() -> list[Any]:  # the extended protocol, a portal fetched in parts
        client = await asyncpg.connect(nlp_proxy.url(database=database))
        try:
            async with client.transaction():
                cursor = client.cursor(
                    "SELECT * FROM pgml.transform_stream($1::jsonb, $2::jsonb, $3)",
                    json.dumps({"task": "text-generation", "model": "Chat"}),
                    stream_args,
                    "say good",
                    prefetch=2,
                )
                return [row[0] async for row in cursor]
        finally:
            await client.close()

    streamed = asyncio.run(streamed_through_a_cursor())
    assert ["".join(json.loads(piece)) for piece in streamed] == [p[0][0] for p in pieces]

    merged = tuning.materialize(files, str(tiny_models / "text-generation"), tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    encoded = tokenizer("say good", return_tensors="pt")
    output = model.generate(**encoded, max_new_tokens=6, do_sample=False)
    continuation = tokenizer.decode(output[0][encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    assert one.endswith(continuation) and continuation.strip()


def test_tune_errors_follow_the_contract(nlp_proxy: ProxyProcess, database: str) -> None:
    with psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="Unsupported task for finetuning"):
            conn.execute("SELECT * FROM pgml.tune('X', 'regression', 'public.reviews', 'sentiment', 'm')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="dataset_args with text_column"):
            conn.execute(
                "SELECT * FROM pgml.tune('X', 'text-classification', 'public.reviews', model_name => "
                "'text-classification')"
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="model_name"):
            conn.execute(
                "SELECT * FROM pgml.tune('X', 'text-classification', 'public.reviews', 'sentiment', "
                'hyperparams => \'{"dataset_args": {"text_column": "body"}}\')'
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="bogus"):
            conn.execute(
                "SELECT * FROM pgml.tune('X', 'text-classification', 'public.reviews', 'sentiment', "
                '\'text-classification\', hyperparams => \'{"dataset_args": {"text_column": "body"}, '
                '"bogus": 1}\')'
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="training_args must be a JSON object"):
            conn.execute(
                "SELECT * FROM pgml.tune('X', 'text-classification', 'public.reviews', 'sentiment', "
                "'text-classification', hyperparams => "
                '\'{"dataset_args": {"text_column": "body"}, "training_args": [1]}\')'
            )
        with pytest.raises(psycopg.errors.UndefinedObject, match="No deployed model exists"):
            conn.execute("SELECT pgml.generate('Nope', 'hello')")
        assert conn.execute("SELECT count(*) FROM pgml.models").fetchone() == (0,)  # nothing half-written
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_stops_a_tune_and_leaves_nothing_behind(nlp_proxy: ProxyProcess, database: str) -> None:
    import threading
    import time

    with psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as conn:
        notices = _notices(conn)

        def cancel_once_training() -> None:  # the worker is fitting: its loss lines have begun
            deadline = time.monotonic() + 60
            while not any(n.startswith("epoch ") for n in notices) and time.monotonic() < deadline:
                time.sleep(0.05)
            conn.cancel_safe()

        canceller = threading.Thread(target=cancel_once_training)
        canceller.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            _tune_reviews(conn, epochs=500, logging_steps=1)
        canceller.join()
        assert time.monotonic() - started < 60  # 500 epochs would take many minutes
        assert conn.execute("SELECT count(*) FROM pgml.models").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pgml.files").fetchone() == (0,)
        assert _tune_reviews(conn, epochs=1)[0][0] == "Reviews"  # the proxy and its worker pool go on


def test_another_proxy_serves_the_tuned_model_from_the_database_alone(
    nlp_proxy: ProxyProcess,
    proxy_factory: Callable[..., ProxyProcess],
    database: str,
    tiny_models: Path,
    tmp_path: Path,
) -> None:
    """A replica with its own models directory (the base model, nothing tuned) serves a project tuned
    through another proxy: it merges the adapter it reads from pgml.files, and follows new deployments."""
    own_models = tmp_path / "models"
    shutil.copytree(tiny_models / "text-classification", own_models / "text-classification")
    replica = proxy_factory("--models-dir", str(own_models))
    query = "SELECT pgml.transform(%s::jsonb, inputs => ARRAY['the food was good', 'a bad book'])"
    with (
        psycopg.connect(nlp_proxy.url(database=database), autocommit=True) as tuner,
        psycopg.connect(replica.url(database=database), autocommit=True) as other,
    ):
        _tune_reviews(tuner)
        [(here,)] = tuner.execute(query, (CLASSIFIER,)).fetchall()
        [(there,)] = other.execute(query, (CLASSIFIER,)).fetchall()
        assert there == here
        assert any(p.name.startswith("pgml-tuned-") for p in own_models.iterdir())
        _tune_reviews(tuner, deploy=False, learning_rate=0.0001, epochs=1, seed=7)
        [[second_id]] = tuner.execute("SELECT max(id) FROM pgml.models").fetchall()
        tuner.execute("SELECT * FROM pgml.deploy(%s::bigint)", (second_id,))
        [(switched,)] = other.execute(query, (CLASSIFIER,)).fetchall()
        assert switched != there
        assert switched == tuner.execute(query, (CLASSIFIER,)).fetchone()[0]
