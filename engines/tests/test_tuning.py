"""pgml.tune's engine side: LoRA tuning learns, reports progress and metrics, and the merged folder serves exactly
what the adapter computes.

The bases are the tiny random models of ``pgml_engines.testing``; the sentiment rows are learnable from one word
("good" vs "bad"), so a few seconds of training beat chance. Most tests call :func:`tuning.tune` in this process;
the last ones go through a TrainingPool child, as the engine does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from pgml_engines import Engine, testing, tuning
from pgml_engines.classical import TrainingPool
from pgml_engines.errors import InvalidArgument

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

POSITIVE = ("good", "great", "wonderful", "happy", "loved")
NEGATIVE = ("bad", "terrible", "boring", "dirty", "late")
FRAMES = (
    "the food was {}",
    "this movie is {}",
    "a {} day in paris",
    "the service was {} today",
    "what a {} book",
)
#: Learns in a few seconds on the tiny BERT; the defaults are for real models.
FAST = {"epochs": 10, "learning_rate": 5e-2, "batch_size": 8, "logging_steps": 2}
CHAT = {
    "system": [None, "You are terse."] * 6,
    "user": ["Where is Paris?", "What is the capital of Germany?", "Who wrote the first program?"] * 4,
    "assistant": ["Paris is in France.", "Berlin is the capital of Germany.", "Ada Lovelace wrote it."] * 4,
}
PROBES = ["the food was good", "this movie is terrible", "what a happy day in paris"]


def sentiment_rows(count: int, offset: int = 0) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {"text": [], "label": []}
    for i in range(count):
        positive = i % 2 == 0
        words = POSITIVE if positive else NEGATIVE
        rows["text"].append(
            FRAMES[(i // 2 + offset) % len(FRAMES)].format(words[(i // 2 + offset) % len(words)])
        )
        rows["label"].append("positive" if positive else "negative")
    return rows


def first(columns: dict[str, list[Any]], count: int) -> dict[str, list[Any]]:
    return {name: values[:count] for name, values in columns.items()}


def request(
    task: str, base: Path, train: dict[str, list[Any]], test: dict[str, list[Any]], **hyperparams: Any
) -> tuning.TuneRequest:
    return tuning.TuneRequest(task, str(base), train, test, hyperparams, device="cpu")


def adapter_folder(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def classifier_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.build_text_classifier(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def causal_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.build_causal_lm(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def sentiment(classifier_base: Path) -> tuple[tuning.TuneResult, list[dict[str, Any]]]:
    progress: list[dict[str, Any]] = []
    result = tuning.tune(
        request("text-classification", classifier_base, sentiment_rows(40), sentiment_rows(16, 3), **FAST),
        progress.append,
    )
    return result, progress


@pytest.fixture(scope="module")
def chat(causal_base: Path) -> tuple[tuning.TuneResult, list[dict[str, Any]]]:
    progress: list[dict[str, Any]] = []
    result = tuning.tune(
        request("conversation", causal_base, CHAT, first(CHAT, 3), **FAST | {"batch_size": 4}),
        progress.append,
    )
    return result, progress


@pytest.fixture(scope="module")
def pool() -> Iterator[TrainingPool]:
    shared = TrainingPool(warm=1, preload=("pgml_engines.tuning",))
    shared.start()
    yield shared
    shared.close()


# --- classification -------------------------------------------------------------------------------------------


def test_text_classifier_learns_and_beats_chance(
    sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]],
) -> None:
    result, progress = sentiment
    assert progress[0]["loss"] > progress[-1]["loss"]
    assert result.metrics["accuracy"] >= 0.75
    assert set(result.metrics) == {
        "accuracy", "f1", "precision", "recall", "loss", "log_loss", "roc_auc", "train_loss", "fit_time", "score_time"
    }  # fmt: skip
    assert all(isinstance(value, float) for value in result.metrics.values())


def test_tuned_files_are_the_adapter_and_its_description(
    sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]], classifier_base: Path
) -> None:
    result, _ = sentiment
    assert set(result.files) == {"adapter_config.json", "adapter_model.safetensors", "pgml_tune.json"}
    meta = json.loads(result.files["pgml_tune.json"])
    assert meta["task"] == "text-classification"
    assert meta["labels"] == ["negative", "positive"]
    assert meta["base_model"] == classifier_base.name
    assert meta["hyperparams"] == result.hyperparams
    assert result.hyperparams["target_modules"] == ["query", "value"]  # PEFT's choice for BERT
    assert result.hyperparams["r"] == 8 and result.hyperparams["epochs"] == 10


def test_merged_classifier_serves_label_names_and_the_adapters_logits(
    sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]], classifier_base: Path, tmp_path: Path
) -> None:
    result, _ = sentiment
    folder = tuning.materialize(result.files, str(classifier_base), tmp_path / "merged")
    predictions = transformers.pipeline("text-classification", model=str(folder))(PROBES)
    assert {p["label"] for p in predictions} <= {"negative", "positive"}

    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        classifier_base,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    adapted = peft.PeftModel.from_pretrained(base, adapter_folder(result.files, tmp_path / "adapter")).eval()
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    inputs = transformers.AutoTokenizer.from_pretrained(folder)(PROBES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected, got = adapted(**inputs).logits, merged(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert [p["label"] for p in predictions] == [merged.config.id2label[i] for i in got.argmax(-1).tolist()]


def test_concurrent_materializations_leave_one_whole_folder_and_never_replace_it(
    sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]], classifier_base: Path, tmp_path: Path
) -> None:
    target = tmp_path / "tuned"
    with ThreadPoolExecutor(2) as threads:
        done = list(
            threads.map(lambda _: tuning.materialize(sentiment[0].files, classifier_base, target), range(2))
        )
    assert done == [target, target]
    assert (target / "model.safetensors").is_file()
    (target / "marker").touch()  # as if a reader held it: a later call must not swap the folder underneath
    assert tuning.materialize(sentiment[0].files, classifier_base, target) == target
    assert (target / "marker").is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["tuned"]  # no staging folders left behind


def test_text_pairs_train_with_numeric_labels_in_numeric_order(classifier_base: Path) -> None:
    train = {
        "text1": ["the food was good", "the food was bad"] * 6,
        "text2": ["a happy day", "a boring day"] * 6,
        "label": [10, 2] * 6,
    }
    result = tuning.tune(
        request("text-pair-classification", classifier_base, train, first(train, 0), epochs=1), lambda _: None
    )
    assert json.loads(result.files["pgml_tune.json"])["labels"] == ["2", "10"]
    assert {"accuracy", "f1", "loss", "log_loss", "roc_auc", "train_loss"} <= set(result.metrics)


# --- conversation ---------------------------------------------------------------------------------------------


def test_conversation_learns_and_reports_perplexity(
    chat: tuple[tuning.TuneResult, list[dict[str, Any]]],
) -> None:
    result, progress = chat
    assert progress[0]["loss"] > progress[-1]["loss"]
    assert result.metrics["perplexity"] == math.exp(result.metrics["loss"])
    assert {"loss", "perplexity", "bleu", "train_loss", "fit_time", "score_time"} == set(result.metrics)
    assert json.loads(result.files["pgml_tune.json"])["labels"] is None


def test_merged_chat_model_generates_what_the_adapter_computes(
    chat: tuple[tuning.TuneResult, list[dict[str, Any]]], causal_base: Path, tmp_path: Path
) -> None:
    result, _ = chat
    folder = tuning.materialize(result.files, str(causal_base), tmp_path / "merged")
    assert (folder / "generation_config.json").is_file()
    generate = transformers.pipeline("text-generation", model=str(folder))
    messages = [{"role": "user", "content": "Where is Paris?"}]
    once, again = (generate(messages, max_new_tokens=8, do_sample=False) for _ in range(2))
    assert once == again

    adapted = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(causal_base),
        adapter_folder(result.files, tmp_path / "adapter"),
    ).eval()
    merged = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    inputs = transformers.AutoTokenizer.from_pretrained(folder)(
        ["Paris is the capital of"], return_tensors="pt"
    )
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-4, rtol=0)


def test_a_tokenizer_without_pad_token_is_stored_with_the_adapter(tmp_path: Path) -> None:
    base = testing.build_causal_lm(tmp_path / "base")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(base)
    result = tuning.tune(request("conversation", base, CHAT, first(CHAT, 0), epochs=1), lambda _: None)
    assert "tokenizer_config.json" in result.files
    folder = tuning.materialize(result.files, str(base), tmp_path / "merged")
    merged = transformers.AutoTokenizer.from_pretrained(folder)
    assert merged.pad_token == merged.eos_token


# --- arguments ------------------------------------------------------------------------------------------------


def test_postgresml_training_args_map_onto_flat_hyperparams() -> None:
    params = tuning.parse_hyperparams(
        {
            "training_args": {"num_train_epochs": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3},
            "dataset_args": {"text_column": "review"},
            "project_name": "reviews",
            "r": 4,
        }
    )
    assert (params.epochs, params.batch_size, params.learning_rate, params.r) == (2, 4, 1e-3, 4)
    assert params.seed == 42 and params.target_modules is None


@pytest.mark.parametrize(
    ("hyperparams", "message"),
    [
        ({"rank": 4}, "unknown hyperparameter(s) rank; allowed: r, lora_alpha"),
        ({"training_args": {"fp16": True}}, "training_args.fp16"),
        ({"epochs": 2, "training_args": {"num_train_epochs": 3}}, "epochs is given twice"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lora_dropout": 1.0}, "lora_dropout must be a number >= 0"),
        ({"target_modules": 3}, "target_modules must be 'all-linear' or a list"),
    ],
)
def test_bad_hyperparams_are_invalid(hyperparams: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        tuning.parse_hyperparams(hyperparams)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("task", "train", "message"),
    [
        ("summarization", {"text": ["a"]}, "Unsupported task for finetuning"),
        ("text-classification", {"text": [], "label": []}, "there are no training rows"),
        ("text-classification", {"text": ["a", "b"], "label": ["x", "x"]}, "at least 2 distinct values"),
        (
            "text-classification",
            {"text": ["a", None, None], "label": ["x", "y", "x"]},
            "column text has 2 NULL",
        ),
        (
            "conversation",
            {"system": [None], "user": ["hi"], "assistant": [None]},
            "column assistant has 1 NULL",
        ),
        ("text-classification", {"text": ["a", "b"], "label": ["x", 1]}, "only text or only numbers"),
    ],
)
def test_bad_rows_are_invalid(
    task: str, train: dict[str, list[Any]], message: str, classifier_base: Path
) -> None:
    empty = {name: [] for name in train}
    with pytest.raises(InvalidArgument) as raised:
        tuning.tune(request(task, classifier_base, train, empty), lambda _: None)
    assert message in str(raised.value)


def test_test_labels_unseen_in_training_are_invalid(classifier_base: Path) -> None:
    train = {"text": ["good", "bad"], "label": ["positive", "negative"]}
    test = {"text": ["so so"], "label": ["neutral"]}
    with pytest.raises(InvalidArgument, match="the test rows have labels the training rows lack: neutral"):
        tuning.tune(request("text-classification", classifier_base, train, test), lambda _: None)


# --- in a training process, through the engine ----------------------------------------------------------------


async def test_tuning_in_a_child_sends_progress_in_order(
    pool: TrainingPool, classifier_base: Path, sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]]
) -> None:
    progress: list[dict[str, Any]] = []
    job = request("text-classification", classifier_base, sentiment_rows(40), sentiment_rows(16, 3), **FAST)
    result = await pool.run(tuning.tune, job, progress.append)
    steps = [message["step"] for message in progress]
    assert steps == sorted(steps) and steps[-1] == progress[-1]["steps"] == 50
    assert [m["epoch"] for m in progress] == sorted(m["epoch"] for m in progress)
    # the same seed trains the same model in another process
    assert result.metrics["accuracy"] == sentiment[0].metrics["accuracy"]
    assert progress[-1]["loss"] == pytest.approx(sentiment[1][-1]["loss"], abs=1e-5)


@pytest.mark.parametrize(
    ("task", "hyperparams", "message"),
    [
        ("text-classification", {"learning_rat": 0.1}, "unknown hyperparameter(s) learning_rat"),
        ("summarization", {}, "Unsupported task for finetuning"),
    ],
)
async def test_invalid_requests_fail_across_the_process_boundary(
    pool: TrainingPool, classifier_base: Path, task: str, hyperparams: dict[str, Any], message: str
) -> None:
    job = request(task, classifier_base, sentiment_rows(4), sentiment_rows(0), **hyperparams)
    with pytest.raises(InvalidArgument) as raised:
        await pool.run(tuning.tune, job)
    assert message in str(raised.value)


async def test_engine_materializes_once_and_then_returns_the_folder(
    engine: Engine,
    sentiment: tuple[tuning.TuneResult, list[dict[str, Any]]],
    classifier_base: Path,
    tmp_path: Path,
) -> None:
    target = tmp_path / "models" / "tuned-1"
    assert await engine.materialize_tuned(sentiment[0].files, str(classifier_base), target) == target
    assert (target / "config.json").is_file()
    # an existing folder is that model: nothing is loaded, so not even the files are looked at
    assert await engine.materialize_tuned({}, "no-such-base", target) == target


def test_bleu_scores_whole_matches_one_and_disjoint_text_zero() -> None:
    assert tuning.bleu(["open settings then account"], ["open settings then account"]) == 1.0
    assert tuning.bleu(["open settings then account"], ["billing history"]) == 0.0
    partial = tuning.bleu(["open settings then account"], ["open settings"])
    assert 0.0 < partial < 1.0  # right words, too short: the brevity penalty
