"""Fine-tuning: the bundled datasets are well formed, and every recipe trains and saves a loadable model.

The recipes run for one step on four examples against a tiny random model from ``pgml_engines.testing``, not
against all-MiniLM-L6-v2: this checks the code paths (batching, label alignment, saving), not what is learnt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pgml_engines import finetune, testing

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.build_masked_lm(tmp_path_factory.mktemp("base"))


def _train(task: str, base: Path, destination: Path) -> Path:
    steps: list[str] = []
    folder = finetune.finetune(
        task, base, destination, max_steps=1, limit=4, batch_size=4, progress=steps.append
    )
    assert any(step.startswith("epoch 1/") for step in steps)
    assert (folder / "config.json").is_file()
    return folder


def test_sentiment_dataset_is_balanced_and_labelled() -> None:
    rows = finetune.load_examples("text-classification")
    assert len(rows) >= 100
    assert {row["label"] for row in rows} == set(finetune.SENTIMENT_LABELS)
    assert sum(row["label"] == "POSITIVE" for row in rows) == len(rows) // 2


def test_relevance_dataset_has_both_labels_for_every_query() -> None:
    rows = finetune.load_examples("cross-encoder")
    assert len(rows) >= 40
    for query in {row["query"] for row in rows}:
        assert {row["label"] for row in rows if row["query"] == query} == {0, 1}


def test_ner_dataset_has_one_known_tag_per_token() -> None:
    rows = finetune.load_examples("token-classification")
    assert len(rows) >= 40
    for row in rows:
        assert len(row["tokens"]) == len(row["tags"])
        assert set(row["tags"]) <= set(finetune.NER_LABELS)
        for previous, tag in zip(["O", *row["tags"]], row["tags"], strict=False):
            assert not tag.startswith("I-") or previous[2:] == tag[2:], row  # I- continues its own kind


def test_qa_dataset_answers_sit_where_they_say() -> None:
    rows = finetune.load_examples("question-answering")
    assert len(rows) >= 40
    for row in rows:
        start = row["answer_start"]
        assert row["context"][start : start + len(row["answer"])] == row["answer"]


def test_text_classifier_trains_and_keeps_label_names(base: Path, tmp_path: Path) -> None:
    folder = _train("text-classification", base, tmp_path / "sentiment")
    [result] = transformers.pipeline("text-classification", model=str(folder))("a good day")
    assert result["label"] in finetune.SENTIMENT_LABELS


def test_cross_encoder_trains_and_ranks(base: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    folder = _train("cross-encoder", base, tmp_path / "ranker")
    ranked = CrossEncoder(str(folder), device="cpu").rank("capital", ["Paris is the capital.", "A cat."])
    assert len(ranked) == 2
    assert all(0.0 <= entry["score"] <= 1.0 for entry in ranked)  # sigmoid on the single logit


def test_token_classifier_trains_with_ner_labels(base: Path, tmp_path: Path) -> None:
    folder = _train("token-classification", base, tmp_path / "ner")
    tag = transformers.pipeline("token-classification", model=str(folder))
    assert all(entity["entity"] in finetune.NER_LABELS for entity in tag("Marie Curie lived in Paris."))


def test_question_answerer_trains_and_points_into_the_context(base: Path, tmp_path: Path) -> None:
    folder = _train("question-answering", base, tmp_path / "qa")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder)
    inputs = tokenizer("What is the capital?", "Paris is the capital of France.", return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    assert output.start_logits.shape == inputs["input_ids"].shape


def test_answer_spans_are_labelled_on_the_answer_tokens(base: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    example = {"question": "Where?", "context": "It is in Paris today.", "answer": "Paris", "answer_start": 9}
    batch = finetune._encode_spans(tokenizer, [example])
    start, end = int(batch["start_positions"][0]), int(batch["end_positions"][0])
    assert tokenizer.decode(batch["input_ids"][0][start : end + 1]) == "paris"


def test_only_first_word_piece_carries_the_tag(base: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    example = {"tokens": ["Zyx", "lives"], "tags": ["B-PER", "O"]}  # "zyx" splits into several pieces
    labels = finetune._encode_tags(tokenizer, [example])["labels"][0].tolist()
    tagged = [label for label in labels if label != finetune.IGNORED_LABEL]
    assert tagged == [finetune.NER_LABELS.index("B-PER"), finetune.NER_LABELS.index("O")]
    assert len(labels) > 4  # [CLS] z ##y ##x lives [SEP]: the ignored pieces are there


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fine-tuning task 'summarization'"):
        finetune.load_examples("summarization")


def test_existing_model_is_refused_before_training(base: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        finetune.finetune("text-classification", base, tmp_path / "taken", max_steps=1, limit=4)
