"""``pgml.tune``'s engine side: LoRA fine-tuning of a local model, and turning the result into a servable folder.

:func:`tune` runs in a child of :class:`~pgml_engines.classical.worker.TrainingPool` (a crash or a cancel costs
one process, never the proxy), so it and its request and result are module-level and made of builtins. What it
gives back is small on purpose: the PEFT adapter, not the model, because the catalog stores it and the base is
already on disk. :func:`materialize` later merges adapter and base into an ordinary model folder, once per
tuned model, so serving a tuned model is serving any local model.

The training loop is plain torch rather than the HF Trainer: the child stays small, a seed fixes the result, and
progress goes out every ``logging_steps`` optimizer steps.

Hyperparameters are flat keys (:class:`Hyperparams`); PostgresML's ``training_args`` object is read onto them,
and ``dataset_args``, ``model_name`` and ``project_name`` (which the caller passes along) are ignored.

Importing this module loads nothing heavy; torch, transformers and peft are imported where they are used.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .devices import resolve_device
from .errors import ArtifactRejected, InvalidArgument
from .importing import quiet_transformers, staged_folder

if TYPE_CHECKING:
    import torch

COLUMNS: dict[str, tuple[str, ...]] = {
    "text-classification": ("text", "label"),
    "text-pair-classification": ("text1", "text2", "label"),
    "conversation": ("system", "user", "assistant"),
}
"""The fixed column names of each task's rows (the caller maps the user's ``dataset_args`` onto them)."""

BLEU_ROWS = 32
"""Test conversations the model answers to score ``bleu`` (generation is the slow part of scoring)."""
CLASSIFICATION_TASKS = frozenset({"text-classification", "text-pair-classification"})
NULLABLE_COLUMNS = frozenset({"system"})
IGNORED_HYPERPARAMS = frozenset({"dataset_args", "model_name", "project_name"})
TRAINING_ARGS = {
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "weight_decay": "weight_decay",
    "seed": "seed",
    "logging_steps": "logging_steps",
}
"""PostgresML's ``training_args`` keys → our flat hyperparameter names."""

META_FILE = "pgml_tune.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
IGNORED_LABEL = -100
"""torch's cross-entropy skips this target: the prompt tokens of a conversation, and padding."""


@dataclass(frozen=True)
class TuneRequest:
    """One fine-tuning: ``train`` and ``test`` are columns named by :data:`COLUMNS` (``test`` may hold empty
    lists); ``base_model`` is a local model folder; ``device`` None means CUDA when present, else the CPU."""

    task: str
    base_model: str
    train: dict[str, list[Any]]
    test: dict[str, list[Any]]
    hyperparams: Mapping[str, Any]
    device: str | None = None


@dataclass(frozen=True)
class TuneResult:
    """``files`` is what the catalog stores (adapter, changed tokenizer, :data:`META_FILE`); ``hyperparams`` are
    the effective ones, defaults filled in."""

    files: dict[str, bytes]
    metrics: dict[str, float]
    hyperparams: dict[str, Any]


@dataclass(frozen=True)
class Hyperparams:
    """The knobs of one tuning. ``target_modules`` None means PEFT's choice for the architecture, or every
    linear layer (``"all-linear"``) where PEFT has none. Defaults are HF TrainingArguments' where that has one
    (seed, weight decay, linear decay of the learning rate), small LoRA otherwise."""

    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str | list[str] | None = None
    epochs: int = 3
    learning_rate: float = 5e-4
    batch_size: int = 8
    max_length: int = 256
    seed: int = 42
    logging_steps: int = 10
    weight_decay: float = 0.0


@dataclass(frozen=True)
class _Example:
    """One tokenized row: ``labels`` is a class index, or per-token targets for a causal LM."""

    features: dict[str, list[int]]
    labels: int | list[int]


# --- hyperparameters ------------------------------------------------------------------------------------------


def _integer(minimum: int | None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise InvalidArgument(f"hyperparameter {name} must be an integer{bound}, got {value!r}")
        return value

    return check


def _number(
    minimum: float, *, below: float | None = None, inclusive: bool = True
) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (value >= minimum if inclusive else value > minimum) and (below is None or value < below)
        if not ok:
            bound = f"{'>=' if inclusive else '>'} {minimum}" + ("" if below is None else f" and < {below}")
            raise InvalidArgument(f"hyperparameter {name} must be a number {bound}, got {value!r}")
        return float(value)

    return check


def _modules(name: str, value: Any) -> str | list[str]:
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(item, str) for item in value)
    ):
        return value
    raise InvalidArgument(
        f"hyperparameter {name} must be 'all-linear' or a list of module names, got {value!r}"
    )


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "r": _integer(1),
    "lora_alpha": _number(0, inclusive=False),
    "lora_dropout": _number(0, below=1),
    "target_modules": _modules,
    "epochs": _integer(1),
    "learning_rate": _number(0, inclusive=False),
    "batch_size": _integer(1),
    "max_length": _integer(1),
    "seed": _integer(None),
    "logging_steps": _integer(1),
    "weight_decay": _number(0),
}


def parse_hyperparams(raw: Mapping[str, Any]) -> Hyperparams:
    """The request's hyperparams checked, with ``training_args`` read onto the flat names; an unknown key, or a
    knob given both ways, is an InvalidArgument that names what is allowed."""
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"hyperparams must be a JSON object, got {type(raw).__name__}")
    flat = {key: value for key, value in raw.items() if key not in IGNORED_HYPERPARAMS}
    training_args = flat.pop("training_args", None) or {}
    if not isinstance(training_args, Mapping):
        raise InvalidArgument("hyperparams training_args must be a JSON object")
    unknown = sorted(set(flat) - set(_CHECKS)) + sorted(
        f"training_args.{k}" for k in set(training_args) - set(TRAINING_ARGS)
    )
    if unknown:
        allowed = [*_CHECKS, "training_args", *sorted(IGNORED_HYPERPARAMS)]
        raise InvalidArgument(
            f"unknown hyperparameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)} "
            f"(training_args may hold {', '.join(TRAINING_ARGS)})"
        )
    for key, value in training_args.items():
        name = TRAINING_ARGS[key]
        if name in flat:
            raise InvalidArgument(f"hyperparameter {name} is given twice (also as training_args.{key})")
        flat[name] = value
    return Hyperparams(**{name: _CHECKS[name](name, value) for name, value in flat.items()})


# --- rows -----------------------------------------------------------------------------------------------------


def _check_columns(task: str, columns: Mapping[str, list[Any]], which: str) -> int:
    """The number of rows; every column present, as long as the others, and without NULL text."""
    names = COLUMNS[task]
    if set(columns) != set(names):
        raise InvalidArgument(f"the {which} rows of {task} need exactly the columns {', '.join(names)}")
    lengths = {len(columns[name]) for name in names}
    if len(lengths) != 1:
        raise InvalidArgument(f"the {which} columns differ in length")
    for name in names:
        nulls = sum(value is None for value in columns[name])
        if nulls and name not in NULLABLE_COLUMNS:
            raise InvalidArgument(f"column {name} has {nulls} NULL value(s) in the {which} rows")
        if name != "label" and not all(value is None or isinstance(value, str) for value in columns[name]):
            raise InvalidArgument(f"column {name} must be text")
    return lengths.pop()


def _label_name(value: str | float) -> str:
    """A label as PostgreSQL prints it, which is what a user compares predictions with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _class_labels(values: Sequence[Any]) -> list[Any]:
    """The distinct training labels in class-index order: text sorted as text, numbers numerically."""
    distinct = set(values)
    if all(isinstance(value, str) for value in distinct):
        ordered: list[Any] = sorted(distinct)
    elif all(isinstance(value, int | float) for value in distinct):
        ordered = sorted(distinct)
    else:
        raise InvalidArgument("column label must hold only text or only numbers")
    if len(ordered) < 2:
        raise InvalidArgument(
            f"column label needs at least 2 distinct values to classify, got {len(ordered)}"
        )
    return ordered


def _class_indices(values: Sequence[Any], labels: Sequence[Any], which: str) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    unseen = sorted({_label_name(value) for value in values if value not in index})
    if unseen:
        raise InvalidArgument(f"the {which} rows have labels the training rows lack: {', '.join(unseen)}")
    return [index[value] for value in values]


def _encode(
    task: str,
    tokenizer: Any,
    columns: Mapping[str, list[Any]],
    classes: Sequence[Any] | None,
    max_length: int,
    which: str,
) -> tuple[list[_Example], list[int]]:
    """The rows as examples, and their class indices (none for a conversation)."""
    if classes is None:
        return _encode_conversations(tokenizer, columns, max_length), []
    targets = _class_indices(columns["label"], classes, which)
    return _encode_classification(task, tokenizer, columns, targets, max_length), targets


def _encode_classification(
    task: str, tokenizer: Any, columns: Mapping[str, list[Any]], targets: list[int], max_length: int
) -> list[_Example]:
    texts = [columns["text"]] if task == "text-classification" else [columns["text1"], columns["text2"]]
    encoded = tokenizer(*texts, truncation=True, max_length=max_length)
    return [
        _Example({key: values[row] for key, values in encoded.items()}, target)
        for row, target in enumerate(targets)
    ]


def _encode_conversations(
    tokenizer: Any, columns: Mapping[str, list[Any]], max_length: int
) -> list[_Example]:
    """Prompt tokens then assistant tokens, the prompt masked out of the loss. They are tokenized apart, as
    generation sees them: a chat is answered from the prompt's tokens, not from a tokenization of the whole."""
    examples, answered = [], 0
    for system, user, assistant in zip(columns["system"], columns["user"], columns["assistant"], strict=True):
        prompt, answer, special = _conversation_text(tokenizer, system, user, assistant)
        prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not special and tokenizer.eos_token_id is not None:
            answer_ids = [*answer_ids, tokenizer.eos_token_id]  # so the model learns to stop
        ids = (prompt_ids + answer_ids)[:max_length]
        labels = ([IGNORED_LABEL] * len(prompt_ids) + answer_ids)[:max_length]
        examples.append(_Example({"input_ids": ids, "attention_mask": [1] * len(ids)}, labels))
        answered += len(labels) - labels.count(IGNORED_LABEL)
    if not answered:
        raise InvalidArgument(f"no assistant tokens fit in max_length {max_length}; raise it")
    return examples


def _conversation_text(
    tokenizer: Any, system: str | None, user: str, assistant: str
) -> tuple[str, str, bool]:
    """(prompt, answer, whether the tokenizer adds its special tokens): the chat template's rendering when there
    is one (which carries its own special tokens, as in transformers' chat pipelines), else a plain join."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": user})
    if not tokenizer.chat_template:
        return "\n".join(m["content"] for m in messages) + "\n", assistant, True
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": assistant}], tokenize=False
    )
    if not whole.startswith(prompt):
        raise InvalidArgument("the model's chat template does not render the prompt as a prefix of the chat")
    return prompt, whole[len(prompt) :], False


# --- models ---------------------------------------------------------------------------------------------------


def _load_tokenizer(folder: str | Path) -> tuple[Any, bool]:
    """The tokenizer, and whether a pad token had to be set (then its files are part of the result): batches
    are padded, and a last-token classifier finds the end of each row by the pad id."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is not None:
        return tokenizer, False
    if tokenizer.eos_token is None:
        raise InvalidArgument(f"the tokenizer of {Path(folder).name} has neither a pad nor an EOS token")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, True


def _load_base(base: str | Path, labels: Sequence[str] | None, pad_token_id: int, dtype: Any) -> Any:
    """The base with the head tuning trains: a sequence classifier naming ``labels`` (so a pipeline on the
    merged model returns them), else a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if labels is None:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,  # a new head for this label set
            dtype=dtype,
        )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def _with_lora(model: Any, classify: bool, params: Hyperparams) -> tuple[Any, Hyperparams]:
    """The model with LoRA adapters (and, for classification, a trainable copy of the head: PEFT's SEQ_CLS
    saves it with the adapter), and the hyperparameters with the target modules actually used."""
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    targets = params.target_modules or PEFT_TARGETS.get(model.config.model_type, "all-linear")
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS if classify else TaskType.CAUSAL_LM,
        r=params.r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=targets,
    )
    return get_peft_model(model, config), dataclasses.replace(params, target_modules=targets)


def _collate(examples: Sequence[_Example], pad_token_id: int, device: str) -> dict[str, torch.Tensor]:
    """Right padding to the longest row of the batch: a causal LM's positions then start at 0 in every row."""
    import torch

    width = max(len(example.features["input_ids"]) for example in examples)
    fill = {"input_ids": pad_token_id}
    batch = {
        key: torch.tensor(
            [e.features[key] + [fill.get(key, 0)] * (width - len(e.features[key])) for e in examples]
        )
        for key in examples[0].features
    }
    labels = [example.labels for example in examples]
    batch["labels"] = torch.tensor(
        [row + [IGNORED_LABEL] * (width - len(row)) for row in labels]
        if isinstance(labels[0], list)
        else labels
    )
    return {key: value.to(device) for key, value in batch.items()}


def _loss_sum(model: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(summed cross-entropy, targets counted, logits): summed so that means over a whole set weigh every
    target once, however the batches fell. A causal LM predicts each token from the ones before it."""
    import torch

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    if labels.dim() == 2:
        labels = labels[:, 1:]
        scored = logits[:, :-1].reshape(-1, logits.size(-1))
    else:
        scored = logits
    loss = torch.nn.functional.cross_entropy(
        scored, labels.reshape(-1), ignore_index=IGNORED_LABEL, reduction="sum"
    )
    return loss, int((labels != IGNORED_LABEL).sum()), logits


# --- training -------------------------------------------------------------------------------------------------


def _fit(
    model: Any,
    examples: list[_Example],
    params: Hyperparams,
    collate: Callable[[Sequence[_Example]], dict[str, torch.Tensor]],
    send: Callable[[Any], None],
) -> float:
    """AdamW with a linearly decaying learning rate over seeded shuffles; the mean batch loss of the last
    epoch."""
    import torch

    shuffle = torch.Generator().manual_seed(params.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    total = math.ceil(len(examples) / params.batch_size) * params.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    model.train()
    step = 0
    epoch_losses: list[float] = []
    for epoch in range(1, params.epochs + 1):
        order = torch.randperm(len(examples), generator=shuffle).tolist()
        epoch_losses, window = [], []
        for start in range(0, len(examples), params.batch_size):
            loss, count, _ = _loss_sum(
                model, collate([examples[i] for i in order[start : start + params.batch_size]])
            )
            (loss / max(count, 1)).backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            epoch_losses.append(loss.item() / max(count, 1))
            window.append(epoch_losses[-1])
            if step % params.logging_steps == 0 or start + params.batch_size >= len(examples):
                send({"epoch": epoch, "step": step, "steps": total, "loss": statistics.fmean(window)})
                window = []
    model.eval()
    return statistics.fmean(epoch_losses)


def _score(
    model: Any,
    examples: list[_Example],
    params: Hyperparams,
    collate: Callable[[Sequence[_Example]], dict[str, torch.Tensor]],
) -> tuple[float, list[list[float]]]:
    """Mean cross-entropy per target over ``examples``, and each row's class probabilities (classifiers)."""
    import torch

    total, count, probabilities = 0.0, 0, []
    with torch.no_grad():
        for start in range(0, len(examples), params.batch_size):
            loss, counted, logits = _loss_sum(model, collate(examples[start : start + params.batch_size]))
            total, count = total + loss.item(), count + counted
            if logits.dim() == 2:
                probabilities += logits.double().softmax(-1).tolist()  # float64: sklearn checks they sum to 1
    return total / count, probabilities  # encoding made sure there is a target


def _answers(
    model: Any, tokenizer: Any, examples: list[_Example], device: str
) -> tuple[list[str], list[str]]:
    """(references, hypotheses): each example's assistant text, and what the model writes greedily from its
    prompt, with a few tokens more than the reference has."""
    import torch

    references, hypotheses = [], []
    model.eval()
    with torch.no_grad():
        for example in examples:
            assert isinstance(example.labels, list)
            prompt = example.labels.count(IGNORED_LABEL)
            answer = [t for t in example.labels[prompt:] if t != tokenizer.eos_token_id]
            ids = torch.tensor([example.features["input_ids"][:prompt]], device=device)
            output = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=len(answer) + 8,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            references.append(tokenizer.decode(answer, skip_special_tokens=True))
            hypotheses.append(tokenizer.decode(output[0][prompt:], skip_special_tokens=True))
    return references, hypotheses


def bleu(references: Sequence[str], hypotheses: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU in [0, 1] over whitespace tokens: the geometric mean of clipped n-gram precisions (n ≤ 4,
    add-one smoothed above unigrams so that short answers do not score 0) times the brevity penalty."""
    matched, total = [0] * max_n, [0] * max_n
    reference_length = hypothesis_length = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = reference.split(), hypothesis.split()
        reference_length, hypothesis_length = reference_length + len(ref), hypothesis_length + len(hyp)
        for n in range(1, max_n + 1):
            grams = collections.Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
            allowed = collections.Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            matched[n - 1] += sum(min(count, allowed[gram]) for gram, count in grams.items())
            total[n - 1] += max(len(hyp) - n + 1, 0)
    if hypothesis_length == 0 or matched[0] == 0:
        return 0.0
    smoothed = [matched[0] / total[0]] + [
        (m + 1) / (t + 1) for m, t in zip(matched[1:], total[1:], strict=True)
    ]
    brevity = (
        1.0 if hypothesis_length > reference_length else math.exp(1 - reference_length / hypothesis_length)
    )
    return brevity * math.exp(sum(math.log(p) for p in smoothed) / max_n)


def _classification_metrics(
    loss: float, probabilities: list[list[float]], targets: list[int], classes: int
) -> dict[str, float]:
    from sklearn import metrics

    predicted = [max(range(classes), key=row.__getitem__) for row in probabilities]
    weighted = {"average": "weighted", "zero_division": 0}
    scores = {
        "accuracy": metrics.accuracy_score(targets, predicted),
        "f1": metrics.f1_score(targets, predicted, **weighted),
        "precision": metrics.precision_score(targets, predicted, **weighted),
        "recall": metrics.recall_score(targets, predicted, **weighted),
        "loss": loss,
        "log_loss": metrics.log_loss(targets, probabilities, labels=list(range(classes))),
    }
    if classes == 2 and len(set(targets)) == 2:  # undefined when the scored rows hold one class only
        scores["roc_auc"] = metrics.roc_auc_score(targets, [row[1] for row in probabilities])
    return {name: float(value) for name, value in scores.items()}


def tune(request: TuneRequest, send: Callable[[Any], None]) -> TuneResult:
    """Fine-tune ``request.base_model`` with LoRA and return the adapter, metrics on the test rows (the
    training rows when there are none) and the effective hyperparameters. ``send`` gets
    ``{"epoch", "step", "steps", "loss"}`` every ``logging_steps`` steps and at the end of each epoch."""
    params, classes, tested = _check_request(request)
    names = None if classes is None else [_label_name(label) for label in classes]
    device = resolve_device(request.device)

    import torch

    with quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)  # the new head, LoRA's initial weights, dropout
        tokenizer, tokenizer_changed = _load_tokenizer(request.base_model)
        max_length = min(params.max_length, tokenizer.model_max_length)
        train, train_targets = _encode(
            request.task, tokenizer, request.train, classes, max_length, "training"
        )
        test, targets = (
            _encode(request.task, tokenizer, request.test, classes, max_length, "test")
            if tested
            else (train, train_targets)
        )
        base = _load_base(request.base_model, names, tokenizer.pad_token_id, torch.float32)
        model, params = _with_lora(base, names is not None, params)
        model.to(device)
        collate = functools.partial(_collate, pad_token_id=tokenizer.pad_token_id, device=device)
        started = time.perf_counter()
        train_loss = _fit(model, train, params, collate, send)
        fit_time = time.perf_counter() - started
        loss, probabilities = _score(model, test, params, collate)
        if names is None:
            answers = _answers(model, tokenizer, test[:BLEU_ROWS], device)
            metrics = {"loss": loss, "perplexity": math.exp(loss), "bleu": bleu(*answers)}
        else:
            metrics = _classification_metrics(loss, probabilities, targets, len(names))
        metrics |= {
            "train_loss": train_loss,
            "fit_time": fit_time,
            "score_time": time.perf_counter() - started - fit_time,
        }
        files = _saved_files(model, tokenizer if tokenizer_changed else None)
    effective = dataclasses.asdict(params)
    meta = {
        "task": request.task,
        "labels": names,
        "base_model": Path(request.base_model).name,
        "hyperparams": effective,
    }
    files[META_FILE] = json.dumps(meta, indent=2).encode()
    return TuneResult(files, metrics, effective)


def _check_request(request: TuneRequest) -> tuple[Hyperparams, list[Any] | None, int]:
    """Everything that needs no model, checked before anything slow: the hyperparameters, the training
    labels in class-index order (None for a conversation) and the number of test rows."""
    if request.task not in COLUMNS:
        raise InvalidArgument("Unsupported task for finetuning")
    params = parse_hyperparams(request.hyperparams)
    if not _check_columns(request.task, request.train, "training"):
        raise InvalidArgument("there are no training rows")
    tested = _check_columns(request.task, request.test, "test")
    classes = _class_labels(request.train["label"]) if request.task in CLASSIFICATION_TASKS else None
    return params, classes, tested


def _saved_files(model: Any, tokenizer: Any | None) -> dict[str, bytes]:
    """The adapter's files, and the tokenizer's when tuning changed it, by file name."""
    with tempfile.TemporaryDirectory(prefix="pgml-tune-") as folder:
        model.save_pretrained(folder)
        files = {name: (Path(folder) / name).read_bytes() for name in ADAPTER_FILES}
        if tokenizer is not None:
            written = Path(folder) / "tokenizer"
            tokenizer.save_pretrained(written)
            files |= {path.name: path.read_bytes() for path in written.iterdir() if path.is_file()}
    return files


# --- serving --------------------------------------------------------------------------------------------------


def materialize(files: Mapping[str, bytes], base_model: str | Path, target: Path) -> Path:
    """Merge the tuned adapter in ``files`` into ``base_model`` and save the result, with its tokenizer (and a
    causal LM's generation config), as the model folder ``target``, which is returned.

    The folder appears whole or never (written under a dot-name, then renamed), so concurrent callers never see
    half of it. An existing ``target`` is never replaced, since a caller may be loading it: rename(2) refuses
    to move a folder onto a non-empty one, and whoever got there first wrote the same model.
    """
    target = Path(target)
    _check_files(files)
    written = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.merged"
    with quiet_transformers(), staged_folder(written, overwrite=False) as staging:
        _merge(files, base_model, staging)
    try:
        written.rename(target)
    except OSError:
        shutil.rmtree(written, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def _check_files(files: Mapping[str, bytes]) -> None:
    """Stored files are data: only plain names (they become paths), and everything a merge needs."""
    for name in files:
        if not name or Path(name).name != name or name in (".", ".."):
            raise ArtifactRejected(f"tuned model file name {name!r} is not a plain file name")
    missing = [name for name in (*ADAPTER_FILES, META_FILE) if name not in files]
    if missing:
        raise ArtifactRejected(f"the tuned model lacks {', '.join(missing)}")


def _merge(files: Mapping[str, bytes], base_model: str | Path, destination: Path) -> None:
    from peft import PeftModel

    meta = json.loads(files[META_FILE])
    with tempfile.TemporaryDirectory(prefix="pgml-adapter-") as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        tokenizer, _ = _load_tokenizer(folder if "tokenizer_config.json" in files else base_model)
        base = _load_base(base_model, meta.get("labels"), tokenizer.pad_token_id, "auto")
        merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
    merged.save_pretrained(destination)  # with a causal LM's generation config
    tokenizer.save_pretrained(destination)
