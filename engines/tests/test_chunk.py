"""pgml.chunk: the output is exactly LangChain's own, by PostgresML's splitter names."""

from __future__ import annotations

import importlib.util
from typing import Any

import langchain_text_splitters as lts
import pytest
from pgml_engines import Engine, InvalidArgument
from pgml_engines.chunk import chunk

PROSE = (
    "PostgresML brings machine learning to Postgres. It runs models next to the data.\n\n"
    "pgml-proxy does the same without installing anything inside the database. "
    "Clients connect to it exactly as they would to Postgres.\n\nShort paragraph.\n"
) * 3
MARKDOWN = "# Title\n\nSome *text* here.\n\n## Part\n\n- item one\n- item two\n\n```sql\nSELECT 1;\n```\n" * 3
LATEX = (
    "\\section{Intro}\nWe study proxies.\n\\subsection{Method}\n"
    "\\begin{itemize}\n\\item one\n\\item two\n\\end{itemize}\n$$x^2$$\n"
) * 3
PYTHON = (
    "class Engine:\n    def embed(self, texts):\n        return [len(t) for t in texts]\n\n\n"
    "def main():\n    print(Engine().embed(['a']))\n"
) * 3

CASES = [
    ("character", lts.CharacterTextSplitter, PROSE, {"chunk_size": 120, "chunk_overlap": 0}),
    (
        "character",
        lts.CharacterTextSplitter,
        PROSE,
        {"chunk_size": 60, "chunk_overlap": 10, "separator": ". "},
    ),
    (
        "recursive_character",
        lts.RecursiveCharacterTextSplitter,
        PROSE,
        {"chunk_size": 80, "chunk_overlap": 20},
    ),
    ("markdown", lts.MarkdownTextSplitter, MARKDOWN, {"chunk_size": 50, "chunk_overlap": 0}),
    ("latex", lts.LatexTextSplitter, LATEX, {"chunk_size": 60, "chunk_overlap": 5}),
    ("python", lts.PythonCodeTextSplitter, PYTHON, {"chunk_size": 70, "chunk_overlap": 0}),
    ("recursive_character", lts.RecursiveCharacterTextSplitter, PROSE, {}),
]


@pytest.mark.parametrize(("name", "splitter", "text", "kwargs"), CASES)
def test_chunks_equal_langchains_own_splitter(
    name: str, splitter: type[Any], text: str, kwargs: dict[str, Any]
) -> None:
    expected = splitter(**kwargs).split_text(text)
    assert len(expected) > 1 or not kwargs
    assert chunk(name, text, kwargs) == expected


@pytest.mark.parametrize("name", ["character", "recursive_character", "markdown", "latex", "python"])
def test_empty_text_has_no_chunks(name: str) -> None:
    assert chunk(name, "", {}) == []


@pytest.mark.parametrize("name", ["paragraph", "CHARACTER", ""])
def test_unknown_splitter_message_is_postgresmls(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        chunk(name, "text", {})
    assert str(caught.value) == f"Unknown splitter: {name}"


@pytest.mark.parametrize(
    "kwargs",
    [{"chunk_sise": 10}, {"chunk_size": 10, "chunk_overlap": 20}, {"chunk_size": "ten"}],
)
def test_bad_constructor_arguments_are_argument_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        chunk("character", "some text to split here", kwargs)


@pytest.mark.skipif(importlib.util.find_spec("nltk") is not None, reason="nltk is installed here")
@pytest.mark.parametrize("name", ["nltk", "ntlk"])
def test_nltk_without_the_package_says_what_to_install(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        chunk(name, "One sentence. Another one.", {})
    assert "pip install nltk" in str(caught.value)
    assert "python -m nltk.downloader punkt_tab" in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("spacy") is not None, reason="spacy is installed here")
def test_spacy_without_the_package_says_what_to_install() -> None:
    with pytest.raises(InvalidArgument, match="pip install spacy"):
        chunk("spacy", "One sentence. Another one.", {})


async def test_engine_chunks_off_the_event_loop(engine: Engine) -> None:
    kwargs = {"chunk_size": 80, "chunk_overlap": 20}
    expected = lts.RecursiveCharacterTextSplitter(**kwargs).split_text(PROSE)
    assert await engine.chunk("recursive_character", PROSE, kwargs) == expected
