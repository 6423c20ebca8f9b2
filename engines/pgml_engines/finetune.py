"""Fine-tune task heads on a small encoder, on bundled datasets, so an offline install has task models at all.

The only model a fresh install carries is all-MiniLM-L6-v2 (an embedding model). Its encoder is good enough to
carry a classification, ranking, tagging or span-extraction head after a few epochs on a hundred examples, which
is what ``pgml-proxy models finetune`` does: a plain torch loop on CPU, a minute or two per head. The results are
demonstration models (tiny datasets, English only), not replacements for models trained on real corpora.

Each task is a :class:`Recipe`: which transformers head to put on the base, how a batch of examples becomes
tensors, and which loss to use. The datasets are JSON files in ``pgml_engines/data``, written for this purpose.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .importing import Progress, check_destination, quiet_transformers, staged_folder

if TYPE_CHECKING:
    import torch

Example = Mapping[str, Any]
Batch = dict[str, "torch.Tensor"]

DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
SENTIMENT_LABELS = ("NEGATIVE", "POSITIVE")
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
MAX_LENGTH = 256
"""Tokens per example: every bundled example fits, and all-MiniLM-L6-v2 was trained at this length."""
IGNORED_LABEL = -100
"""torch's cross-entropy skips this target: special tokens and the later pieces of a split word."""


@dataclass(frozen=True)
class Recipe:
    """How to train one task's head. ``loss`` is None where the transformers head computes the right loss from
    the batch's labels itself."""

    dataset: str
    head: str
    epochs: int
    encode: Callable[[Any, Sequence[Example]], Batch]
    config: Mapping[str, Any] = field(default_factory=dict)
    loss: Callable[[Any, Batch], torch.Tensor] | None = None
    learning_rate: float = 1e-4


# --- encoding a batch, per task -------------------------------------------------------------------------------


def _encode_sentiment(tokenizer: Any, examples: Sequence[Example]) -> Batch:
    import torch

    batch = tokenizer(
        [e["text"] for e in examples],
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    batch["labels"] = torch.tensor([SENTIMENT_LABELS.index(e["label"]) for e in examples])
    return dict(batch)


def _encode_pairs(tokenizer: Any, examples: Sequence[Example]) -> Batch:
    import torch

    batch = tokenizer(
        [e["query"] for e in examples],
        [e["passage"] for e in examples],
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    batch["labels"] = torch.tensor([float(e["label"]) for e in examples])
    return dict(batch)


def _pair_loss(model: Any, batch: Batch) -> torch.Tensor:
    """Binary cross-entropy on the single logit: sentence-transformers' CrossEncoder puts a sigmoid on a
    one-label model's output, so the score it reports is then the predicted probability of relevance."""
    import torch

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits.squeeze(-1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])


def _encode_tags(tokenizer: Any, examples: Sequence[Example]) -> Batch:
    import torch

    batch = tokenizer(
        [list(e["tokens"]) for e in examples],
        is_split_into_words=True,
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    labels = []
    for row, example in enumerate(examples):
        previous: int | None = None
        row_labels = []
        # Only a word's first piece carries its tag: what the token-classification pipeline reads back.
        for word in batch.word_ids(row):
            first_piece = word is not None and word != previous
            row_labels.append(NER_LABELS.index(example["tags"][word]) if first_piece else IGNORED_LABEL)
            previous = word
        labels.append(row_labels)
    batch["labels"] = torch.tensor(labels)
    return dict(batch)


def _encode_spans(tokenizer: Any, examples: Sequence[Example]) -> Batch:
    import torch

    batch = tokenizer(
        [e["question"] for e in examples],
        [e["context"] for e in examples],
        padding=True,
        truncation="only_second",
        max_length=MAX_LENGTH,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = batch.pop("offset_mapping").tolist()
    starts, ends = [], []
    for row, example in enumerate(examples):
        first_char = int(example["answer_start"])
        last_char = first_char + len(example["answer"])
        start = end = 0  # [CLS]: "no answer", the convention for an answer cut off by truncation
        for index, (sequence, (begin, finish)) in enumerate(
            zip(batch.sequence_ids(row), offsets[row], strict=True)
        ):
            if sequence != 1:
                continue
            if begin <= first_char < finish and start == 0:
                start = index
            if begin < last_char <= finish:
                end = index
        if end < start:
            start = end = 0
        starts.append(start)
        ends.append(end)
    batch["start_positions"] = torch.tensor(starts)
    batch["end_positions"] = torch.tensor(ends)
    return dict(batch)


def _labelled(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


RECIPES: dict[str, Recipe] = {
    "text-classification": Recipe(
        "sentiment.json",
        "AutoModelForSequenceClassification",
        epochs=6,
        encode=_encode_sentiment,
        config=_labelled(SENTIMENT_LABELS),
    ),
    "cross-encoder": Recipe(
        "relevance.json",
        "AutoModelForSequenceClassification",
        epochs=10,
        encode=_encode_pairs,
        config={"num_labels": 1},
        loss=_pair_loss,
        learning_rate=2e-4,
    ),
    "token-classification": Recipe(
        "ner.json",
        "AutoModelForTokenClassification",
        epochs=15,
        encode=_encode_tags,
        config=_labelled(NER_LABELS),
    ),
    "question-answering": Recipe(
        "qa.json",
        "AutoModelForQuestionAnswering",
        epochs=20,
        encode=_encode_spans,
        learning_rate=2e-4,
    ),
}
TASKS = tuple(RECIPES)


def load_examples(task: str) -> list[dict[str, Any]]:
    """The bundled dataset of ``task``, as a list of JSON objects."""
    recipe = _recipe(task)
    text = resources.files("pgml_engines").joinpath("data", recipe.dataset).read_text(encoding="utf-8")
    return list(json.loads(text))


def finetune(
    task: str,
    base: str | Path,
    destination: Path,
    *,
    epochs: int | None = None,
    batch_size: int = 16,
    learning_rate: float | None = None,
    max_steps: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Path:
    """Train ``task``'s head on ``base`` (a model folder or anything ``from_pretrained`` takes) and save the result
    at ``destination``, which is returned.

    ``epochs`` and ``learning_rate`` default to the task's recipe. ``max_steps`` and ``limit`` (the first examples
    only) exist for smoke tests. Seeded: the same arguments give the same model, and the caller's random state is
    left as it was.
    """
    recipe = _recipe(task)
    epochs = recipe.epochs if epochs is None else epochs
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    if epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError("epochs, batch size and max steps must be at least 1")
    destination = Path(destination).expanduser()
    check_destination(destination, overwrite=overwrite)
    examples = load_examples(task)[:limit]
    report = progress or (lambda _step: None)

    import torch
    import transformers

    started = time.monotonic()
    report(f"loading {base} with a new {task} head")
    with quiet_transformers():
        tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total_steps = min(epochs * steps_per_epoch, max_steps or math.inf)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the new head's initial weights, dropout and the shuffling
        with quiet_transformers():
            model = getattr(transformers, recipe.head).from_pretrained(base, **recipe.config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
        warmup = max(1, total_steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / total_steps))
        )
        model.train()
        step = 0
        for epoch in range(1, epochs + 1):
            losses = []
            order = torch.randperm(len(examples)).tolist()
            for start in range(0, len(examples), batch_size):
                batch = recipe.encode(tokenizer, [examples[i] for i in order[start : start + batch_size]])
                loss = recipe.loss(model, batch) if recipe.loss else model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                step += 1
                if step >= total_steps:
                    break
            report(f"epoch {epoch}/{epochs}: mean loss {sum(losses) / len(losses):.4f}")
            if step >= total_steps:
                break
        model.eval()
    with quiet_transformers(), staged_folder(destination, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    report(f"trained {task} in {time.monotonic() - started:.1f}s ({step} steps on {len(examples)} examples)")
    return destination


def _recipe(task: str) -> Recipe:
    try:
        return RECIPES[task]
    except KeyError:
        raise ValueError(f"unknown fine-tuning task {task!r}: expected one of {', '.join(RECIPES)}") from None
