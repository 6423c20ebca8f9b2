"""pgml.transform end to end through real clients, on the tiny task models of ``pgml_engines.testing``.

The models are random, so the tests compare what a user relies on: the JSON shape of every task's result as
contract §5.2 gives it (keys, nesting, label sets, types), the result column (``transform``, jsonb), and, where
it is cheap, that the proxy returns what the same model gives in this process through Hugging Face's own
pipeline. Scores are compared with the in-process ones, never with fixed numbers.

A text task means ``{"task": t}`` with Hugging Face's default model, which cannot be downloaded here, so the
real checks name the model in the jsonb task form; the text overloads are shown by the model they look for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg.errors
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import Upstream
from tests.support.failures import assert_fails_cleanly, assert_usable
from tests.support.servers import ProxyProcess, run_psql
from tests.support.tables import scratch_table

JSONB_OID = 3802  # jsonb on the wire (§6.1)
TEXT_OID = 25


def task(name: str, model: str, **extra: Any) -> str:
    return json.dumps({"task": name, "model": model, **extra})


CLASSIFY = task("text-classification", "text-classification")
NLI = task("zero-shot-classification", "nli")
TOKENS = task("token-classification", "token-classification")
QA = task("question-answering", "question-answering")
FILL = task("fill-mask", "fill-mask")
FEATURES = task("feature-extraction", "fill-mask")
GENERATE = task("text-generation", "text-generation")
CHAT = task("conversational", "text-generation")

TEXTS = [
    "I loved the book, it was a great and happy read.",
    "The service was terrible and the room was dirty.",
]
QUESTION = {"question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris, in France."}
OTHER_QUESTION = {"question": "Who wrote a program?", "context": "Ada Lovelace wrote the first program."}
MASKED = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat."]
MESSAGE = json.dumps({"role": "user", "content": "hi"})
JSONB_INPUTS_ERROR = "ARRAY[]::JSONB inputs for transform should only be used with a conversational task"
TRANSFORM = "SELECT pgml.transform(%s::jsonb, %s::jsonb, %s::text[])"


# --- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(nlp_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return nlp_conn


@pytest.fixture(scope="module")
def local(tiny_models: Path) -> Callable[[str, str], Any]:
    """Hugging Face pipelines over the same model folders the proxy serves, loaded here once each."""
    from transformers import pipeline

    made: dict[tuple[str, str], Any] = {}

    def get(name: str, folder: str) -> Any:
        if (name, folder) not in made:
            made[name, folder] = pipeline(name, model=str(tiny_models / folder), device="cpu")
        return made[name, folder]

    return get


def transform(
    conn: psycopg.Connection[Any], spec: str, args: dict[str, Any], inputs: list[str], *, binary: bool = False
) -> Any:
    cursor = conn.cursor(binary=binary)
    cursor.execute(TRANSFORM, (spec, json.dumps(args), inputs))
    assert cursor.description is not None
    assert [(c.name, c.type_code) for c in cursor.description] == [("transform", JSONB_OID)]
    [(result,)] = cursor.fetchall()
    return result


def plain(value: Any) -> Any:
    """A pipeline's output as JSON would carry it (numpy scalars become Python numbers)."""
    return json.loads(json.dumps(value, default=float))


# --- every task's shape (§5.2), checked against the pipeline in this process -------------------------------------


def test_a_text_task_looks_for_hugging_faces_default_model_and_says_where(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject) as raised:
        conn.execute("SELECT pgml.transform('text-classification', inputs => ARRAY['good', 'bad'])")
    message = str(raised.value)
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english" in message
    assert "looked in" in message and "directory" in message
    assert_usable(conn)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_text_classification_gives_one_label_object_per_input_as_the_pipeline_does(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any], binary: bool
) -> None:
    result = transform(conn, CLASSIFY, {}, TEXTS, binary=binary)
    expected = plain(local("text-classification", "text-classification")(TEXTS))
    assert isinstance(result, list) and len(result) == 2
    for item, reference in zip(result, expected, strict=True):
        assert list(item) == ["label", "score"]
        assert item["label"] in ("NEGATIVE", "POSITIVE") and type(item["score"]) is float
        assert item["label"] == reference["label"]
        assert item["score"] == pytest.approx(reference["score"], abs=1e-5)


def test_a_task_dictionary_with_only_a_model_runs_the_models_own_task(conn: psycopg.Connection[Any]) -> None:
    inferred = conn.execute(
        'SELECT pgml.transform(\'{"model": "text-classification"}\'::jsonb, inputs => %s::text[])', (TEXTS,)
    ).fetchone()
    assert inferred is not None
    assert [item["label"] for item in inferred[0]] == [
        item["label"] for item in transform(conn, CLASSIFY, {}, TEXTS)
    ]


def test_zero_shot_classification_sorts_the_candidate_labels_by_score(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    labels = ["city", "food", "sport"]
    result = transform(conn, NLI, {"candidate_labels": labels}, TEXTS)
    expected = plain(local("zero-shot-classification", "nli")(TEXTS, candidate_labels=labels))
    assert len(result) == 2
    for text, item, reference in zip(TEXTS, result, expected, strict=True):
        assert list(item) == ["labels", "scores", "sequence"]
        assert item["sequence"] == text
        assert sorted(item["labels"]) == labels
        assert item["scores"] == sorted(item["scores"], reverse=True)
        assert all(type(score) is float for score in item["scores"])
        got = dict(zip(item["labels"], item["scores"], strict=True))
        want = dict(zip(reference["labels"], reference["scores"], strict=True))
        assert got == pytest.approx(want, abs=1e-5)


def test_token_classification_gives_a_list_of_entities_per_input(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    texts = ["Marie Curie lived in Paris", "Ada Lovelace"]
    result = transform(conn, TOKENS, {}, texts)
    expected = plain(local("token-classification", "token-classification")(texts))
    assert len(result) == 2
    for text, entities, reference in zip(texts, result, expected, strict=True):
        assert isinstance(entities, list) and entities
        for entity in entities:
            assert list(entity) == ["end", "word", "index", "score", "start", "entity"]  # jsonb key order
            assert all(type(entity[key]) is int for key in ("start", "end", "index"))
            assert entity["entity"] in ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
            assert text[entity["start"] : entity["end"]].lower() == entity["word"]
        keys = ("entity", "word", "index", "start", "end")
        assert [[e[k] for k in keys] for e in entities] == [[e[k] for k in keys] for e in reference]


def test_one_question_gives_a_bare_answer_object_and_the_json_operator_reads_it(
    conn: psycopg.Connection[Any],
) -> None:
    answer = transform(conn, QA, {}, [json.dumps(QUESTION)])
    assert isinstance(answer, dict)  # the quirk kept (§7.3)
    assert list(answer) == ["end", "score", "start", "answer"]
    assert type(answer["score"]) is float and type(answer["start"]) is int and type(answer["end"]) is int
    assert answer["answer"] == QUESTION["context"][answer["start"] : answer["end"]]
    cursor = conn.execute(
        "SELECT pgml.transform(%s::jsonb, inputs => %s::text[]) ->> 'answer'", (QA, [json.dumps(QUESTION)])
    )
    assert cursor.description is not None and cursor.description[0].type_code == TEXT_OID
    assert cursor.fetchall() == [(answer["answer"],)]


def test_several_questions_give_a_list_of_answers(conn: psycopg.Connection[Any]) -> None:
    answers = transform(conn, QA, {}, [json.dumps(QUESTION), json.dumps(OTHER_QUESTION)])
    assert isinstance(answers, list) and len(answers) == 2
    for question, answer in zip((QUESTION, OTHER_QUESTION), answers, strict=True):
        assert list(answer) == ["end", "score", "start", "answer"]
        assert answer["answer"] == question["context"][answer["start"] : answer["end"]]
    assert answers[0] == transform(conn, QA, {}, [json.dumps(QUESTION)])


def test_one_masked_input_gives_a_flat_list_of_the_top_5(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    result = transform(conn, FILL, {}, MASKED[:1])
    expected = plain(local("fill-mask", "fill-mask")(MASKED[0]))
    assert isinstance(result, list) and len(result) == 5
    for candidate in result:
        assert list(candidate) == ["score", "token", "sequence", "token_str"]
        assert type(candidate["token"]) is int and type(candidate["score"]) is float
        assert candidate["token_str"] in candidate["sequence"]
    assert [c["token"] for c in result] == [c["token"] for c in expected]
    assert [c["sequence"] for c in result] == [c["sequence"] for c in expected]


def test_several_masked_inputs_give_a_list_of_lists(conn: psycopg.Connection[Any]) -> None:
    result = transform(conn, FILL, {}, MASKED)
    assert [len(candidates) for candidates in result] == [5, 5]
    assert all(isinstance(c, dict) and "token_str" in c for candidates in result for c in candidates)
    assert result[0] == transform(conn, FILL, {}, MASKED[:1])


def test_feature_extraction_gives_nested_float_lists_per_input(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    texts = ["hello world", "a"]
    result = transform(conn, FEATURES, {}, texts)
    reference = local("feature-extraction", "fill-mask")
    assert len(result) == 2
    for text, item in zip(texts, result, strict=True):
        [tokens] = item
        [expected] = reference(text)
        assert len(tokens) == len(expected)
        assert all(len(vector) == 32 and all(type(x) is float for x in vector) for vector in tokens)
        assert [x for v in tokens for x in v] == pytest.approx([x for v in expected for x in v], abs=1e-4)


def test_text_generation_nests_sequences_per_input_and_starts_with_the_prompt(
    conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    prompts = ["The capital of France", "Paris is"]
    result = transform(conn, GENERATE, {"max_new_tokens": 5}, prompts)
    expected = plain(local("text-generation", "text-generation")(prompts, max_new_tokens=5, do_sample=False))
    assert len(result) == 2
    for prompt, sequences in zip(prompts, result, strict=True):
        [sequence] = sequences
        assert list(sequence) == ["generated_text"]
        assert sequence["generated_text"].startswith(prompt)
    assert result == expected  # greedy: the same words as the pipeline


def test_openai_max_tokens_and_n_shape_the_generation(conn: psycopg.Connection[Any]) -> None:
    result = transform(conn, GENERATE, {"max_tokens": 3, "n": 2, "temperature": 0.7}, ["Paris", "Berlin"])
    assert [len(sequences) for sequences in result] == [2, 2]
    for prompt, sequences in zip(("Paris", "Berlin"), result, strict=True):
        for sequence in sequences:
            assert list(sequence) == ["generated_text"] and sequence["generated_text"].startswith(prompt)
    [[short]] = transform(conn, GENERATE, {"max_tokens": 1}, ["Paris"])
    [[longer]] = transform(conn, GENERATE, {"max_tokens": 6}, ["Paris"])
    assert longer["generated_text"].startswith(short["generated_text"])  # greedy: one a prefix of the other
    assert len(longer["generated_text"]) > len(short["generated_text"])


def test_presence_penalty_is_ignored_with_a_warning_the_client_receives(
    conn: psycopg.Connection[Any],
) -> None:
    received: list[tuple[str | None, str | None, str]] = []

    def keep(diagnostic: psycopg.errors.Diagnostic) -> None:
        # read now: the diagnostic's fields are gone once the handler returns
        received.append((diagnostic.severity, diagnostic.sqlstate, diagnostic.message_primary or ""))

    conn.add_notice_handler(keep)
    try:
        [[sequence]] = transform(
            conn, GENERATE, {"max_tokens": 2, "presence_penalty": 0.5, "frequency_penalty": 0.1}, ["Paris"]
        )
    finally:
        conn.remove_notice_handler(keep)
    assert sequence["generated_text"].startswith("Paris")
    warnings = [(sqlstate, message) for severity, sqlstate, message in received if severity == "WARNING"]
    assert any("presence_penalty is ignored" in message for _, message in warnings), received
    assert any("frequency_penalty is ignored" in message for _, message in warnings), received
    assert {sqlstate for sqlstate, _ in warnings} == {"01000"}


def test_an_unknown_generation_argument_is_named_in_a_22023(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no_such_knob"):
        transform(conn, GENERATE, {"no_such_knob": 1, "top_p": 0.9}, ["Paris"])
    assert_usable(conn)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("text2text-generation", "generated_text"),
        ("summarization", "summary_text"),
        ("translation", "translation_text"),
        ("translation_en_to_fr", "translation_text"),
    ],
)
def test_seq2seq_tasks_give_one_object_per_input_under_their_key(
    conn: psycopg.Connection[Any], name: str, key: str
) -> None:
    result = transform(
        conn,
        task(name, "text2text-generation"),
        {"max_new_tokens": 4, "min_new_tokens": 2},
        ["the house is blue", "hello"],
    )
    assert [list(item) for item in result] == [[key], [key]]
    assert all(isinstance(item[key], str) and item[key] for item in result)


def test_conversational_messages_give_a_list_of_new_texts(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT pgml.transform(%s::jsonb, '{\"max_tokens\": 3}', ARRAY[%s, %s]::jsonb[])",
        (CHAT, json.dumps({"role": "system", "content": "You are helpful."}), MESSAGE),
    ).fetchall()
    [(result,)] = rows
    assert isinstance(result, list) and len(result) == 1 and isinstance(result[0], str) and result[0]
    assert not result[0].startswith("<|")  # new text only, not the rendered chat template


def test_conversational_messages_as_an_array_of_jsonb_literals(conn: psycopg.Connection[Any]) -> None:
    [(result,)] = conn.execute(
        f"SELECT pgml.transform('{CHAT}'::jsonb, '{{\"max_tokens\": 3}}', ARRAY['{MESSAGE}'::jsonb])"
    ).fetchall()
    assert isinstance(result, list) and isinstance(result[0], str)


def test_jsonb_inputs_with_another_task_are_refused_with_the_contracts_message(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        conn.execute("SELECT pgml.transform(%s::jsonb, '{}', ARRAY[%s]::jsonb[])", (CLASSIFY, MESSAGE))
    assert raised.value.diag.message_primary == JSONB_INPUTS_ERROR
    assert_usable(conn)


def test_jsonb_literal_elements_with_another_task_are_refused(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="conversational task"):
        conn.execute(f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '{{}}', ARRAY['{MESSAGE}'::jsonb])")


# --- overloads and argument forms (§2.3) -------------------------------------------------------------------------


def test_all_four_overloads_resolve(conn: psycopg.Connection[Any]) -> None:
    # task text: Hugging Face's default model for the task, which is not here (so the text overload ran)
    with pytest.raises(psycopg.errors.UndefinedObject, match="distilbert-base-uncased-finetuned-sst-2"):
        conn.execute("SELECT pgml.transform('text-classification'::text, '{}'::jsonb, ARRAY['a']::text[])")
    with pytest.raises(psycopg.errors.UndefinedObject, match="microsoft/DialoGPT-medium"):
        conn.execute(
            "SELECT pgml.transform('conversational'::text, '{}'::jsonb, ARRAY[%s]::jsonb[])", (MESSAGE,)
        )
    # task jsonb: the named models
    [(labels,)] = conn.execute(
        "SELECT pgml.transform(%s::jsonb, '{}'::jsonb, ARRAY['a']::text[])", (CLASSIFY,)
    ).fetchall()
    assert [item["label"] for item in labels] == [transform(conn, CLASSIFY, {}, ["a"])[0]["label"]]
    [(chat,)] = conn.execute(
        "SELECT pgml.transform(%s::jsonb, '{\"max_tokens\": 2}'::jsonb, ARRAY[%s]::jsonb[])", (CHAT, MESSAGE)
    ).fetchall()
    assert len(chat) == 1 and isinstance(chat[0], str)


def test_named_arguments_in_any_order_and_cache_is_accepted_and_ignored(
    conn: psycopg.Connection[Any],
) -> None:
    expected = transform(conn, CLASSIFY, {}, TEXTS)
    forms = [
        "SELECT pgml.transform(%s::jsonb, inputs => %s::text[])",
        "SELECT pgml.transform(task => %s::jsonb, args => '{}', inputs => %s::text[])",
        "SELECT pgml.transform(%s::jsonb, inputs => %s::text[], cache => true)",
        "SELECT pgml.transform(%s::jsonb, '{}', %s::text[], true)",
        "SELECT pgml.transform(%s::jsonb, '{}', %s::text[], false)",
    ]
    for sql in forms:
        assert conn.execute(sql, (CLASSIFY, TEXTS)).fetchall() == [(expected,)], sql
    reversed_order = conn.execute(
        "SELECT pgml.transform(inputs => %s::text[], cache => true, task => %s::jsonb)", (TEXTS, CLASSIFY)
    ).fetchall()
    assert reversed_order == [(expected,)]


def test_args_reach_the_pipeline(conn: psycopg.Connection[Any]) -> None:
    [every] = transform(conn, task("text-classification", "nli"), {"top_k": None}, ["a premise"])
    assert {item["label"] for item in every} == {"contradiction", "neutral", "entailment"}
    two = transform(conn, FILL, {"top_k": 2}, MASKED)
    assert [len(candidates) for candidates in two] == [2, 2]


# --- positions (§8) ----------------------------------------------------------------------------------------------


def test_a_constant_call_is_answered_by_the_proxy(nlp_proxy: ProxyProcess, upstream: Upstream) -> None:
    with psycopg.connect(nlp_proxy.url(), autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        [(result,)] = conn.execute(
            f"SELECT pgml.transform('{CLASSIFY}'::jsonb, inputs => ARRAY['good', 'bad'])"
        ).fetchall()
        assert len(result) == 2
        with psycopg.connect(upstream.url()) as direct:
            [(last,)] = direct.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall()
    assert "pgml.transform" not in last  # the statement itself never went upstream (a side query may have)


@pytest.fixture(scope="module")
def reviews(nlp_proxy: ProxyProcess) -> Iterator[str]:
    """Rows whose task varies, so a row-dependent call gives different labels per row."""
    nli = task("text-classification", "nli")
    rows = [
        (1, CLASSIFY, TEXTS[0], None),
        (2, nli, TEXTS[1], None),
        (3, CLASSIFY, "The weather today is good.", "kept"),
        (4, nli, "The train was late again.", None),
    ]
    with scratch_table(nlp_proxy.url(), "id int, task jsonb, body text, mood text", rows, "reviews") as name:
        yield name


def _labels(local: Callable[[str, str], Any], rows: list[tuple[int, str, str]]) -> dict[int, str]:
    return {
        row_id: local("text-classification", json.loads(spec)["model"])(body)[0]["label"]
        for row_id, spec, body in rows
    }


def test_over_table_rows_in_the_select_list(
    conn: psycopg.Connection[Any], reviews: str, local: Callable[[str, str], Any]
) -> None:
    rows = conn.execute(f"SELECT id, task::text, body FROM {reviews} ORDER BY id").fetchall()
    expected = _labels(local, rows)
    for binary in (False, True):
        cursor = conn.cursor(binary=binary)
        cursor.execute(f"SELECT id, pgml.transform(task, inputs => ARRAY[body]) FROM {reviews} ORDER BY id")
        assert cursor.description is not None
        assert [(c.name, c.type_code) for c in cursor.description] == [("id", 23), ("transform", JSONB_OID)]
        results = cursor.fetchall()
        assert {row_id: result[0]["label"] for row_id, result in results} == expected
    assert set(expected.values()) == {"NEGATIVE", "neutral"}


def test_in_where_with_json_operators(
    conn: psycopg.Connection[Any], reviews: str, local: Callable[[str, str], Any]
) -> None:
    rows = conn.execute(f"SELECT id, task::text, body FROM {reviews} ORDER BY id").fetchall()
    expected = _labels(local, rows)
    found = conn.execute(
        f"SELECT id FROM {reviews} WHERE pgml.transform(task, inputs => ARRAY[body]) -> 0 ->> 'label' = 'neutral' "
        "ORDER BY id"
    ).fetchall()
    assert [row_id for (row_id,) in found] == sorted(i for i, label in expected.items() if label == "neutral")


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_over_table_rows_with_psycopg_parameters(
    conn: psycopg.Connection[Any], reviews: str, local: Callable[[str, str], Any], binary: bool
) -> None:
    rows = conn.execute(
        f"SELECT id, task::text, body || '!' FROM {reviews} WHERE id > 1 ORDER BY id"
    ).fetchall()
    classify = local("text-classification", "text-classification")
    cursor = conn.cursor(binary=binary)
    cursor.execute(
        f"SELECT id, pgml.transform(%s::jsonb, inputs => ARRAY[body || %s]) FROM {reviews} WHERE id > %s ORDER BY id",
        (CLASSIFY, "!", 1),
    )
    results = cursor.fetchall()
    assert [row_id for row_id, _ in results] == [row_id for row_id, _, _ in rows]
    for (_, result), (_, _, body) in zip(results, rows, strict=True):
        [reference] = classify([body])
        assert result[0]["label"] == reference["label"]
        assert result[0]["score"] == pytest.approx(reference["score"], abs=1e-5)


async def test_over_table_rows_with_asyncpg_parameters(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any], reviews: str, local: Callable[[str, str], Any]
) -> None:
    rows = conn.execute(f"SELECT id, task::text, body FROM {reviews} ORDER BY id").fetchall()
    expected = _labels(local, rows)
    client = await asyncpg.connect(nlp_proxy.url())
    try:
        statement = await client.prepare(
            f"SELECT id, pgml.transform(task, $1::jsonb, ARRAY[body]) -> 0 ->> 'label' AS label FROM {reviews} "
            "WHERE id = ANY($2::int[]) ORDER BY id"
        )
        assert [(a.name, a.type.name) for a in statement.get_attributes()] == [
            ("id", "int4"),
            ("label", "text"),
        ]
        assert [p.name for p in statement.get_parameters()] == ["jsonb", "int4[]"]
        for wanted in ([1, 2], [2, 3, 4]):
            found = await statement.fetch("{}", wanted)
            assert [(row["id"], row["label"]) for row in found] == [(i, expected[i]) for i in wanted]
    finally:
        await client.close()


def test_update_set_from_the_contract(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any], local: Callable[[str, str], Any]
) -> None:
    """§8: ``UPDATE reviews SET mood = pgml.transform(…, inputs => ARRAY[body]) -> 0 ->> 'label' WHERE mood IS NULL``."""
    rows = [(1, TEXTS[0], None), (2, TEXTS[1], None), (3, "Paris", "kept")]
    with scratch_table(nlp_proxy.url(), "id int, body text, mood text", rows, "moods") as name:
        cursor = conn.execute(
            f"UPDATE {name} SET mood = pgml.transform('{CLASSIFY}'::jsonb, inputs => ARRAY[body]) -> 0 ->> 'label' "
            "WHERE mood IS NULL"
        )
        assert cursor.rowcount == 2
        moods = conn.execute(f"SELECT id, mood FROM {name} ORDER BY id").fetchall()
    classify = local("text-classification", "text-classification")
    assert moods == [(1, classify(TEXTS[0])[0]["label"]), (2, classify(TEXTS[1])[0]["label"]), (3, "kept")]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_parameters(conn: psycopg.Connection[Any], binary: bool) -> None:
    expected = transform(conn, CLASSIFY, {}, TEXTS)
    cursor = conn.cursor(binary=binary)
    cursor.execute(
        "SELECT pgml.transform(%s, %s, %s::text[])", (Jsonb(json.loads(CLASSIFY)), Jsonb({}), TEXTS)
    )
    assert cursor.fetchall() == [(expected,)]
    cursor.execute(
        "SELECT pgml.transform(%s::jsonb, %s::jsonb, %s::jsonb[])", (CHAT, '{"max_tokens": 2}', [MESSAGE])
    )
    [(chat,)] = cursor.fetchall()
    assert len(chat) == 1 and isinstance(chat[0], str)


def test_psycopg_list_of_jsonb_parameter(conn: psycopg.Connection[Any]) -> None:
    cursor = conn.cursor()
    cursor.execute(
        "SELECT pgml.transform(%s, %s, %s)",
        (Jsonb(json.loads(CHAT)), Jsonb({"max_tokens": 2}), [Jsonb({"role": "user", "content": "hi"})]),
    )
    [(chat,)] = cursor.fetchall()
    assert len(chat) == 1


async def test_asyncpg_parameters_and_prepared_statements(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any]
) -> None:
    expected = transform(conn, CLASSIFY, {}, TEXTS)
    client = await asyncpg.connect(nlp_proxy.url())
    try:
        statement = await client.prepare("SELECT pgml.transform($1::jsonb, $2::jsonb, $3::text[])")
        assert [(a.name, a.type.name) for a in statement.get_attributes()] == [("transform", "jsonb")]
        assert [p.name for p in statement.get_parameters()] == ["jsonb", "jsonb", "text[]"]
        assert json.loads(await statement.fetchval(CLASSIFY, "{}", TEXTS)) == expected
        named = await client.fetchval(
            "SELECT pgml.transform(task => $1::jsonb, inputs => $2::text[], cache => $3)",
            CLASSIFY,
            TEXTS,
            True,
        )
        assert json.loads(named) == expected
        answer = await client.fetchval(
            "SELECT pgml.transform($1::jsonb, inputs => ARRAY[$2]) ->> 'answer'", QA, json.dumps(QUESTION)
        )
        assert answer == transform(conn, QA, {}, [json.dumps(QUESTION)])["answer"]
        with pytest.raises(asyncpg.exceptions.UndefinedObjectError, match="no-such-model"):
            await client.fetchval(
                "SELECT pgml.transform($1::jsonb, inputs => $2::text[])",
                task("fill-mask", "no-such-model"),
                ["x"],
            )
        assert await client.fetchval("SELECT 1") == 1
    finally:
        await client.close()


async def test_asyncpg_jsonb_array_parameter(nlp_proxy: ProxyProcess) -> None:
    client = await asyncpg.connect(nlp_proxy.url())
    try:
        statement = await client.prepare("SELECT pgml.transform($1::jsonb, $2::jsonb, $3::jsonb[])")
        assert [p.name for p in statement.get_parameters()] == ["jsonb", "jsonb", "jsonb[]"]
        chat = json.loads(await statement.fetchval(CHAT, '{"max_tokens": 2}', [MESSAGE]))
        assert len(chat) == 1
    finally:
        await client.close()


def test_sql_prepare_and_execute(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"PREPARE classify_one(text) AS SELECT pgml.transform('{CLASSIFY}'::jsonb, inputs => ARRAY[$1])"
    )
    try:
        for text in TEXTS:
            [(result,)] = conn.execute(f"EXECUTE classify_one('{text}')").fetchall()
            assert result == transform(conn, CLASSIFY, {}, [text])
    finally:
        conn.execute("DEALLOCATE classify_one")


def test_psql_json_operator_and_warning(nlp_proxy: ProxyProcess) -> None:
    script = (
        "\\pset tuples_only on\n\\pset format unaligned\n"
        f'SELECT pgml.transform(\'{QA}\'::jsonb, inputs => ARRAY[\'{{"question": "Who?", "context": "Ann wrote it."}}\']) ->> \'answer\';\n'
        f"SELECT pgml.transform('{GENERATE}'::jsonb, '{{\"max_tokens\": 2, \"presence_penalty\": 0.1}}', ARRAY['Paris']);\n"
    )
    done = run_psql(nlp_proxy.url(), input=script)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith(("Tuples", "Output"))]
    answer, generated = lines
    assert answer and answer in "Ann wrote it."
    [[sequence]] = json.loads(generated)
    assert list(sequence) == ["generated_text"] and sequence["generated_text"].startswith("Paris")
    assert "WARNING:  presence_penalty is ignored" in done.stderr


# --- bad input, and the session after an error ----------------------------------------------------------------------


def test_null_arguments_give_null(conn: psycopg.Connection[Any]) -> None:
    for sql in (
        "SELECT pgml.transform(NULL::jsonb, '{}', ARRAY['a'])",
        "SELECT pgml.transform(NULL::text, '{}', ARRAY['a'])",
        f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '{{}}', NULL::text[])",
        f"SELECT pgml.transform('{CLASSIFY}'::jsonb, NULL, ARRAY['a'])",
        f"SELECT pgml.transform('{CLASSIFY}'::jsonb, inputs => NULL::text[])",
        f"SELECT pgml.transform('{CHAT}'::jsonb, '{{}}', NULL::jsonb[])",
    ):
        assert conn.execute(sql).fetchall() == [(None,)], sql


def test_a_null_input_element_is_a_clear_error(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="NULL"):
        conn.execute(f"SELECT pgml.transform('{CLASSIFY}'::jsonb, inputs => ARRAY['a', NULL])")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="NULL"):
        conn.execute(f"SELECT pgml.transform('{CHAT}'::jsonb, inputs => ARRAY[NULL]::jsonb[])")
    assert_usable(conn)


def test_empty_inputs_give_an_empty_list(conn: psycopg.Connection[Any]) -> None:
    assert transform(conn, CLASSIFY, {}, []) == []
    assert conn.execute(
        f"SELECT pgml.transform('{CLASSIFY}'::jsonb, inputs => ARRAY[]::text[])"
    ).fetchall() == [([],)]


HUGE = " ".join(["good"] * 20_000)


@pytest.mark.parametrize(
    ("spec", "args", "text"),
    [
        pytest.param(
            CLASSIFY,
            {},
            HUGE,
            id="text-classification",
        ),
        pytest.param(
            FILL,
            {},
            "[MASK] " + HUGE,
            id="fill-mask",
        ),
        pytest.param(
            FEATURES,
            {},
            HUGE,
            id="feature-extraction",
        ),
        pytest.param(
            task("summarization", "text2text-generation"),
            {"max_new_tokens": 2},
            HUGE,
            id="summarization",
        ),
        pytest.param(TOKENS, {}, HUGE, id="token-classification"),
        pytest.param(NLI, {"candidate_labels": ["a", "b"]}, HUGE, id="zero-shot-classification"),
        pytest.param(QA, {}, json.dumps({"question": "good?", "context": HUGE}), id="question-answering"),
    ],
)
def test_a_huge_input_is_cut_to_the_models_length(
    conn: psycopg.Connection[Any], spec: str, args: dict[str, Any], text: str
) -> None:
    try:
        result = transform(conn, spec, args, [text])
    finally:
        assert_usable(conn)
    if spec == FILL:
        assert len(result) == 5 and all("token_str" in guess for guess in result)  # one input: a flat top 5
    else:
        assert isinstance(result, dict) or len(result) == 1  # a bare answer object, or one result per input


def test_a_huge_input_is_cut_when_truncation_is_asked_for(conn: psycopg.Connection[Any]) -> None:
    [label] = transform(conn, CLASSIFY, {"truncation": True}, [HUGE])
    assert list(label) == ["label", "score"]
    assert len(transform(conn, FEATURES, {"truncation": True}, [HUGE])[0][0]) == 512


def test_a_prompt_longer_than_the_context_is_a_clear_error(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="context of 512 tokens"):
        transform(conn, GENERATE, {"max_new_tokens": 2}, [HUGE])
    assert_usable(conn)


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            'SELECT pgml.transform(\'{"task": "fill-mask", "model": "nobody/no-such-model"}\'::jsonb, inputs => ARRAY[\'a [MASK]\'])',
            psycopg.errors.UndefinedObject,
            "nobody/no-such-model",
        ),
        (
            'SELECT pgml.transform(\'{"task": "text-classification", "model": "text-classification", '
            "\"trust_remote_code\": true}'::jsonb, inputs => ARRAY['a'])",
            psycopg.errors.InsufficientPrivilege,
            "not trusted to run remote code",
        ),
        (
            "SELECT pgml.transform('{\"task\": text-classification}'::jsonb, inputs => ARRAY['a'])",
            psycopg.errors.InvalidTextRepresentation,
            "invalid input syntax for type json",
        ),
        (
            "SELECT pgml.transform('[\"text-classification\"]'::jsonb, inputs => ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "task must be a JSON object",
        ),
        (
            "SELECT pgml.transform('no-such-task', inputs => ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "unsupported transform task 'no-such-task'",
        ),
        (
            f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '[1, 2]', ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "args must be a JSON object",
        ),
        (
            f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '{{\"top_k\": \"many\"}}', ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "top_k",
        ),
        (
            f"SELECT pgml.transform('{NLI}'::jsonb, '{{}}', ARRAY['a'])",
            psycopg.errors.InvalidParameterValue,
            "candidate_labels",
        ),
        (
            f"SELECT pgml.transform('{QA}'::jsonb, '{{}}', ARRAY['not json'])",
            psycopg.errors.InvalidParameterValue,
            "JSON",
        ),
        (
            f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '{{}}', ARRAY[1, 2])",
            psycopg.errors.UndefinedFunction,
            "pgml.transform",
        ),
    ],
    ids=[
        "unknown-model",
        "trust-remote-code",
        "malformed-task-json",
        "task-not-an-object",
        "unknown-text-task",
        "args-not-an-object",
        "bad-arg-value",
        "missing-candidate-labels",
        "question-not-json",
        "integer-inputs",
    ],
)
def test_bad_calls_are_clear_errors_and_the_session_goes_on(
    nlp_proxy: ProxyProcess, conn: psycopg.Connection[Any], sql: str, error: type[Exception], message: str
) -> None:
    with assert_fails_cleanly(nlp_proxy.url(), conn, sql, error, message) as block:
        assert transform(block, CLASSIFY, {}, ["after"])[0]["label"] in ("NEGATIVE", "POSITIVE")


JSON_STRING = json.dumps(json.dumps({"top_k": 2}))  # a JSON string whose text spells an object


def test_args_that_are_a_json_string_are_not_an_object(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="args must be a JSON object"):
        conn.execute(f"SELECT pgml.transform('{CLASSIFY}'::jsonb, '{JSON_STRING}'::jsonb, ARRAY['a'])")
