"""``pgml.chunk``: LangChain text splitters by PostgresML's names (contract §2.3).

kwargs are the splitter's constructor arguments. Constructed splitters are cached by name and kwargs: the NLTK
and spaCy ones load language data, which would otherwise be paid again for every row of
``FROM docs, pgml.chunk('spacy', body)``.

nltk and spaCy are optional (neither is a dependency of this distribution); without them, or without their
language data, the caller gets an InvalidArgument that says exactly what to install.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .errors import InvalidArgument, translate

#: PostgresML's splitter names → langchain_text_splitters class names. ``ntlk`` is the docs' misspelling.
SPLITTERS: Mapping[str, str] = {
    "character": "CharacterTextSplitter",
    "latex": "LatexTextSplitter",
    "markdown": "MarkdownTextSplitter",
    "nltk": "NLTKTextSplitter",
    "ntlk": "NLTKTextSplitter",
    "python": "PythonCodeTextSplitter",
    "recursive_character": "RecursiveCharacterTextSplitter",
    "spacy": "SpacyTextSplitter",
}

_NLTK_INSTALL = "pip install nltk"
_NLTK_DATA = "python -m nltk.downloader punkt_tab"
_SPACY_INSTALL = "pip install spacy"
_CACHE_SIZE = 32


class _Splitter:
    """A constructed splitter and, for spaCy (whose pipelines are not documented as thread-safe), a lock."""

    def __init__(self, splitter: Any, serialise: bool) -> None:
        self.split_text: Callable[[str], list[str]] = splitter.split_text
        self.guard: AbstractContextManager[Any] = threading.Lock() if serialise else nullcontext()


_cache: OrderedDict[tuple[str, str], _Splitter] = OrderedDict()
_cache_lock = threading.Lock()


def chunk(splitter: str, text: str, kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Split ``text`` with the named splitter; chunks in document order (``[]`` for empty text)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"chunk text must be a string, got {type(text).__name__}")
    instance = _splitter(splitter, dict(kwargs or {}))
    try:
        with instance.guard:
            return list(instance.split_text(text))
    except LookupError as exc:
        if SPLITTERS[splitter] == "NLTKTextSplitter":  # nltk's "Resource punkt_tab not found"
            raise InvalidArgument(_missing_data_message(splitter, exc)) from exc
        raise translate(exc) from exc
    except Exception as exc:
        raise translate(exc) from exc


def _splitter(name: str, kwargs: dict[str, Any]) -> _Splitter:
    if not isinstance(name, str) or name not in SPLITTERS:
        raise InvalidArgument(f"Unknown splitter: {name}")
    try:
        key: tuple[str, str] | None = (SPLITTERS[name], json.dumps(kwargs, sort_keys=True))
    except (TypeError, ValueError):  # kwargs holding Python objects (a length_function): build, don't cache
        key = None
    if key is not None:
        with _cache_lock:
            cached = _cache.get(key)
            if cached is not None:
                _cache.move_to_end(key)
                return cached
    instance = _Splitter(_construct(name, kwargs), serialise=SPLITTERS[name] == "SpacyTextSplitter")
    if key is not None:
        with _cache_lock:
            _cache[key] = instance
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return instance


def _construct(name: str, kwargs: dict[str, Any]) -> Any:
    import langchain_text_splitters

    cls = getattr(langchain_text_splitters, SPLITTERS[name])
    try:
        return cls(**kwargs)
    except ImportError as exc:
        raise InvalidArgument(_missing_package_message(name)) from exc
    except (OSError, LookupError) as exc:
        # spaCy: OSError "Can't find model 'en_core_web_sm'"; nltk: LookupError "Resource punkt_tab not found"
        if SPLITTERS[name] in ("NLTKTextSplitter", "SpacyTextSplitter"):
            raise InvalidArgument(_missing_data_message(name, exc, kwargs)) from exc
        raise translate(exc) from exc
    except Exception as exc:
        error = translate(exc)
        if isinstance(error, InvalidArgument):
            raise InvalidArgument(f"invalid arguments for splitter {name}: {exc}") from exc
        raise error from exc


def _missing_package_message(name: str) -> str:
    if SPLITTERS[name] == "NLTKTextSplitter":
        return (
            f"splitter {name} needs the nltk package, which is not installed: run `{_NLTK_INSTALL}` and "
            f"`{_NLTK_DATA}` in the engine's environment"
        )
    return (
        f"splitter {name} needs the spacy package, which is not installed: run `{_SPACY_INSTALL}` and "
        "`python -m spacy download en_core_web_sm` in the engine's environment"
    )


def _missing_data_message(name: str, exc: BaseException, kwargs: Mapping[str, Any] | None = None) -> str:
    if SPLITTERS[name] == "NLTKTextSplitter":
        # nltk's message is a banner of asterisks around "Resource punkt_tab not found."; keep only that line.
        found = re.search(r"Resource \S+ not found", str(exc))
        return (
            f"splitter {name} needs NLTK's sentence tokenizer data, which is not installed: run `{_NLTK_DATA}` "
            f"in the engine's environment ({found.group(0) if found else type(exc).__name__})"
        )
    pipeline = (kwargs or {}).get("pipeline", "en_core_web_sm")
    return (
        f"splitter {name} needs the spaCy pipeline {pipeline!r}, which is not installed: run "
        f"`python -m spacy download {pipeline}` in the engine's environment ({exc})"
    )
