"""The tiny-model zoo loads through the same doors real models do: Auto classes, pipelines, CrossEncoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pgml_engines import testing
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return testing.build_all(tmp_path_factory.mktemp("zoo"))


def test_build_all_makes_every_task_folder_small(zoo: dict[str, Path]) -> None:
    assert set(zoo) == set(testing.BUILDERS)
    for task, folder in zoo.items():
        assert (folder / "config.json").is_file(), task
        assert (folder / "tokenizer.json").is_file(), task
        size = sum(file.stat().st_size for file in folder.iterdir())
        assert size < 4 * 1024**2, f"{task} is {size} bytes"


def test_text_classifier_labels_reach_the_pipeline(zoo: dict[str, Path]) -> None:
    classify = transformers.pipeline("text-classification", model=str(zoo["text-classification"]))
    [result] = classify("Paris is the capital of France, a good city.")
    assert result["label"] in ("NEGATIVE", "POSITIVE")
    assert 0.0 <= result["score"] <= 1.0


def test_custom_labels_are_kept(tmp_path: Path) -> None:
    folder = testing.build_text_classifier(tmp_path, labels=("a", "b", "c"))
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.id2label == {0: "a", 1: "b", 2: "c"}


def test_pipeline_truncates_long_input(zoo: dict[str, Path]) -> None:
    classify = transformers.pipeline("text-classification", model=str(zoo["text-classification"]))
    [result] = classify("good " * 2000, truncation=True)
    assert result["label"] in ("NEGATIVE", "POSITIVE")


def test_nli_model_drives_zero_shot_classification(zoo: dict[str, Path]) -> None:
    classify = transformers.pipeline("zero-shot-classification", model=str(zoo["nli"]))
    result = classify("The food was good.", candidate_labels=["food", "travel", "sport"])
    assert sorted(result["labels"]) == ["food", "sport", "travel"]
    assert sum(result["scores"]) == pytest.approx(1.0, abs=1e-4)


def test_token_classifier_tags_every_word(zoo: dict[str, Path]) -> None:
    tag = transformers.pipeline("token-classification", model=str(zoo["token-classification"]))
    entities = tag("Marie Curie worked in Paris.")
    labels = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    assert all(entity["entity"] in labels for entity in entities)


def test_masked_lm_fills_the_mask_token(zoo: dict[str, Path]) -> None:
    fill = transformers.pipeline("fill-mask", model=str(zoo["fill-mask"]), top_k=3)
    assert fill.tokenizer.mask_token == "[MASK]"
    predictions = fill("Paris is the [MASK] of France.")
    assert len(predictions) == 3
    assert all("[MASK]" not in p["sequence"] for p in predictions)


def test_bert_folder_gives_features(zoo: dict[str, Path]) -> None:
    extract = transformers.pipeline("feature-extraction", model=str(zoo["fill-mask"]))
    features = extract("good and bad")
    assert len(features[0][0]) == 32  # [batch][token][hidden]


def test_cross_encoder_ranks_documents(zoo: dict[str, Path]) -> None:
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(str(zoo["cross-encoder"]), device="cpu")
    ranked = encoder.rank("capital of France", ["Paris is the capital of France.", "The cat sat."])
    assert sorted(entry["corpus_id"] for entry in ranked) == [0, 1]


def test_question_answerer_gives_start_and_end_logits(zoo: dict[str, Path]) -> None:
    folder = zoo["question-answering"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder)
    inputs = tokenizer(
        "What is the capital of France?", "Paris is the capital of France.", return_tensors="pt"
    )
    with torch.no_grad():
        output = model(**inputs)
    assert output.start_logits.shape == inputs["input_ids"].shape
    assert output.end_logits.shape == inputs["input_ids"].shape


def test_causal_lm_generates_long_text_with_spaces(zoo: dict[str, Path]) -> None:
    folder = zoo["text-generation"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer("Paris is the capital of", return_tensors="pt")
    assert inputs["input_ids"][0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=200, min_new_tokens=200, do_sample=False)
    assert output.shape[1] - inputs["input_ids"].shape[1] == 200
    # Decoding must keep spaces: streaming splits generated text at whitespace.
    assert tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True) == "Paris is the capital of"


def test_text_generation_pipeline_runs(zoo: dict[str, Path]) -> None:
    generate = transformers.pipeline("text-generation", model=str(zoo["text-generation"]))
    [result] = generate("The weather today is", max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert result["generated_text"].startswith("The weather today is")


def test_chat_template_renders_roles_and_generation_prompt(zoo: dict[str, Path]) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(zoo["text-generation"])
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|system|>\nYou are a helpful assistant." in text
    assert "<|user|>\nHello!" in text
    assert text.endswith("<|assistant|>\n")
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not plain.endswith("<|assistant|>\n")


def test_causal_lm_without_chat_template(tmp_path: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        testing.build_causal_lm(tmp_path, chat_template=False)
    )
    assert tokenizer.chat_template is None


def test_seq2seq_generates(zoo: dict[str, Path]) -> None:
    folder = zoo["text2text-generation"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    inputs = tokenizer("Translate English to French: the house is blue.", return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    assert output.shape[0] == 1
    assert output.shape[1] >= 10
    assert isinstance(tokenizer.decode(output[0], skip_special_tokens=True), str)


@pytest.mark.parametrize("task", ["text-classification", "text-generation", "text2text-generation"])
def test_building_twice_gives_identical_weights(tmp_path: Path, task: str) -> None:
    build = testing.BUILDERS[task]
    torch.manual_seed(0)
    first = load_file(build(tmp_path / "first") / "model.safetensors")
    torch.manual_seed(99)  # the caller's random state must not matter
    second = load_file(build(tmp_path / "second") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    first_vocab = (tmp_path / "first" / "tokenizer.json").read_text()
    assert first_vocab == (tmp_path / "second" / "tokenizer.json").read_text()


def test_building_leaves_callers_random_state_alone(tmp_path: Path) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    testing.build_masked_lm(tmp_path)
    assert torch.equal(torch.rand(3), expected)
