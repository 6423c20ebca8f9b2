"""``pgml.transform`` on worker threads: loading a task's model and running one batch of inputs.

transformers 5 keeps the text-classification, token-classification, fill-mask and zero-shot-classification
pipelines, and those are used as they are (their output is the contract's). It dropped question-answering,
summarization, translation and text2text-generation, and its text-generation pipeline cannot share a batch
across sessions or stream, so those tasks (and feature-extraction, whose pipeline keeps padding in a batch) are
run here on the model classes, producing what the pipelines produce(d), key for key.

Each batch function returns one result per input item, unwrapped (a fill-mask item is its list of candidates,
a QA item its answer); Hugging Face's unwrapping of single results is applied per request by :func:`shape`.

Threads: a model copy is used by its batch worker and by streaming threads at once. torch modules are fine with
that; Hugging Face's fast tokenizers are not ("Already borrowed"), so every tokenizer use holds the copy's
``lock``. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import arguments
from .config import EngineConfig
from .errors import InvalidArgument
from .resolve import ResolvedModel
from .tasks import CAUSAL_TASKS, CallArgs, TransformLoadOptions, generation_config_keys

if TYPE_CHECKING:
    import torch

_AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
}
_PIPELINE_CLASSES = {
    "text-classification": "TextClassificationPipeline",
    "token-classification": "TokenClassificationPipeline",
    "fill-mask": "FillMaskPipeline",
    "zero-shot-classification": "ZeroShotClassificationPipeline",
}
#: The text-generation pipeline's defaults (transformers 5), for settings neither the caller nor the model's
#: generation config sets; the sampling ones apply only when sampling.
_CAUSAL_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
_SAMPLING_SETTINGS = frozenset(
    {"temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff"}
)
_RESULT_NAMES = {
    "summarization": "summary",
    "translation": "translation",
    "text2text-generation": "generated",
}
_CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


@dataclass(eq=False)
class TransformModel:
    """One loaded transform model copy: a transformers model of one family, its tokenizer, and the lock that
    serialises tokenizer use between the batch worker and streaming threads."""

    family: str
    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelines: dict[str, Any] = field(default_factory=dict)

    # The cache sizes models by their parameters and buffers.
    def parameters(self) -> Iterable[torch.Tensor]:
        return self.model.parameters()

    def buffers(self) -> Iterable[torch.Tensor]:
        return self.model.buffers()

    @property
    def context(self) -> int | None:
        """Positions the model can attend to (prompt plus generated tokens), when its config says."""
        config = self.model.config
        config = getattr(config, "get_text_config", lambda: config)()
        for attribute in _CONTEXT_ATTRIBUTES:
            value = getattr(config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


# --- loading --------------------------------------------------------------------------------------------------


def architectures(resolved: ResolvedModel, options: TransformLoadOptions, config: EngineConfig) -> list[str]:
    """The ``architectures`` a model's config names (to infer its task); runs on a worker thread."""
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(resolved.path, **_common_kwargs(resolved, options, config))
    return list(getattr(model_config, "architectures", None) or [])


def load_model(
    resolved: ResolvedModel, family: str, options: TransformLoadOptions, config: EngineConfig
) -> TransformModel:
    """Load the tokenizer and the model class of ``family``; runs on a worker thread.

    On CUDA the model runs in half precision (:func:`_half_dtype`) unless the task gave a dtype; on the CPU in
    float32, whatever it was published in (bf16 arithmetic on CPUs is slow or emulated).
    """
    import torch
    import transformers

    common = _common_kwargs(resolved, options, config)
    tokenizer_kwargs = json.loads(options.tokenizer_kwargs)
    if options.use_fast is not None:
        tokenizer_kwargs["use_fast"] = options.use_fast
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.path, **common, **tokenizer_kwargs)

    model_config = transformers.AutoConfig.from_pretrained(resolved.path, **common)
    model_kwargs: dict[str, Any] = json.loads(options.model_kwargs)
    if options.dtype is not None:
        model_kwargs["dtype"] = arguments.torch_dtype(options.dtype)
    elif options.device is not None and options.device.startswith("cuda") and config.half_precision:
        declared = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
        model_kwargs["dtype"] = _half_dtype(
            arguments.torch_dtype(declared) if isinstance(declared, str) else declared
        )
    elif options.device_map is None:
        model_kwargs["dtype"] = torch.float32
    if options.device_map is not None:
        model_kwargs["device_map"] = json.loads(options.device_map)
    auto_class = getattr(transformers, _AUTO_CLASSES[family])
    model = auto_class.from_pretrained(resolved.path, config=model_config, **common, **model_kwargs)
    if options.device_map is None and options.device is not None:
        model.to(options.device)
    model.eval()

    if family == "causal-lm":
        # Batched generation needs a pad token, on the left so that every prompt ends where generation starts.
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise InvalidArgument(
                    f"model {resolved.name} has neither a pad nor an eos token to pad prompts with"
                )
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
    elif tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return TransformModel(family, model, tokenizer)


def _half_dtype(declared: Any) -> Any:
    """The half precision a transform model runs in on CUDA: fp16 for weights published in fp16, otherwise bf16
    where the GPU has it (its range is fp32's: T5 and other models published in fp32 overflow in fp16), else
    fp16."""
    import torch

    if declared == torch.float16 or not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _common_kwargs(
    resolved: ResolvedModel, options: TransformLoadOptions, config: EngineConfig
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "trust_remote_code": options.trust_remote_code,
        "revision": options.revision,
        "local_files_only": resolved.source != "hub",
    }
    if options.token is not None:
        kwargs["token"] = options.token
    if resolved.source == "hub" and config.hf_cache_dir is not None:
        kwargs["cache_dir"] = str(config.hf_cache_dir)
    return kwargs


# --- one batch ------------------------------------------------------------------------------------------------


def run_batch(
    tm: TransformModel, spec_name: str, args: CallArgs, items: list[Any], on_generate: Callable[[], None]
) -> list[Any]:
    """One model call (or one ``generate()``) for a whole batch of one task and one set of arguments.

    ``spec_name`` is the task as written (``translation_en_to_fr`` selects its task-specific parameters);
    ``on_generate`` counts generate() calls for the engine's statistics.
    """
    import torch

    task = args.task
    with torch.inference_mode():
        if task in _PIPELINE_CLASSES:
            results = _run_pipeline(tm, task, args.kwargs(), items)
        elif task == "feature-extraction":
            results = _feature_extraction(tm, args.kwargs(), items)
        elif task == "question-answering":
            results = _question_answering(tm, args.kwargs(), items)
        else:
            plan = plan_generation(tm, task, spec_name, args, items)
            on_generate()
            output = tm.model.generate(**plan.inputs, **plan.generate_kwargs)
            results = plan.results(tm, output)
    return [to_json(result) for result in results]


def shape(task: str, kind: str, results: list[Any]) -> Any:
    """A request's output from its items' results: Hugging Face's return value for a *list* input (§5.2, §7.3).

    Single-input question answering is a bare object and single-input fill-mask a flat list (the pipelines
    unwrap a list of one); text2text-style tasks flatten when each input has one sequence; a chat is one item.
    """
    if kind == "chat":
        return results[0]
    if task in ("question-answering", "fill-mask") and len(results) == 1:
        return results[0]
    if task in ("text2text-generation", "summarization", "translation") and all(len(r) == 1 for r in results):
        return [r[0] for r in results]
    return results


def _run_pipeline(tm: TransformModel, task: str, kwargs: dict[str, Any], items: list[str]) -> list[Any]:
    pipe = _pipeline(tm, task)
    if task == "fill-mask":
        mask = tm.tokenizer.mask_token
        for position, text in enumerate(items, 1):
            if mask is None or mask not in text:
                raise InvalidArgument(f"fill-mask input {position} has no mask token {mask}")
    # A row longer than the model takes is classified from what fits, not refused with a tensor error.
    if task == "text-classification":
        kwargs = {"truncation": True, **kwargs}
    elif task == "fill-mask":
        kwargs = {
            **kwargs,
            "tokenizer_kwargs": {"truncation": True, **(kwargs.get("tokenizer_kwargs") or {})},
        }
    with tm.lock:
        results = pipe(list(items), batch_size=len(items), num_workers=0, **kwargs)
    if task == "fill-mask" and len(items) == 1:
        results = [results]  # the pipeline unwraps a single input; shape() does that per request instead
    if len(results) != len(items):
        raise RuntimeError(f"{task} returned {len(results)} results for {len(items)} inputs")
    return list(results)


def _pipeline(tm: TransformModel, task: str) -> Any:
    pipe = tm.pipelines.get(task)
    if pipe is None:
        import transformers

        device = None if getattr(tm.model, "hf_device_map", None) is not None else tm.model.device
        pipe = getattr(transformers, _PIPELINE_CLASSES[task])(
            model=tm.model, tokenizer=tm.tokenizer, device=device
        )
        tm.pipelines[task] = pipe
    return pipe


def _feature_extraction(tm: TransformModel, kwargs: dict[str, Any], items: list[str]) -> list[Any]:
    """The feature-extraction pipeline's ``[1][tokens][hidden]`` per input, in one padded forward pass; each
    input keeps only its own tokens (the pipeline, batched, would return the padding's states too)."""
    tokenize = {"truncation": True, **(kwargs.get("tokenize_kwargs") or {})}  # long rows: what fits
    if "truncation" in kwargs:
        tokenize["truncation"] = kwargs["truncation"]
    with tm.lock:
        encoded = tm.tokenizer(list(items), padding=True, return_tensors="pt", **tokenize)
    encoded = encoded.to(tm.model.device)
    hidden = tm.model(**encoded)[0].float()
    mask = encoded["attention_mask"].bool()
    return [[hidden[i][mask[i]].tolist()] for i in range(len(items))]


# --- question answering ---------------------------------------------------------------------------------------


def _question_answering(
    tm: TransformModel, kwargs: dict[str, Any], items: list[tuple[str, str]]
) -> list[Any]:
    """Extractive QA as transformers 4's pipeline did it: each (question, context) is split into overlapping
    spans that fit the model, the best start/end pairs of each span (end after start, at most ``max_answer_len``
    tokens, inside the context) are scored by softmax(start) × softmax(end), equal answers from different spans
    add up, and the best ``top_k`` are returned with character offsets into the context."""
    import numpy as np

    tokenizer = tm.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidArgument(
            "question-answering needs a model with a fast tokenizer (offsets into the context)"
        )
    top_k = kwargs.get("top_k", 1)
    max_answer_len = kwargs.get("max_answer_len", 15)
    impossible = kwargs.get("handle_impossible_answer", False)
    align_to_words = kwargs.get("align_to_words", True)
    max_seq_len = kwargs.get("max_seq_len") or min(tokenizer.model_max_length, 384)
    doc_stride = kwargs.get("doc_stride") or min(max_seq_len // 2, 128)
    if doc_stride > max_seq_len:
        raise InvalidArgument(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
    question_first = tokenizer.padding_side == "right"
    questions = [q for q, _ in items]
    contexts = [c for _, c in items]

    with tm.lock:
        encoded = tokenizer(
            questions if question_first else contexts,
            contexts if question_first else questions,
            padding=True,
            truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
    span_item = encoded.pop("overflow_to_sample_mapping").tolist()
    encodings = encoded.encodings
    encoded.pop("offset_mapping")
    inputs = {k: v.to(tm.model.device) for k, v in encoded.items() if k in tokenizer.model_input_names}
    output = tm.model(**inputs)
    starts = output.start_logits.float().cpu().numpy()
    ends = output.end_logits.float().cpu().numpy()
    attention = encoded["attention_mask"].numpy()
    context_id = 1 if question_first else 0

    answers: list[list[dict[str, Any]]] = [[] for _ in items]
    null_scores = [math.inf] * len(items)
    for span, item in enumerate(span_item):
        encoding = encodings[span]
        allowed = np.array([sid == context_id for sid in encoding.sequence_ids], dtype=bool)
        cls_id = tokenizer.cls_token_id
        if cls_id is not None:
            allowed |= np.array(encoding.ids) == cls_id  # some models answer "impossible" with the CLS token
        allowed &= attention[span].astype(bool)
        start = _softmax(np.where(allowed, starts[span], -10000.0))
        end = _softmax(np.where(allowed, ends[span], -10000.0))
        if impossible:
            null_scores[item] = min(null_scores[item], float(start[0] * end[0]))
        start[0] = end[0] = 0.0
        context = contexts[item]
        for s, e, score in _best_spans(start, end, allowed, top_k, max_answer_len):
            first, last = _char_span(encoding, s, e, context_id, align_to_words)
            text = context[first:last]
            same = next((a for a in answers[item] if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += score
            else:
                answers[item].append({"score": score, "start": first, "end": last, "answer": text})

    results: list[Any] = []
    for item, found in enumerate(answers):
        if impossible:
            found.append({"score": null_scores[item], "start": 0, "end": 0, "answer": ""})
        best = sorted(found, key=lambda a: a["score"], reverse=True)[:top_k]
        results.append(best[0] if len(best) == 1 else best)
    return results


def _softmax(logits: Any) -> Any:
    import numpy as np

    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def _best_spans(
    start: Any, end: Any, allowed: Any, top_k: int, max_answer_len: int
) -> list[tuple[int, int, float]]:
    """The ``top_k`` best (start, end) token pairs with start <= end < start + max_answer_len, both allowed."""
    import numpy as np

    scores = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = scores.ravel()
    if top_k == 1:
        order = np.array([int(np.argmax(flat))])
    elif flat.size <= top_k:
        order = np.argsort(-flat)
    else:
        order = np.argpartition(-flat, top_k)[:top_k]
        order = order[np.argsort(-flat[order])]
    best = []
    for index in order:
        s, e = np.unravel_index(index, scores.shape)
        if allowed[s] and allowed[e]:
            best.append((int(s), int(e), float(scores[s, e])))
    return best


def _char_span(encoding: Any, s: int, e: int, sequence: int, align_to_words: bool) -> tuple[int, int]:
    if align_to_words:
        try:
            first = encoding.word_to_chars(encoding.token_to_word(s), sequence_index=sequence)[0]
            last = encoding.word_to_chars(encoding.token_to_word(e), sequence_index=sequence)[1]
            return first, last
        except Exception:
            pass  # a tokenizer without words (pure byte-level): token offsets then, as transformers did
    return encoding.offsets[s][0], encoding.offsets[e][1]


# --- generation -----------------------------------------------------------------------------------------------


@dataclass
class GenerationPlan:
    """A generate() call prepared for a batch: its tensors, its arguments, and what each item asked for."""

    task: str
    items: list[Any]
    inputs: dict[str, Any]
    generate_kwargs: dict[str, Any]
    options: dict[str, Any]
    prompt_length: int
    sequences: int  # returned per item
    prompt_ids: list[list[int]]
    is_encoder_decoder: bool

    def new_tokens(self, output: torch.Tensor) -> list[list[list[int]]]:
        """Generated token ids per item, per returned sequence, without prompt and padding at the front."""
        start = 0 if self.is_encoder_decoder else self.prompt_length
        rows = output[:, start:].tolist()
        return [rows[i * self.sequences : (i + 1) * self.sequences] for i in range(len(self.items))]

    def decode_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"skip_special_tokens": self.options.get("skip_special_tokens", True)}
        clean = self.options.get("clean_up_tokenization_spaces")
        if clean is None and self.is_encoder_decoder:
            clean = False  # transformers 4's text2text pipeline default
        if clean is not None:
            kwargs["clean_up_tokenization_spaces"] = clean
        return kwargs

    def results(self, tm: TransformModel, output: torch.Tensor) -> list[Any]:
        """Each item's result, as the (transformers 4 or 5) pipeline for its task formats it."""
        per_item = self.new_tokens(output)
        decode = self.decode_kwargs()
        with tm.lock:
            texts = [[tm.tokenizer.decode(_strip(tm, ids), **decode) for ids in item] for item in per_item]
        results: list[Any] = []
        for item, item_texts, item_ids, prompt_ids in zip(
            self.items, texts, per_item, self.prompt_ids, strict=True
        ):
            if self.task == "conversational":
                results.append(item_texts)
            elif self.task == "text-generation":
                results.append(
                    [
                        self._text_generation(item, text, prompt_ids + ids)
                        for text, ids in zip(item_texts, item_ids, strict=True)
                    ]
                )
            else:
                name = _RESULT_NAMES[self.task]
                if self.options.get("return_tensors"):
                    results.append([{f"{name}_token_ids": _strip(tm, ids)} for ids in item_ids])
                else:
                    results.append([{f"{name}_text": text} for text in item_texts])
        return results

    def _text_generation(self, item: Any, new_text: str, ids: list[int]) -> dict[str, Any]:
        """The text-generation pipeline's record: the prompt and its continuation by default, the new text only
        with ``return_full_text: false``, token ids with ``return_tensors: true``."""
        if self.options.get("return_tensors"):
            return {"generated_token_ids": ids}
        if self.options.get("return_full_text") is False:
            return {"generated_text": new_text}
        if isinstance(item, str):
            return {"generated_text": item + new_text}
        messages = list(item)
        if _continues(self.options, messages):
            last = messages[-1]
            return {"generated_text": [*messages[:-1], {**last, "content": last["content"] + new_text}]}
        return {"generated_text": [*messages, {"role": "assistant", "content": new_text}]}


def plan_generation(
    tm: TransformModel, task: str, spec_name: str, args: CallArgs, items: list[Any]
) -> GenerationPlan:
    """Tokenize a batch of prompts (or chats) and work out generate()'s arguments, as the pipelines would.

    Caller arguments win over task-specific parameters and the text-generation pipeline's defaults, which win
    over the model's generation config (generate() applies that last part itself).
    """
    from transformers import StoppingCriteriaList, StopStringCriteria

    call = args.kwargs()
    generate: dict[str, Any] = dict(call["generate"])
    options: dict[str, Any] = dict(call["options"])
    model_config = tm.model.config
    is_encoder_decoder = bool(getattr(model_config, "is_encoder_decoder", False))
    tokenizer = tm.tokenizer
    task_params = dict((getattr(model_config, "task_specific_params", None) or {}).get(spec_name) or {})
    prefix = options.get("prefix")
    if prefix is None:
        prefix = task_params.get("prefix") or getattr(model_config, "prefix", None) or ""
    task_params = {key: value for key, value in task_params.items() if key in generation_config_keys()}

    with tm.lock:
        if "eos_token" in call:
            generate["eos_token_id"] = _token_id(tokenizer, call["eos_token"])
        criteria = StoppingCriteriaList()
        if call.get("stop"):
            criteria.append(StopStringCriteria(tokenizer=tokenizer, stop_strings=call["stop"]))
        prompts, special = _prompts(tm, task, options, prefix, items)
        tokenize: dict[str, Any] = {"padding": True, "return_tensors": "pt", "add_special_tokens": special}
        if "truncation" in options:
            tokenize["truncation"] = options["truncation"]
        elif is_encoder_decoder:  # a long document is summarized from what fits, as a row may be long
            tokenize["truncation"] = True
        saved_src = None
        if options.get("src_lang") is not None and hasattr(tokenizer, "src_lang"):
            saved_src, tokenizer.src_lang = tokenizer.src_lang, options["src_lang"]
        try:
            encoded = tokenizer(prompts, **tokenize)
        finally:
            if saved_src is not None:
                tokenizer.src_lang = saved_src
        if options.get("tgt_lang") is not None and "forced_bos_token_id" not in generate:
            generate["forced_bos_token_id"] = _token_id(tokenizer, options["tgt_lang"])
    encoded = dict(encoded)
    encoded.pop("token_type_ids", None)
    input_ids = encoded["input_ids"]
    if not is_encoder_decoder:
        encoded = _no_empty_prompts(tokenizer, encoded)
    input_ids = encoded["input_ids"]
    mask = encoded.get("attention_mask")
    prompt_ids: list[list[int]]
    if is_encoder_decoder:
        prompt_ids = [[] for _ in items]  # the decoder starts afresh: no prompt in its output
    elif mask is None:
        prompt_ids = input_ids.tolist()
    else:
        prompt_ids = [
            [token for token, keep in zip(row, keeps, strict=True) if keep]
            for row, keeps in zip(input_ids.tolist(), mask.tolist(), strict=True)
        ]
    prompt_length = int(input_ids.shape[1])

    set_params = {**_diff(tm.model.generation_config), **generate}
    defaults: dict[str, Any] = {}
    if task in CAUSAL_TASKS:
        defaults = {
            key: value
            for key, value in _CAUSAL_DEFAULTS.items()
            if key not in set_params and not (key == "max_new_tokens" and "max_length" in set_params)
        }
    else:
        defaults = {key: value for key, value in task_params.items() if key not in set_params}
    if not {**set_params, **defaults}.get("do_sample"):
        defaults = {key: value for key, value in defaults.items() if key not in _SAMPLING_SETTINGS}
    if tokenizer.pad_token_id is not None and "pad_token_id" not in set_params:
        defaults["pad_token_id"] = tokenizer.pad_token_id
    kwargs = {**defaults, **generate}
    _fit_context(tm, kwargs, prompt_length, cap=call.get("cap_new_tokens") or "max_new_tokens" in defaults)
    if criteria:
        kwargs["stopping_criteria"] = criteria
    sequences = int(
        kwargs.get("num_return_sequences") or tm.model.generation_config.num_return_sequences or 1
    )
    return GenerationPlan(
        task=task,
        items=items,
        inputs={k: v.to(tm.model.device) for k, v in encoded.items()},
        generate_kwargs=kwargs,
        options=options,
        prompt_length=prompt_length,
        sequences=sequences,
        prompt_ids=prompt_ids,
        is_encoder_decoder=is_encoder_decoder,
    )


def _no_empty_prompts(tokenizer: Any, encoded: dict[str, Any]) -> dict[str, Any]:
    """A prompt that tokenizes to nothing starts from the BOS token (as generate() does without input ids):
    a row of padding alone has nothing to attend to."""
    import torch

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    input_ids = encoded["input_ids"]
    if input_ids.shape[1] == 0:
        input_ids = torch.full((input_ids.shape[0], 1), start, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    mask = encoded.get("attention_mask")
    if mask is None or bool(mask.sum(dim=1).all()):
        return encoded
    empty = mask.sum(dim=1) == 0
    input_ids, mask = input_ids.clone(), mask.clone()
    input_ids[empty, -1] = start  # prompts are padded on the left: the last position is where one would end
    mask[empty, -1] = 1
    return {**encoded, "input_ids": input_ids, "attention_mask": mask}


def _prompts(
    tm: TransformModel, task: str, options: Mapping[str, Any], prefix: str, items: list[Any]
) -> tuple[list[str], bool]:
    """The texts to tokenize, and whether the tokenizer should add its special tokens (a rendered chat has its
    own)."""
    if items and not isinstance(items[0], str):
        template = options.get("chat_template")
        if template is None and getattr(tm.tokenizer, "chat_template", None) is None:
            raise InvalidArgument(
                "this model has no chat template; pass one as chat_template in args (a Jinja template)"
            )
        prompts = []
        for messages in items:
            continues = _continues(options, messages)
            try:
                prompts.append(
                    tm.tokenizer.apply_chat_template(
                        messages,
                        tokenize=False,
                        add_generation_prompt=not continues,
                        continue_final_message=continues,
                        chat_template=template,
                    )
                )
            except Exception as exc:  # Jinja errors: a template or messages the caller sent
                raise InvalidArgument(f"cannot apply the chat template: {exc}") from None
        return prompts, False
    if task in CAUSAL_TASKS:
        return [prefix + item for item in items], options.get("add_special_tokens", True)
    return [prefix + item for item in items], True


def _continues(options: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> bool:
    """A chat ending in an assistant message is continued (a prefill), unless the caller says otherwise."""
    value = options.get("continue_final_message")
    return bool(messages[-1].get("role") == "assistant") if value is None else bool(value)


def _fit_context(tm: TransformModel, kwargs: dict[str, Any], prompt_length: int, *, cap: bool) -> None:
    """``max_tokens`` (and the pipeline's default of 256 new tokens) is capped to the context left after the
    prompt, as an OpenAI-style server does; an explicit ``max_new_tokens`` is the caller's business."""
    context = tm.context
    if context is None or "max_new_tokens" not in kwargs:
        return
    room = context if getattr(tm.model.config, "is_encoder_decoder", False) else context - prompt_length
    if room < 1:
        raise InvalidArgument(
            f"the prompt has {prompt_length} tokens, which leaves no room in the model's context of {context} tokens"
        )
    if cap:
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], room)


def _token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if isinstance(token_id, int) and (token_id != tokenizer.unk_token_id or token == tokenizer.unk_token):
        return token_id
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    raise InvalidArgument(f"{token!r} is not a single token of this model's vocabulary")


def _strip(tm: TransformModel, ids: list[int]) -> list[int]:
    """Token ids without the padding generate() adds after a sequence that finished early."""
    pad = tm.tokenizer.pad_token_id
    end = len(ids)
    while end and pad is not None and ids[end - 1] == pad:
        end -= 1
    return ids[:end]


def _diff(generation_config: Any) -> dict[str, Any]:
    params = dict(generation_config.to_diff_dict())
    params.pop("transformers_version", None)
    return params


# --- JSON -----------------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A pipeline result as plain JSON values: numpy and torch scalars become Python numbers (float32 via
    float64, as PostgresML's serialiser did), arrays and tuples lists, NaN and infinities None (§5.1)."""
    if isinstance(value, str | bool) or value is None:
        return str(value) if isinstance(value, str) else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, torch tensors
    if callable(tolist):
        return to_json(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return to_json(item())
    return str(value)
