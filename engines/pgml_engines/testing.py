"""Tiny, randomly initialised models for tests and benchmarks: they exercise code paths, not quality.

Real models cannot be downloaded where the tests run, and the one shipped model (all-MiniLM-L6-v2) covers only
embeddings. Every builder here makes a model of the right *architecture and head* for one task from a small
config, with a tokenizer trained on the spot on a built-in corpus, and saves both as an ordinary model folder
that transformers, its pipelines and sentence-transformers load like any other. Builds are seeded, so building
twice gives identical weights, and take a fraction of a second: hidden size 32, two layers, a vocabulary of a
few hundred tokens, well under a megabyte of weights each.

Nothing here reaches the network. torch, transformers and tokenizers are imported inside the builders so that
importing this module stays as cheap as importing ``pgml_engines``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

SEED = 1234
"""Every builder seeds torch with this (in a forked RNG, so callers' random state is left alone)."""

MAX_LENGTH = 512
"""Position embeddings and the tokenizers' ``model_max_length``: pipelines truncate to it, and causal LMs can
generate a few hundred tokens without running out of positions."""

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CAUSAL_SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>")
BART_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A minimal role-tagged template: enough for code that calls ``apply_chat_template`` to have something real."""

CORPUS = (
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "Madrid is the capital of Spain, and Rome is the capital of Italy.",
    "London is a large city in England on the river Thames.",
    "Marie Curie was born in Warsaw and worked in Paris.",
    "Albert Einstein lived in Berlin before he moved to Princeton.",
    "Ada Lovelace wrote the first program for a machine.",
    "The weather today is good and the sun is shining.",
    "The food at this restaurant was very good.",
    "This movie was bad, the story was boring and too long.",
    "I loved the book, it was a great and happy read.",
    "The service was terrible and the room was dirty.",
    "What a wonderful day, everything went well.",
    "I am not happy with this product, it broke after one day.",
    "The new phone is fast and the battery lasts long.",
    "The train was late again and I missed my meeting.",
    "PostgreSQL is a powerful open source database.",
    "A proxy sits between the client and the server.",
    "Machine learning models turn text into numbers.",
    "Embeddings place similar sentences close together.",
    "The quick brown fox jumps over the lazy dog.",
    "Who is the president of the company?",
    "Where is the Eiffel Tower? It is in Paris.",
    "When was the city founded? It was founded long ago.",
    "Translate English to French: the house is blue.",
    "Summarize: the meeting covered budgets, plans and hiring.",
    "The cat sat on the mat and looked out of the window.",
    "Children play football in the park after school.",
    "She bought bread, milk and cheese at the market.",
    "The museum opens at nine and closes at six.",
    "Rain is expected tomorrow in the north of the country.",
    "He said the results were good but the costs were bad.",
    "Our team won the match by two goals.",
    "The river flows from the mountains to the sea.",
    "Please answer the question using the context.",
    "This example is neutral, neither good nor bad.",
    "The premise entails the hypothesis, or contradicts it.",
    "Numbers like 1, 2, 3, 10, 42 and 2024 appear in text too.",
    "Hello! How are you? I am fine, thank you.",
    "You are a helpful assistant. The user asks, the assistant answers.",
)
"""Words the tests use (Paris, capital, France, good, bad) are in here, so they tokenize to whole words."""

NLI_LABELS = ("contradiction", "neutral", "entailment")


# --- public builders ------------------------------------------------------------------------------------------


def build_text_classifier(folder: Path, labels: Sequence[str] = ("NEGATIVE", "POSITIVE")) -> Path:
    """A BertForSequenceClassification whose config names ``labels``, as sentiment models do."""
    from transformers import BertForSequenceClassification

    return _save_bert(folder, BertForSequenceClassification, _labelled(labels))


def build_nli_classifier(folder: Path) -> Path:
    """A sequence-pair classifier with the NLI labels the zero-shot-classification pipeline looks for."""
    from transformers import BertForSequenceClassification

    return _save_bert(folder, BertForSequenceClassification, _labelled(NLI_LABELS))


def build_token_classifier(
    folder: Path, labels: Sequence[str] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
) -> Path:
    """A BertForTokenClassification with IOB labels, so entity grouping in pipelines has something to group."""
    from transformers import BertForTokenClassification

    return _save_bert(folder, BertForTokenClassification, _labelled(labels))


def build_question_answerer(folder: Path) -> Path:
    """A BertForQuestionAnswering: start and end logits over the tokens of a question/context pair."""
    from transformers import BertForQuestionAnswering

    return _save_bert(folder, BertForQuestionAnswering, {})


def build_masked_lm(folder: Path) -> Path:
    """A BertForMaskedLM; its tokenizer's mask token is ``[MASK]``, as fill-mask callers write it."""
    from transformers import BertForMaskedLM

    return _save_bert(folder, BertForMaskedLM, {})


def build_cross_encoder(folder: Path) -> Path:
    """A single-logit pair classifier, which is what ``sentence_transformers.CrossEncoder`` loads for ranking."""
    from transformers import BertForSequenceClassification

    return _save_bert(folder, BertForSequenceClassification, {"num_labels": 1})


def build_causal_lm(folder: Path, *, chat_template: bool = True) -> Path:
    """A tiny LlamaForCausalLM with a byte-level BPE tokenizer, so decoded text keeps its spaces.

    ``eos_token_id`` is set, but random weights rarely pick it; callers that need a fixed length pass
    ``min_new_tokens`` (which masks EOS) and can then generate hundreds of tokens. The output head only
    scores tokens that begin a word (and EOS), so what it writes is words separated by spaces, the way a
    real model's text streams in pieces.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    pad, bos, eos, unk = CAUSAL_SPECIAL_TOKENS
    # A BOS in front of every encoding, as Llama tokenizers do; generation pipelines rely on add_special_tokens.
    tokenizer = _byte_level_tokenizer(
        CAUSAL_SPECIAL_TOKENS,
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        template_tokens=(bos,),
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    ids = _special_ids(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=False,
        **ids,
    )
    generation = GenerationConfig(**ids, do_sample=False)
    eos_id = ids["eos_token_id"]
    silent = [i for token, i in tokenizer.get_vocab().items() if not token.startswith("Ġ") and i != eos_id]

    def make() -> PreTrainedModel:
        import torch

        model = LlamaForCausalLM(config)
        with torch.no_grad():
            model.lm_head.weight[silent] = 0.0  # logit 0: below the best word start, almost surely
        return model

    return _save(folder, make, tokenizer, generation)


def build_seq2seq(folder: Path) -> Path:
    """A tiny BartForConditionalGeneration with a byte-level BPE tokenizer (Bart's own kind, so no sentencepiece
    model is needed); ``decoder_start_token_id`` is set so ``generate()`` works straight away."""
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    bos, pad, eos, unk, mask = BART_SPECIAL_TOKENS
    tokenizer = _byte_level_tokenizer(
        BART_SPECIAL_TOKENS,
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        template_tokens=(bos, eos),
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        sep_token=eos,
        cls_token=bos,
    )
    ids = _special_ids(tokenizer)
    # Bart starts decoding from EOS, and ends with it.
    ids |= {"decoder_start_token_id": ids["eos_token_id"], "forced_eos_token_id": ids["eos_token_id"]}
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=MAX_LENGTH,
        **ids,
    )
    generation = GenerationConfig(**ids, max_length=64, do_sample=False)
    return _save(folder, lambda: BartForConditionalGeneration(config), tokenizer, generation)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "text-classification": build_text_classifier,
    "nli": build_nli_classifier,
    "token-classification": build_token_classifier,
    "question-answering": build_question_answerer,
    "fill-mask": build_masked_lm,
    "cross-encoder": build_cross_encoder,
    "text-generation": build_causal_lm,
    "text2text-generation": build_seq2seq,
}
"""Task name → builder, in the order :func:`build_all` builds them."""


def build_all(folder: Path) -> dict[str, Path]:
    """Every model, each in ``folder/<task>``: one call gives a test session the whole zoo (well under a second
    per model)."""
    return {task: build(Path(folder) / task) for task, build in BUILDERS.items()}


# --- the parts ------------------------------------------------------------------------------------------------


def _labelled(labels: Sequence[str]) -> dict[str, Any]:
    if not labels:
        raise ValueError("a classifier needs at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct: {list(labels)}")
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _save_bert(folder: Path, model_class: type[PreTrainedModel], extra: dict[str, Any]) -> Path:
    """Every Bert-family builder shares one tokenizer recipe and one config shape; only the head differs."""
    from transformers import BertConfig

    tokenizer = _bert_tokenizer()
    config: PretrainedConfig = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    return _save(folder, lambda: model_class(config), tokenizer, None)


def _bert_tokenizer() -> Any:
    """A WordPiece vocabulary learnt from :data:`CORPUS`, wrapped in transformers' own BertTokenizer so that it
    saves and loads exactly like a downloaded BERT tokenizer (lower-casing, [CLS]/[SEP] pairs, [MASK]).

    The vocabulary is every character (alone and as a ``##`` continuation, so no ASCII text is unknown) plus every
    whole word of the corpus, in a fixed order. tokenizers' WordPieceTrainer is not used: its result varies from
    process to process (hash-map order), and token ids must not, or two builds would be two different models.
    """
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {word for line in CORPUS for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line))}
    )
    characters = sorted(set(string.ascii_lowercase + string.digits + string.punctuation).union(*words))
    suffixes = [f"##{suffix}" for suffix in ("s", "es", "ed", "ing", "ly", "er", "est", "ion", "al", "ful")]
    pieces = [*BERT_SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters), *suffixes, *words]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_LENGTH)


def _byte_level_tokenizer(
    special_tokens: Sequence[str], *, single: str, pair: str, template_tokens: Sequence[str], **roles: str
) -> PreTrainedTokenizerFast:
    """Byte-level BPE learnt from :data:`CORPUS`: any text encodes (no unknown tokens) and decoding restores the
    spaces, which streaming code needs to split generated text at word boundaries.

    ``special_tokens`` come first in the vocabulary, in this order; ``single`` and ``pair`` are the post-processor
    templates (with ``template_tokens`` in them); ``roles`` name the special tokens (``bos_token=...``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(CORPUS, trainer)
    raw.post_processor = processors.TemplateProcessing(
        single=single,
        pair=pair,
        special_tokens=[(token, raw.token_to_id(token)) for token in template_tokens],
    )
    return PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=MAX_LENGTH, **roles)


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids model and generation configs name their special tokens by (``bos_token_id=...``)."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _save(
    folder: Path,
    make_model: Callable[[], PreTrainedModel],
    tokenizer: Any,
    generation: Any,
) -> Path:
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Forked so a test's own seeding and random draws are not shifted by building a model in the middle.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = make_model()
    model.eval()
    if generation is not None:
        model.generation_config = generation
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
