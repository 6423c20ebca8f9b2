"""``pgml.transform`` requests made canonical: the task, the model copy it needs, its arguments, its inputs.

Everything here is pure and cheap (no torch, no model), so the engine runs it on the event loop before queueing:
a bad task, argument or input fails its own statement and never a batch shared with other sessions. The results
are hashable, because they pick the model copy (:class:`TransformLoadOptions`, part of the cache key) and the
batch queue (:class:`CallArgs`: only requests with identical arguments share a model call).

Contract §2.3 and §5: a text task ``t`` means ``{"task": t}``; a dict task is the pipeline-construction dict;
``args`` are the call's keyword arguments, with OpenAI-style names accepted for generation tasks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from . import arguments, devices
from .errors import InvalidArgument

#: Names Hugging Face accepts for a task, mapped to the one this module uses.
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

#: Task → the model family (transformers Auto class) it loads. Tasks of one family share a model copy.
FAMILIES = {
    "text-classification": "sequence-classification",
    "zero-shot-classification": "sequence-classification",
    "token-classification": "token-classification",
    "question-answering": "question-answering",
    "fill-mask": "masked-lm",
    "feature-extraction": "base",
    "text-generation": "causal-lm",
    "conversational": "causal-lm",
    "text2text-generation": "seq2seq-lm",
    "summarization": "seq2seq-lm",
    "translation": "seq2seq-lm",
}

GENERATION_TASKS = frozenset(
    {"text-generation", "conversational", "text2text-generation", "summarization", "translation"}
)
#: Tasks whose generation defaults are the text-generation pipeline's (sampling, 256 new tokens).
CAUSAL_TASKS = frozenset({"text-generation", "conversational"})

#: Hugging Face's per-task default models (transformers 4.x, which PostgresML ran; the tasks transformers 5
#: still has keep the same defaults there, except text-generation, whose 5.x default is a 3B model).
DEFAULT_MODELS = {
    "text-classification": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    "token-classification": "dbmdz/bert-large-cased-finetuned-conll03-english",
    "question-answering": "distilbert/distilbert-base-cased-distilled-squad",
    "fill-mask": "distilbert/distilroberta-base",
    "summarization": "sshleifer/distilbart-cnn-12-6",
    "text2text-generation": "google-t5/t5-base",
    "zero-shot-classification": "facebook/bart-large-mnli",
    "feature-extraction": "distilbert/distilbert-base-cased",
    "text-generation": "openai-community/gpt2",
    "conversational": "microsoft/DialoGPT-medium",
}
_DEFAULT_TRANSLATIONS = {
    ("en", "fr"),
    ("en", "de"),
    ("en", "ro"),
}  # google-t5/t5-base, as in transformers 4.x

#: Architecture name endings → the task a model without one is run as (longest ending first).
_ARCHITECTURE_TASKS = (
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForMaskedLM", "fill-mask"),
    ("Seq2SeqLM", "text2text-generation"),
    ("Model", "feature-extraction"),  # a bare encoder (BertModel): its hidden states
)

_TRANSLATION = re.compile(r"translation_([A-Za-z_-]+?)_to_([A-Za-z_-]+)")

#: Task-dict keys with a meaning of their own; every other key is a model load option (``from_pretrained``).
_TASK_KEYS = frozenset(
    {
        "task",
        "model",
        "device",
        "device_map",
        "torch_dtype",
        "dtype",
        "trust_remote_code",
        "token",
        "use_auth_token",
        "revision",
        "use_fast",
        "tokenizer_kwargs",
        "model_kwargs",
    }
)
#: Keys PostgresML's quantized (GGUF/GGML) backends read; meaningless for transformers models, so dropped.
_IGNORED_TASK_KEYS = frozenset({"model_type", "model_file", "framework", "batch_size", "num_workers"})

#: How error messages name this function's arguments.
_WHAT = "transform arguments"

JSONB_INPUTS_ERROR = "ARRAY[]::JSONB inputs for transform should only be used with a conversational task"


@dataclass(frozen=True)
class TransformLoadOptions:
    """How one transform model copy is loaded; part of its cache key. Dicts are canonical JSON, so it hashes.

    ``device`` is canonical (``cpu``, ``cuda:0``), or None when ``device_map`` places the model itself.
    """

    device: str | None
    device_map: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    use_fast: bool | None = None
    model_kwargs: str = "{}"
    tokenizer_kwargs: str = "{}"
    # A secret (or True: the locally stored login): part of the key, never of a log line.
    token: str | bool | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task: ``task`` is canonical (``translation`` for ``translation_en_to_fr``), or None when it has to
    be inferred from the model's config; ``name`` is the task as written (it selects task-specific parameters)."""

    task: str | None
    name: str | None
    model: str
    load: TransformLoadOptions
    src_lang: str | None = None
    tgt_lang: str | None = None

    @property
    def family(self) -> str:
        assert self.task is not None
        return FAMILIES[self.task]

    def with_task(self, task: str) -> TaskSpec:
        return TaskSpec(task, task, self.model, self.load, self.src_lang, self.tgt_lang)


@dataclass(frozen=True)
class CallArgs:
    """A call's arguments, canonical: equal arguments, equal batch queue.

    For generation tasks ``canonical`` holds ``{"generate": {...}, "options": {...}, "stop": [...],
    "eos_token": ..., "cap_new_tokens": bool}``; for the others the pipeline's keyword arguments.
    """

    task: str
    canonical: str = "{}"

    def kwargs(self) -> dict[str, Any]:
        return dict(json.loads(self.canonical))


InputKind = Literal["text", "chat", "qa"]


def parse_task(task: str | Mapping[str, Any]) -> TaskSpec:
    """The task and load options of a ``pgml.transform`` call, checked (contract §2.3)."""
    if isinstance(task, str):
        raw: dict[str, Any] = {"task": task}
    elif isinstance(task, Mapping):
        raw = dict(task)
    else:
        raise InvalidArgument(f"task must be text or a JSON object, got {type(task).__name__}")
    name = raw.get("task")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidArgument(f"task must be a non-empty string, got {name!r}")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidArgument(f"model must be a non-empty string, got {model!r}")
    if name is None and model is None:
        raise InvalidArgument('the task needs a "task", a "model", or both')

    canonical, src, tgt = (None, None, None) if name is None else canonical_task(name)
    if model is None:
        assert canonical is not None and name is not None
        model = default_model(canonical, src, tgt, name)
    if re.search(r"-(gguf|ggml)", model, re.IGNORECASE):
        raise InvalidArgument(
            f"model {model} is a quantized GGUF/GGML model: import it with `pgml-proxy models import` to use it "
            "with the proxy"
        )
    return TaskSpec(canonical, name, model, load_options(raw), src, tgt)


def canonical_task(name: str) -> tuple[str, str | None, str | None]:
    """(task, source language, target language) for a task name; unknown tasks are refused, naming the known."""
    task = TASK_ALIASES.get(name, name)
    match = _TRANSLATION.fullmatch(task)
    if match:
        return "translation", match.group(1), match.group(2)
    if task not in FAMILIES:
        known = sorted({*FAMILIES, *TASK_ALIASES, "translation_<src>_to_<tgt>"})
        raise InvalidArgument(f"unsupported transform task {name!r}; supported tasks: {', '.join(known)}")
    return task, None, None


def default_model(task: str, src: str | None, tgt: str | None, name: str) -> str:
    if task == "translation":
        if src is None or tgt is None:
            raise InvalidArgument(
                'the translation task needs a "model", or a task name translation_<src>_to_<tgt> '
                "(e.g. translation_en_to_fr)"
            )
        if (src, tgt) not in _DEFAULT_TRANSLATIONS:
            raise InvalidArgument(f'there is no default model for {name}; give a "model" in the task')
        return "google-t5/t5-base"
    return DEFAULT_MODELS[task]


def task_of_architectures(architectures: Sequence[str]) -> str | None:
    """The task a model is run as when the caller gave only the model, from its config's ``architectures``."""
    for architecture in architectures:
        for ending, task in _ARCHITECTURE_TASKS:
            if architecture.endswith(ending):
                return task
    return None


def load_options(raw: Mapping[str, Any]) -> TransformLoadOptions:
    """The load options of a task dict, checked and canonical (the device is resolved: it is part of the key)."""
    trust = arguments.flag(raw, "trust_remote_code")
    revision = arguments.optional_str(raw, "revision")
    token = arguments.token(raw.get("token", raw.get("use_auth_token")))
    use_fast = raw.get("use_fast")
    if use_fast is not None and not isinstance(use_fast, bool):
        raise InvalidArgument(f"use_fast must be a boolean, got {use_fast!r}")
    dtypes = [raw[key] for key in ("torch_dtype", "dtype") if raw.get(key) is not None]
    if len(dtypes) == 2 and dtypes[0] != dtypes[1]:
        raise InvalidArgument("torch_dtype and dtype disagree; give one of them")
    dtype = dtypes[0] if dtypes else None
    if dtype is not None:
        arguments.check_dtype(dtype)
    device_map = raw.get("device_map")
    if device_map is not None and not isinstance(device_map, str | Mapping):
        raise InvalidArgument(f"device_map must be a string or a JSON object, got {device_map!r}")
    device = _device(raw.get("device"), device_map is not None)

    model_kwargs = arguments.json_object(raw, "model_kwargs")
    for key, value in raw.items():
        if key not in _TASK_KEYS and key not in _IGNORED_TASK_KEYS:
            model_kwargs[key] = value
    return TransformLoadOptions(
        device=device,
        device_map=None if device_map is None else arguments.canonical_json(device_map, _WHAT),
        dtype=dtype,
        trust_remote_code=trust,
        revision=revision,
        use_fast=use_fast,
        model_kwargs=arguments.canonical_json(model_kwargs, _WHAT),
        tokenizer_kwargs=arguments.canonical_json(arguments.json_object(raw, "tokenizer_kwargs"), _WHAT),
        token=token,
    )


def _device(value: Any, has_device_map: bool) -> str | None:
    if value is None and has_device_map:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # Hugging Face's pipeline spelling: -1 is the CPU, n a CUDA device.
        value = "cpu" if value < 0 else f"cuda:{value}"
    return devices.resolve_device(value)


# --- inputs ---------------------------------------------------------------------------------------------------


def check_inputs(task: str | None, inputs: Any) -> tuple[InputKind, list[Any]]:
    """The items of a transform call and what they are: texts, one chat (message dicts), or QA pairs.

    ``task`` None (inferred later) accepts texts and chats; the caller checks again once the task is known.
    """
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
        raise InvalidArgument("transform inputs must be an array of text or of JSON objects")
    items = list(inputs)
    if not items:
        return "text", []
    if all(isinstance(item, str) for item in items):
        if task == "question-answering":
            return "qa", [
                _qa_pair(_parse_json(item, position), position) for position, item in enumerate(items, 1)
            ]
        if task == "conversational":
            raise InvalidArgument(
                "conversational inputs must be messages: an array of JSON objects {role, content} (jsonb[])"
            )
        return "text", items
    if all(isinstance(item, Mapping) for item in items):
        if task == "question-answering":
            return "qa", [_qa_pair(item, position) for position, item in enumerate(items, 1)]
        if task is None:  # checked once the task is known: a question-answering model takes dicts too
            return "chat", [[dict(item) for item in items]]
        if task in ("conversational", "text-generation"):
            return "chat", [check_messages(items)]
        raise InvalidArgument(JSONB_INPUTS_ERROR)
    for position, item in enumerate(items, 1):
        if not isinstance(item, str | Mapping):
            raise InvalidArgument(
                f"transform input {position} must be text or a JSON object, got {type(item).__name__}"
            )
    raise InvalidArgument("transform inputs must be all text or all JSON objects, not a mix")


def check_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """A chat: message objects with a string ``role`` and a ``content`` (text, or parts for multimodal templates)."""
    checked = []
    for position, message in enumerate(messages, 1):
        if not isinstance(message, Mapping):
            raise InvalidArgument(f"message {position} must be a JSON object, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise InvalidArgument(f'message {position} needs a "role" string')
        if not isinstance(content, str | list):
            raise InvalidArgument(f'message {position} needs a "content" string')
        checked.append(dict(message))
    if not checked:
        raise InvalidArgument("a chat needs at least one message")
    return checked


def _parse_json(text: str, position: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(
            f'question-answering input {position} must be JSON {{"question": ..., "context": ...}}: {exc}'
        ) from None


def _qa_pair(item: Any, position: int) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        raise InvalidArgument(
            f'question-answering input {position} must be a JSON object {{"question", "context"}}'
        )
    pair = []
    for key in ("question", "context"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f'question-answering input {position} needs a non-empty "{key}" string')
        pair.append(value)
    return pair[0], pair[1]


# --- arguments ------------------------------------------------------------------------------------------------

#: Pipeline call arguments the engine's own batching replaces: accepted and ignored.
_IGNORED_ARGS = frozenset({"batch_size", "num_workers"})

#: Pipeline (not generate) arguments of each task; checked like the pipelines' ``_sanitize_parameters``.
_TASK_ARGS: dict[str, frozenset[str]] = {
    "text-classification": frozenset({"top_k", "function_to_apply", "truncation", "padding", "max_length"}),
    "token-classification": frozenset({"ignore_labels", "aggregation_strategy", "stride", "delimiter"}),
    "fill-mask": frozenset({"top_k", "targets", "tokenizer_kwargs"}),
    "zero-shot-classification": frozenset({"candidate_labels", "hypothesis_template", "multi_label"}),
    "feature-extraction": frozenset({"truncation", "tokenize_kwargs"}),
    "question-answering": frozenset(
        {
            "top_k",
            "doc_stride",
            "max_answer_len",
            "max_seq_len",
            "max_question_len",
            "handle_impossible_answer",
            "align_to_words",
            "padding",
        }
    ),
}
_GENERATION_OPTIONS: dict[str, frozenset[str]] = {
    "text-generation": frozenset(
        {
            "return_full_text",
            "return_text",
            "return_tensors",
            "clean_up_tokenization_spaces",
            "skip_special_tokens",
            "prefix",
            "add_special_tokens",
            "truncation",
            "chat_template",
            "continue_final_message",
        }
    ),
    "conversational": frozenset(
        {"clean_up_tokenization_spaces", "skip_special_tokens", "chat_template", "continue_final_message"}
    ),
    "text2text-generation": frozenset(
        {"return_text", "return_tensors", "clean_up_tokenization_spaces", "truncation"}
    ),
}
_GENERATION_OPTIONS["summarization"] = _GENERATION_OPTIONS["text2text-generation"]
_GENERATION_OPTIONS["translation"] = _GENERATION_OPTIONS["text2text-generation"] | {"src_lang", "tgt_lang"}

#: Generation settings that change what ``generate()`` returns, which the engine decides.
_RESERVED_GENERATION = frozenset(
    {
        "return_dict_in_generate",
        "output_scores",
        "output_logits",
        "output_attentions",
        "output_hidden_states",
        "transformers_version",
    }
)
_IGNORED_PENALTIES = ("presence_penalty", "frequency_penalty")
_BOOL_OPTIONS = (
    "return_full_text",
    "return_text",
    "return_tensors",
    "clean_up_tokenization_spaces",
    "skip_special_tokens",
    "add_special_tokens",
    "continue_final_message",
)


def prepare_args(task: str, args: Mapping[str, Any] | None) -> tuple[CallArgs, list[str]]:
    """The call's arguments checked and made canonical for ``task``, and WARNING texts for the client."""
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise InvalidArgument(f"transform args must be a JSON object, got {type(args).__name__}")
    raw = {key: value for key, value in args.items() if key not in _IGNORED_ARGS}
    if task in GENERATION_TASKS:
        canonical, warnings = _generation_args(task, raw)
        return CallArgs(task, arguments.canonical_json(canonical, _WHAT)), warnings
    # transformers 4's spelling (gone in 5) of "every label's score": top_k null.
    if task == "text-classification" and raw.pop("return_all_scores", None) is True:
        raw.setdefault("top_k", None)
    accepted = _TASK_ARGS[task]
    unknown = sorted(set(raw) - accepted)
    if unknown:
        raise InvalidArgument(
            f"unknown argument(s) {', '.join(unknown)} for task {task}; it accepts: {', '.join(sorted(accepted))}"
        )
    _check_task_args(task, raw)
    return CallArgs(task, arguments.canonical_json(raw, _WHAT)), []


def _check_task_args(task: str, raw: dict[str, Any]) -> None:
    for key in (
        "top_k",
        "max_answer_len",
        "max_seq_len",
        "max_question_len",
        "doc_stride",
        "stride",
        "max_length",
    ):
        if key in raw and not (key == "top_k" and raw[key] is None and task == "text-classification"):
            arguments.positive_int(raw, key)
    for key in ("multi_label", "handle_impossible_answer", "align_to_words"):
        if key in raw and not isinstance(raw[key], bool):
            raise InvalidArgument(f"{key} must be a boolean, got {raw[key]!r}")
    if task == "zero-shot-classification":
        labels = raw.get("candidate_labels")
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise InvalidArgument(
                "zero-shot-classification needs candidate_labels: a non-empty array of strings"
            )
        raw["candidate_labels"] = labels
        template = raw.get("hypothesis_template")
        if template is not None and (not isinstance(template, str) or "{}" not in template):
            raise InvalidArgument('hypothesis_template must be a string with a "{}" where the label goes')
    if task == "text-classification" and str(raw.get("function_to_apply", "none")).lower() not in (
        "sigmoid",
        "softmax",
        "none",
        "default",
    ):
        raise InvalidArgument("function_to_apply must be one of sigmoid, softmax, none")
    strategy = str(raw.get("aggregation_strategy", "none")).lower()
    if task == "token-classification" and strategy not in ("none", "simple", "first", "average", "max"):
        raise InvalidArgument("aggregation_strategy must be one of none, simple, first, average, max")
    if task == "fill-mask" and "targets" in raw:
        targets = raw["targets"]
        if isinstance(targets, str):
            raw["targets"] = [targets]
        elif not isinstance(targets, list) or not all(isinstance(x, str) for x in targets):
            raise InvalidArgument("targets must be a string or an array of strings")


def _generation_args(task: str, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    warnings = [
        f"{key} is ignored: Hugging Face generation has no such setting (repetition_penalty is the nearest one)"
        for key in _IGNORED_PENALTIES
        if key in raw
    ]
    for key in _IGNORED_PENALTIES:
        raw.pop(key, None)

    generate: dict[str, Any] = {}
    options: dict[str, Any] = {}
    stop: list[str] = []
    cap = False

    def rename(old: str, new: str) -> None:
        if old in raw:
            if new in raw:
                raise InvalidArgument(f"give {old} or {new}, not both")
            raw[new] = raw.pop(old)

    if "max_tokens" in raw:
        rename("max_tokens", "max_new_tokens")
        cap = True
    rename("n", "num_return_sequences")
    for key in ("stop", "stop_sequence", "stop_strings"):
        if key in raw:
            stop.extend(_stop_strings(raw.pop(key), key))

    eos_token = raw.pop("eos_token", None)
    if eos_token is not None and not isinstance(eos_token, str):
        raise InvalidArgument(f"eos_token must be a string, got {eos_token!r}")

    accepted_options = _GENERATION_OPTIONS[task]
    generation_keys = generation_config_keys()
    unknown = []
    for key, value in raw.items():
        if key in accepted_options:
            options[key] = value
        elif key in _RESERVED_GENERATION:
            raise InvalidArgument(
                f"transform does not accept {key}: the engine decides the shape of its results"
            )
        elif key in generation_keys:
            generate[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise InvalidArgument(
            f"unknown generation argument(s) {', '.join(sorted(unknown))} for task {task}; use generate() "
            "arguments (transformers GenerationConfig: max_new_tokens, num_beams, do_sample, temperature, top_p, "
            f"…), the OpenAI names max_tokens, n, stop, or the pipeline's {', '.join(sorted(accepted_options))}"
        )

    for key in _BOOL_OPTIONS:
        if key in options and not isinstance(options[key], bool):
            raise InvalidArgument(f"{key} must be a boolean, got {options[key]!r}")
    for key in ("prefix", "chat_template", "src_lang", "tgt_lang"):
        if key in options and not isinstance(options[key], str):
            raise InvalidArgument(f"{key} must be a string, got {options[key]!r}")
    if "truncation" in options and not isinstance(options["truncation"], bool | str):
        raise InvalidArgument(
            f"truncation must be a boolean or a strategy name, got {options['truncation']!r}"
        )
    if options.get("return_full_text") is not None and (
        options.get("return_text") is not None or options.get("return_tensors") is not None
    ):
        raise InvalidArgument("return_full_text cannot be combined with return_text or return_tensors")

    for key in ("max_new_tokens", "num_return_sequences", "num_beams", "max_length"):
        if key in generate:
            arguments.positive_int(generate, key)
    for key in ("min_new_tokens", "min_length", "top_k", "no_repeat_ngram_size"):
        if key in generate and generate[key] is not None:
            _non_negative_int(generate, key)
    for key in ("temperature", "top_p", "repetition_penalty", "length_penalty", "typical_p", "min_p"):
        if key in generate and generate[key] is not None:
            value = generate[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise InvalidArgument(f"{key} must be a number, got {value!r}")
    temperature = generate.get("temperature")
    if temperature is not None:
        if temperature < 0:
            raise InvalidArgument(f"temperature must be >= 0, got {temperature!r}")
        if temperature == 0:
            # OpenAI's "deterministic": greedy decoding (generate() refuses a zero temperature when sampling).
            if generate.get("do_sample") is True:
                raise InvalidArgument(
                    "temperature 0 means greedy decoding; it cannot be combined with do_sample"
                )
            del generate["temperature"]
            generate["do_sample"] = False
        else:
            generate.setdefault("do_sample", True)
    if "do_sample" in generate and not isinstance(generate["do_sample"], bool):
        raise InvalidArgument(f"do_sample must be a boolean, got {generate['do_sample']!r}")
    _validate_generation_config(generate)

    canonical: dict[str, Any] = {"generate": generate, "options": options, "cap_new_tokens": cap}
    if stop:
        canonical["stop"] = list(dict.fromkeys(stop))
    if eos_token is not None:
        canonical["eos_token"] = eos_token
    return canonical, warnings


def _stop_strings(value: Any, key: str) -> list[str]:
    strings = [value] if isinstance(value, str) else value
    if not isinstance(strings, list) or not all(isinstance(s, str) and s for s in strings):
        raise InvalidArgument(f"{key} must be a non-empty string or an array of non-empty strings")
    return strings


@cache
def generation_config_keys() -> frozenset[str]:
    """Every setting ``GenerationConfig`` has (transformers is imported by the Engine at startup)."""
    from transformers import GenerationConfig

    return frozenset(key for key in vars(GenerationConfig()) if not key.startswith("_"))


def _validate_generation_config(generate: dict[str, Any]) -> None:
    """What GenerationConfig itself can tell about the values, before a model is involved.

    Whether to sample may still come from the model's generation config or the pipeline defaults, so unless the
    caller chose, the check assumes sampling (the permissive case); generate() checks the real combination.
    """
    import logging

    from transformers import GenerationConfig

    quiet = logging.getLogger("transformers.generation.configuration_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "flags may be ignored" warnings are about combinations, checked later
    try:
        config = GenerationConfig(**{"do_sample": True, **generate})
        config.validate(strict=False, user_set_attributes=set())
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgument(f"invalid generation arguments: {exc}") from None
    finally:
        quiet.setLevel(level)


def _non_negative_int(raw: Mapping[str, Any], key: str) -> None:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{key} must be a non-negative integer, got {value!r}")
