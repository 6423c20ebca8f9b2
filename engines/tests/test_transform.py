"""pgml.transform on tiny random models (pgml_engines.testing), loaded by name through the normal resolution path.

The models are random, so the tests compare shapes, types, labels and the relations the contract promises
(§5.2), not scores or generated words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pgml_engines import Engine, EngineConfig, InvalidArgument, ModelNotFound, NotAllowed, testing
from pgml_engines.resolve import ModelResolver
from pgml_engines.tasks import CallArgs, load_options, prepare_args
from pgml_engines.transform import load_model, plan_generation, to_json

QA = json.dumps(
    {"question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris, in France."}
)
GREEDY = {"do_sample": False}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    testing.build_all(folder)
    testing.build_causal_lm(folder / "no-template", chat_template=False)
    return folder


def task(name: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"task": name, "model": model, **extra}


def assert_plain_json(value: Any) -> None:
    """Only the JSON types the contract allows: no numpy scalars, tuples or NaN."""
    if isinstance(value, dict):
        assert all(isinstance(key, str) for key in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)
        if type(value) is float:
            assert math.isfinite(value)


# --- output shapes per task (§5.2) -----------------------------------------------------------------------------


async def test_text_classification_gives_one_label_object_per_input(engine: Engine) -> None:
    result = await engine.transform(
        task("text-classification", "text-classification"), {}, ["good", "bad", "ok"]
    )
    assert len(result) == 3
    for item in result:
        assert list(item) == ["label", "score"]
        assert item["label"] in ("NEGATIVE", "POSITIVE")  # the model's own id2label
        assert 0.0 <= item["score"] <= 1.0
    assert_plain_json(result)


async def test_sentiment_analysis_is_text_classification(engine: Engine) -> None:
    result = await engine.transform(task("sentiment-analysis", "text-classification"), None, ["good"])
    assert result[0]["label"] in ("NEGATIVE", "POSITIVE")


async def test_text_classification_top_k_null_gives_every_label_sorted(engine: Engine) -> None:
    [labels] = await engine.transform(task("text-classification", "nli"), {"top_k": None}, ["a premise"])
    assert {item["label"] for item in labels} == {"contradiction", "neutral", "entailment"}
    scores = [item["score"] for item in labels]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, rel_tol=1e-5)


async def test_zero_shot_classification_sorts_the_candidate_labels_by_score(engine: Engine) -> None:
    labels = ["city", "food", "sport"]
    result = await engine.transform(
        task("zero-shot-classification", "nli"), {"candidate_labels": labels}, ["Paris is a city", "bread"]
    )
    assert [item["sequence"] for item in result] == ["Paris is a city", "bread"]
    for item in result:
        assert set(item) == {"sequence", "labels", "scores"}
        assert sorted(item["labels"]) == labels
        assert item["scores"] == sorted(item["scores"], reverse=True)
    assert_plain_json(result)


async def test_zero_shot_classification_needs_candidate_labels(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="candidate_labels"):
        await engine.transform(task("zero-shot-classification", "nli"), {}, ["x"])


async def test_token_classification_gives_a_list_of_entities_per_input(engine: Engine) -> None:
    texts = ["Marie Curie lived in Paris", "Ada Lovelace"]
    result = await engine.transform(task("ner", "token-classification"), {}, texts)
    assert len(result) == 2
    for text, entities in zip(texts, result, strict=True):
        assert isinstance(entities, list)
        for entity in entities:
            assert set(entity) == {"entity", "score", "index", "word", "start", "end"}
            assert type(entity["index"]) is int and type(entity["score"]) is float
            assert entity["entity"] in ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
            assert text[entity["start"] : entity["end"]].lower() == entity["word"]
    assert_plain_json(result)


async def test_single_question_answering_input_gives_a_bare_object(engine: Engine) -> None:
    answer = await engine.transform(task("question-answering", "question-answering"), {}, [QA])
    assert isinstance(answer, dict)  # the quirk kept from Hugging Face (§7.3)
    assert list(answer) == ["score", "start", "end", "answer"]
    context = json.loads(QA)["context"]
    assert answer["answer"] == context[answer["start"] : answer["end"]]
    assert 0.0 < answer["score"] <= 1.0
    assert_plain_json(answer)


async def test_several_question_answering_inputs_give_a_list_and_dicts_are_accepted(engine: Engine) -> None:
    other = {"question": "Who wrote a program?", "context": "Ada Lovelace wrote the first program."}
    answers = await engine.transform(
        task("question-answering", "question-answering"), {}, [QA, json.dumps(other)]
    )
    assert isinstance(answers, list) and len(answers) == 2
    assert answers[1]["answer"] == other["context"][answers[1]["start"] : answers[1]["end"]]
    as_dicts = await engine.transform(
        task("question-answering", "question-answering"), {}, [json.loads(QA), other]
    )
    assert as_dicts == answers
    top = await engine.transform(task("question-answering", "question-answering"), {"top_k": 3}, [QA])
    assert isinstance(top, list) and 1 < len(top) <= 3
    assert [a["score"] for a in top] == sorted((a["score"] for a in top), reverse=True)


async def test_question_answering_inputs_must_be_question_and_context(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="context"):
        await engine.transform(task("question-answering", "question-answering"), {}, ['{"question": "q"}'])
    with pytest.raises(InvalidArgument, match="JSON"):
        await engine.transform(task("question-answering", "question-answering"), {}, ["not json"])


async def test_single_fill_mask_input_gives_a_flat_list_of_the_top_5(engine: Engine) -> None:
    result = await engine.transform(task("fill-mask", "fill-mask"), {}, ["Paris is the [MASK] of France."])
    assert isinstance(result, list) and len(result) == 5
    for candidate in result:
        assert set(candidate) == {"score", "token", "token_str", "sequence"}
        assert type(candidate["token"]) is int
        assert candidate["token_str"] in candidate["sequence"]
    several = await engine.transform(task("fill-mask", "fill-mask"), {"top_k": 2}, ["a [MASK].", "[MASK] b."])
    assert [len(candidates) for candidates in several] == [2, 2]
    assert_plain_json(several)


async def test_fill_mask_input_without_the_mask_token_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match=r"\[MASK\]"):
        await engine.transform(task("fill-mask", "fill-mask"), {}, ["no mask here"])


async def test_feature_extraction_nests_input_batch_token_hidden(engine: Engine) -> None:
    texts = ["hello world", "a"]
    result = await engine.transform(task("feature-extraction", "fill-mask"), {}, texts)
    assert len(result) == 2
    assert [len(item) for item in result] == [1, 1]
    assert len(result[0][0]) > len(result[1][0])  # each input keeps its own tokens, no padding
    assert {len(token) for item in result for token in item[0]} == {32}
    alone = await engine.transform(task("feature-extraction", "fill-mask"), {}, ["a"])
    assert np.allclose(np.array(alone[0]), np.array(result[1]), atol=1e-5)
    assert_plain_json(result)


async def test_text_generation_nests_a_list_of_sequences_per_input(engine: Engine) -> None:
    prompts = ["The capital of France", "Paris is"]
    result = await engine.transform(
        task("text-generation", "text-generation"), {"max_new_tokens": 5}, prompts
    )
    assert len(result) == 2
    for prompt, sequences in zip(prompts, result, strict=True):
        assert len(sequences) == 1 and list(sequences[0]) == ["generated_text"]
        assert sequences[0]["generated_text"].startswith(prompt)  # return_full_text defaults to true
    new = await engine.transform(
        task("text-generation", "text-generation"),
        {"max_new_tokens": 5, "return_full_text": False, **GREEDY},
        prompts,
    )
    full = await engine.transform(
        task("text-generation", "text-generation"), {"max_new_tokens": 5, **GREEDY}, prompts
    )
    assert [p + n[0]["generated_text"] for p, n in zip(prompts, new, strict=True)] == [
        f[0]["generated_text"] for f in full
    ]


async def test_n_returns_several_sequences_per_input(engine: Engine) -> None:
    result = await engine.transform(
        task("text-generation", "text-generation"),
        {"max_tokens": 4, "n": 3, "temperature": 1.0},
        ["Paris", "Rome"],
    )
    assert [len(sequences) for sequences in result] == [3, 3]
    # The tiny model's generation config says do_sample false, which wins over the pipeline's sampling default
    # (as in Hugging Face's pipeline): several greedy sequences are refused, by generate() itself.
    with pytest.raises(InvalidArgument, match="num_return_sequences"):
        await engine.transform(
            task("text-generation", "text-generation"), {"max_tokens": 2, "n": 2}, ["Paris"]
        )


async def test_chat_inputs_are_rendered_with_the_chat_template(engine: Engine) -> None:
    messages = [{"role": "user", "content": "Where is Paris?"}]
    [answer] = await engine.transform(
        task("text-generation", "text-generation"), {"max_new_tokens": 6, **GREEDY}, messages
    )
    assert answer["generated_text"][:-1] == messages
    reply = answer["generated_text"][-1]
    assert reply["role"] == "assistant"
    rendered = "<|user|>\nWhere is Paris?<|eos|>\n<|assistant|>\n"  # testing.CHAT_TEMPLATE
    [[as_text]] = await engine.transform(
        task("text-generation", "text-generation"),
        {"max_new_tokens": 6, "return_full_text": False, "add_special_tokens": False, **GREEDY},
        [rendered],
    )
    assert reply["content"] == as_text["generated_text"]


async def test_a_chat_template_in_args_replaces_the_models(engine: Engine) -> None:
    messages = [{"role": "user", "content": "The capital of France"}]
    args = {"max_new_tokens": 6, "return_full_text": False, **GREEDY}
    [chat] = await engine.transform(
        task("text-generation", "text-generation"),
        {**args, "chat_template": "{{ messages[0]['content'] }}"},
        messages,
    )
    [[plain]] = await engine.transform(
        task("text-generation", "text-generation"),
        {**args, "add_special_tokens": False},
        ["The capital of France"],
    )
    assert chat == plain


async def test_conversational_returns_the_new_text_of_each_sequence(engine: Engine) -> None:
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello!"}]
    result = await engine.transform(
        task("conversational", "text-generation"), {"max_tokens": 5, **GREEDY}, messages
    )
    assert isinstance(result, list) and len(result) == 1 and isinstance(result[0], str)
    several = await engine.transform(
        task("conversational", "text-generation"), {"max_tokens": 5, "n": 2, "temperature": 0.8}, messages
    )
    assert len(several) == 2 and all(isinstance(text, str) for text in several)


async def test_a_model_without_chat_template_needs_one_in_args(engine: Engine) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidArgument, match="chat_template"):
        await engine.transform(task("conversational", "no-template"), {"max_tokens": 2}, messages)
    result = await engine.transform(
        task("conversational", "no-template"),
        {"max_tokens": 2, "chat_template": "{{ messages[-1]['content'] }}"},
        messages,
    )
    assert len(result) == 1


async def test_seq2seq_tasks_flatten_one_sequence_per_input_under_their_key(engine: Engine) -> None:
    args = {"max_new_tokens": 4, "min_new_tokens": 2}
    for name, key in (
        ("text2text-generation", "generated_text"),
        ("summarization", "summary_text"),
        ("translation_en_to_fr", "translation_text"),
        ("translation", "translation_text"),
    ):
        result = await engine.transform(
            task(name, "text2text-generation"), args, ["the house is blue", "hello"]
        )
        assert [list(item) for item in result] == [[key], [key]], name
        assert all(isinstance(item[key], str) and item[key] for item in result), name
    beams = await engine.transform(
        task("summarization", "text2text-generation"),
        {**args, "num_beams": 2, "num_return_sequences": 2},
        ["x"],
    )
    assert [[list(item) for item in sequences] for sequences in beams] == [
        [["summary_text"], ["summary_text"]]
    ]


async def test_a_model_alone_runs_the_task_its_architecture_names(engine: Engine) -> None:
    generated = await engine.transform({"model": "text-generation"}, {"max_new_tokens": 3}, ["Paris"])
    assert generated[0][0]["generated_text"].startswith("Paris")
    classified = await engine.transform({"model": "text-classification"}, {}, ["good"])
    assert classified[0]["label"] in ("NEGATIVE", "POSITIVE")
    seq2seq = await engine.transform({"model": "text2text-generation"}, {"max_new_tokens": 2}, ["x"])
    assert list(seq2seq[0]) == ["generated_text"]
    answer = await engine.transform({"model": "question-answering"}, {}, [QA])
    assert isinstance(answer, dict)
    assert await engine.transform({"model": "question-answering"}, {}, [json.loads(QA)]) == answer
    with pytest.raises(InvalidArgument, match=r"unknown argument\(s\) candidate_labels"):
        await engine.transform({"model": "text-classification"}, {"candidate_labels": ["a"]}, ["x"])


async def test_empty_inputs_give_an_empty_list(engine: Engine) -> None:
    assert await engine.transform(task("text-classification", "text-classification"), {}, []) == []


# --- arguments (§2.3) ------------------------------------------------------------------------------------------


async def test_jsonb_inputs_need_a_conversational_task(engine: Engine) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await engine.transform(
            task("text-classification", "text-classification"), {}, [{"role": "user", "content": "x"}]
        )
    assert (
        str(raised.value)
        == "ARRAY[]::JSONB inputs for transform should only be used with a conversational task"
    )


async def test_inputs_must_be_text(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="input 2"):
        await engine.transform(task("text-classification", "text-classification"), {}, ["ok", 3])
    with pytest.raises(InvalidArgument, match="array"):
        await engine.transform(task("text-classification", "text-classification"), {}, "not an array")


async def test_unknown_generation_arguments_are_named(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="no_such_knob") as raised:
        await engine.transform(
            task("text-generation", "text-generation"), {"no_such_knob": 1, "top_p": 0.9}, ["x"]
        )
    assert "top_p" not in str(raised.value).split(";")[0]
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        await engine.transform(task("text-generation", "text-generation"), {"max_new_tokens": 0}, ["x"])
    with pytest.raises(InvalidArgument, match="output_scores"):
        await engine.transform(task("text-generation", "text-generation"), {"output_scores": True}, ["x"])
    with pytest.raises(InvalidArgument, match="unknown argument"):
        await engine.transform(
            task("text-classification", "text-classification"), {"max_new_tokens": 3}, ["x"]
        )


async def test_penalties_are_ignored_with_a_warning(
    engine: Engine, client_notices: list[tuple[str, str]]
) -> None:
    result = await engine.transform(
        task("text-generation", "text-generation"),
        {"max_tokens": 2, "presence_penalty": 0.5, "frequency_penalty": 0.1},
        ["Paris"],
    )
    assert len(result[0]) == 1
    warnings = [message for severity, message in client_notices if severity == "WARNING"]
    assert any("presence_penalty" in m for m in warnings) and any("frequency_penalty" in m for m in warnings)


async def test_stop_strings_end_generation_where_they_appear(engine: Engine) -> None:
    args = {"max_new_tokens": 12, "return_full_text": False, **GREEDY}
    [[free]] = await engine.transform(
        task("text-generation", "text-generation"), args, ["The capital of France"]
    )
    words = free["generated_text"].split()
    assert len(words) >= 3  # the tiny model repeats words, which gives the stop string somewhere to match
    stop = words[1]
    [[stopped]] = await engine.transform(
        task("text-generation", "text-generation"), {**args, "stop": [stop]}, ["The capital of France"]
    )
    text = stopped["generated_text"]
    assert text.endswith(stop) and len(text) < len(free["generated_text"])


async def test_temperature_zero_is_greedy_and_eos_token_is_a_token_id(engine: Engine) -> None:
    prompt = ["The capital of France"]
    greedy = await engine.transform(
        task("text-generation", "text-generation"), {"max_tokens": 6, **GREEDY}, prompt
    )
    zero = await engine.transform(
        task("text-generation", "text-generation"), {"max_tokens": 6, "temperature": 0}, prompt
    )
    assert zero == greedy
    with_eos = await engine.transform(
        task("text-generation", "text-generation"),
        {"max_tokens": 6, "temperature": 0, "eos_token": "<|eos|>"},
        prompt,
    )
    assert with_eos == greedy
    with pytest.raises(InvalidArgument, match="single token"):
        await engine.transform(
            task("text-generation", "text-generation"),
            {"max_tokens": 2, "eos_token": "not one token at all"},
            prompt,
        )


def test_openai_arguments_map_onto_generate(zoo: Path) -> None:
    config = EngineConfig(search_dirs=(zoo,))
    resolved = ModelResolver(config).resolve("text-generation")
    model = load_model(resolved, "causal-lm", load_options({}), config)
    call, warnings = prepare_args(
        "text-generation", {"max_tokens": 100_000, "n": 2, "stop": "France", "temperature": 0.5, "top_p": 0.9}
    )
    assert warnings == []
    plan = plan_generation(model, "text-generation", "text-generation", call, ["The capital of France"])
    kwargs = plan.generate_kwargs
    assert kwargs["max_new_tokens"] == testing.MAX_LENGTH - plan.prompt_length  # capped to the context left
    assert kwargs["num_return_sequences"] == 2 and plan.sequences == 2
    assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.5 and kwargs["top_p"] == 0.9
    assert type(kwargs["stopping_criteria"][0]).__name__ == "StopStringCriteria"
    explicit, _ = prepare_args("text-generation", {"max_new_tokens": 7})
    assert (
        plan_generation(model, "text-generation", "text-generation", explicit, ["x"]).generate_kwargs[
            "max_new_tokens"
        ]
        == 7
    )
    defaults = plan_generation(
        model,
        "text-generation",
        "text-generation",
        CallArgs("text-generation", json.dumps({"generate": {}, "options": {}})),
        ["x"],
    )
    assert defaults.generate_kwargs["max_new_tokens"] == 256  # the text-generation pipeline's default
    with pytest.raises(InvalidArgument, match="max_tokens or max_new_tokens"):
        prepare_args("text-generation", {"max_tokens": 1, "max_new_tokens": 1})


# --- models: resolution, policy, cache, batching ---------------------------------------------------------------


async def test_unknown_model_is_model_not_found_listing_where_it_looked(engine: Engine) -> None:
    with pytest.raises(ModelNotFound, match="nobody/no-such-model") as raised:
        await engine.transform(task("text-classification", "nobody/no-such-model"), {}, ["x"])
    assert any("directory" in place for place in raised.value.searched)


async def test_a_task_without_model_uses_hugging_faces_default(engine: Engine) -> None:
    with pytest.raises(ModelNotFound, match="distilbert/distilbert-base-uncased-finetuned-sst-2-english"):
        await engine.transform("text-classification", {}, ["x"])
    with pytest.raises(ModelNotFound, match="google-t5/t5-base"):
        await engine.transform("translation_en_to_fr", {}, ["x"])
    with pytest.raises(InvalidArgument, match="unsupported transform task"):
        await engine.transform("no-such-task", {}, ["x"])


async def test_gguf_models_are_pointed_to_the_import_command(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="pgml-proxy models import"):
        await engine.transform(task("text-generation", "TheBloke/Llama-2-7B-Chat-GGUF"), {}, ["x"])


async def test_remote_code_is_not_allowed_unless_the_configuration_trusts_the_model(
    zoo: Path, engine: Engine
) -> None:
    with pytest.raises(NotAllowed, match="not trusted to run remote code") as raised:
        await engine.transform(
            task("text-classification", "text-classification", trust_remote_code=True), {}, ["x"]
        )
    assert raised.value.sqlstate == "42501"
    trusting = Engine(
        EngineConfig(search_dirs=(zoo,), trust_remote_code_models=frozenset({"text-classification"}))
    )
    try:
        result = await trusting.transform(
            task("text-classification", "text-classification", trust_remote_code=True), {}, ["x"]
        )
        assert len(result) == 1
    finally:
        trusting.close()


async def test_models_outside_the_allowed_list_are_not_allowed(zoo: Path) -> None:
    limited = Engine(EngineConfig(search_dirs=(zoo,), allowed_models=frozenset({"text-classification"})))
    try:
        assert (
            len(await limited.transform(task("text-classification", "text-classification"), {}, ["x"])) == 1
        )
        with pytest.raises(NotAllowed, match="model fill-mask is not whitelisted"):
            await limited.transform(task("fill-mask", "fill-mask"), {}, ["a [MASK]"])
        with pytest.raises(NotAllowed, match="not whitelisted"):
            await limited.transform("text-classification", {}, ["x"])  # the default model is checked too
        with pytest.raises(NotAllowed, match="not whitelisted"):
            await limited.rank("cross-encoder", "q", ["d"], {})
    finally:
        limited.close()


async def test_each_set_of_load_options_gets_its_own_copy(engine: Engine) -> None:
    await engine.transform(task("text-classification", "text-classification"), {}, ["x"])
    await engine.transform(task("text-classification", "text-classification", dtype="float64"), {}, ["x"])
    await engine.transform(
        task("zero-shot-classification", "text-classification"), {"candidate_labels": ["a"]}, ["x"]
    )
    keys = [key for key in engine.loaded_models() if key.name == "text-classification"]
    assert {key.options.dtype for key in keys} == {None, "float64"}
    assert {key.kind for key in keys} == {"transform:sequence-classification"}  # one copy serves both tasks
    assert len(keys) == 2
    await engine.transform(task("feature-extraction", "text-classification"), {}, ["x"])
    kinds = {key.kind for key in engine.loaded_models() if key.name == "text-classification"}
    assert kinds == {"transform:sequence-classification", "transform:base"}


async def test_concurrent_transform_calls_share_model_calls(engine: Engine) -> None:
    spec = task("text-classification", "text-classification")
    await engine.transform(spec, {}, ["warm up"])
    before = engine.stats()
    results = await asyncio.gather(*(engine.transform(spec, {}, [f"text {i}"]) for i in range(12)))
    after = engine.stats()
    assert all(len(result) == 1 for result in results)
    assert after.requests - before.requests == 12
    assert after.batches - before.batches < 12


async def test_concurrent_generations_with_equal_arguments_share_one_generate(engine: Engine) -> None:
    spec = task("text-generation", "text-generation")
    args = {"max_new_tokens": 4, **GREEDY}
    await engine.transform(spec, args, ["warm up"])
    prompts = ["The capital of France", "Paris", "Berlin is the capital", "Rome"]
    before = engine.stats()
    results = await asyncio.gather(*(engine.transform(spec, args, [prompt]) for prompt in prompts))
    after = engine.stats()
    assert after.generations - before.generations < len(prompts)
    for prompt, [[sequence]] in zip(prompts, results, strict=True):
        assert sequence["generated_text"].startswith(prompt)


async def test_a_slow_load_tells_the_client(
    slow_loading_engine: Engine, client_notices: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pgml_engines"):
        await slow_loading_engine.transform(task("text-classification", "text-classification"), {}, ["x"])
        await slow_loading_engine.transform(task("text-classification", "text-classification"), {}, ["again"])
    assert client_notices[0] == ("NOTICE", "loading model text-classification …")
    assert client_notices[1][0] == "NOTICE"
    assert re.fullmatch(r"model text-classification loaded in \d+\.\d s", client_notices[1][1])
    assert len(client_notices) == 2  # the second call found the model loaded
    logged = [r.getMessage() for r in caplog.records if r.name == "pgml_engines.engine"]
    assert "loading model text-classification …" in logged
    assert any(re.fullmatch(r"model text-classification loaded in \d+\.\d s", m) for m in logged)


async def test_a_fast_load_is_only_logged(
    engine: Engine, client_notices: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pgml_engines"):
        await engine.transform(task("text-classification", "token-classification"), {}, ["x"])
    assert client_notices == []
    assert any(r.getMessage().startswith("model token-classification loaded in") for r in caplog.records)


def test_results_become_plain_json() -> None:
    value = {
        "a": np.float32(0.5),
        "b": (np.int64(3), np.array([1.0, np.nan])),
        "c": float("inf"),
        "d": np.bool_(True),
    }
    assert to_json(value) == {"a": 0.5, "b": [3, [1.0, None]], "c": None, "d": True}
    assert type(to_json(np.float32(0.1))) is float
    assert to_json(np.float32(0.9995759)) == float(np.float32(0.9995759))  # float32 widened, not rounded
