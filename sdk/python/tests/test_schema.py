"""Pipeline schemas, names and the older builders (contract §2.3, §2.4, F17, F19), without a database."""

from __future__ import annotations

import pgml
import pytest
from pgml import Model, Pipeline, SingleFieldPipeline, Splitter, ValidationError
from pgml.schema import parse_schema

MODEL = "intfloat/e5-small-v2"


def invalid(schema: object) -> str:
    """The message of the ValidationError that ``Pipeline("p", schema)`` raises."""
    with pytest.raises(ValidationError) as raised:
        Pipeline("p", schema)  # type: ignore[arg-type]
    return str(raised.value)


# --- schema validation ------------------------------------------------------------------------------------


def test_the_contract_example_schema_is_valid_and_defaults_apply() -> None:
    schema = {
        "title": {
            "semantic_search": {"model": MODEL, "parameters": {"prompt": "passage: "}},
            "full_text_search": {"configuration": "english"},
        },
        "body": {
            "splitter": {
                "model": "recursive_character",
                "parameters": {"chunk_size": 800, "chunk_overlap": 50},
            },
            "semantic_search": {"model": MODEL, "hnsw": {"m": 32, "ef_construction": 128}},
        },
        "notes": {"splitter": {}},
    }
    pipeline = Pipeline("p", schema)
    assert pipeline.name == "p"
    assert pipeline.schema == schema  # kept as the user gave it
    fields = pipeline.fields
    assert fields is not None
    assert list(fields) == ["title", "body", "notes"]
    title, body, notes = fields["title"], fields["body"], fields["notes"]
    assert title.splitter is None  # no splitter: the whole value is one chunk
    assert title.semantic is not None
    assert (title.semantic.model, title.semantic.source) == (MODEL, "pgml")
    assert title.semantic.parameters == {"prompt": "passage: "}
    assert (title.semantic.m, title.semantic.ef_construction) == (16, 64)
    assert title.full_text is not None and title.full_text.configuration == "english"
    assert body.semantic is not None and (body.semantic.m, body.semantic.ef_construction) == (32, 128)
    assert body.splitter is not None and body.splitter.parameters == {"chunk_size": 800, "chunk_overlap": 50}
    assert body.full_text is None
    assert notes.splitter is not None
    assert (notes.splitter.model, notes.splitter.parameters) == ("recursive_character", {})
    assert notes.semantic is None


def test_the_schema_is_copied_not_shared() -> None:
    schema = {"title": {"semantic_search": {"model": MODEL}}}
    pipeline = Pipeline("p", schema)
    schema["title"]["semantic_search"]["model"] = "other"
    returned = pipeline.schema
    assert returned == {"title": {"semantic_search": {"model": MODEL}}}
    returned["title"]["semantic_search"]["model"] = "other"  # type: ignore[index]
    assert pipeline.schema == {"title": {"semantic_search": {"model": MODEL}}}


def test_an_empty_schema_is_valid() -> None:
    pipeline = Pipeline("p", {})
    assert pipeline.schema == {}
    assert pipeline.fields == {}


def test_a_field_with_an_empty_action_is_valid() -> None:
    fields = parse_schema({"title": {}})
    assert fields["title"].splitter is None
    assert fields["title"].semantic is None
    assert fields["title"].full_text is None


def test_nulls_as_the_upstream_writes_them_mean_absent() -> None:
    # The upstream's SingleFieldPipeline stores "hnsw": null; a collection it wrote must read the same.
    fields = parse_schema(
        {
            "text": {
                "semantic_search": {"model": MODEL, "parameters": None, "hnsw": None, "source": None},
                "splitter": {"model": "recursive_character", "parameters": None},
                "full_text_search": None,
            }
        }
    )
    semantic = fields["text"].semantic
    assert semantic is not None
    assert (semantic.source, semantic.parameters, semantic.m, semantic.ef_construction) == (
        "pgml",
        {},
        16,
        64,
    )
    assert fields["text"].splitter is not None and fields["text"].splitter.parameters == {}
    assert fields["text"].full_text is None


def test_pipeline_without_schema_has_none_until_loaded() -> None:
    pipeline = Pipeline("p")
    assert pipeline.schema is None


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"title": {"semantic": {"model": MODEL}}}, "schema.title.semantic"),
        ({"title": {"splitter": {"name": "recursive_character"}}}, "schema.title.splitter.name"),
        ({"title": {"semantic_search": {"model": MODEL, "dims": 3}}}, "schema.title.semantic_search.dims"),
        (
            {"title": {"semantic_search": {"model": MODEL, "hnsw": {"m": 16, "ef_search": 40}}}},
            "schema.title.semantic_search.hnsw.ef_search",
        ),
        (
            {"title": {"full_text_search": {"configuration": "english", "active": True}}},
            "schema.title.full_text_search.active",
        ),
    ],
)
def test_unknown_keys_are_refused_at_every_level(schema: dict[str, object], path: str) -> None:
    assert path in invalid(schema)


def test_semantic_search_needs_a_model() -> None:
    message = invalid({"title": {"semantic_search": {"parameters": {}}}})
    assert "schema.title.semantic_search.model" in message


@pytest.mark.parametrize("model", ["", None, 5])
def test_the_model_must_be_a_non_empty_string(model: object) -> None:
    assert "schema.title.semantic_search.model" in invalid({"title": {"semantic_search": {"model": model}}})


@pytest.mark.parametrize("source", ["pgml", "python", "openai"])
def test_known_sources_are_accepted(source: str) -> None:
    fields = parse_schema({"title": {"semantic_search": {"model": MODEL, "source": source}}})
    assert fields["title"].semantic is not None
    assert fields["title"].semantic.source == source
    assert fields["title"].semantic.runtime == ("openai" if source == "openai" else "python")


def test_an_unknown_source_is_refused() -> None:
    message = invalid({"title": {"semantic_search": {"model": MODEL, "source": "cohere"}}})
    assert "schema.title.semantic_search.source" in message
    assert "cohere" in message


@pytest.mark.parametrize(
    ("hnsw", "key"),
    [
        ({"m": "16"}, "m"),
        ({"m": 1.5}, "m"),
        ({"m": True}, "m"),
        ({"m": 0}, "m"),
        ({"m": -4}, "m"),
        ({"ef_construction": "64"}, "ef_construction"),
        ({"ef_construction": [64]}, "ef_construction"),
    ],
)
def test_hnsw_parameters_must_be_positive_integers(hnsw: dict[str, object], key: str) -> None:
    message = invalid({"title": {"semantic_search": {"model": MODEL, "hnsw": hnsw}}})
    assert f"schema.title.semantic_search.hnsw.{key}" in message


def test_hnsw_must_be_an_object() -> None:
    assert "schema.title.semantic_search.hnsw" in invalid(
        {"title": {"semantic_search": {"model": MODEL, "hnsw": [16, 64]}}}
    )


def test_full_text_search_needs_a_configuration() -> None:
    message = invalid({"title": {"full_text_search": {}}})
    assert "schema.title.full_text_search.configuration" in message


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ([{"title": {}}], "schema"),
        ({"title": "semantic_search"}, "schema.title"),
        ({"title": {"splitter": "recursive_character"}}, "schema.title.splitter"),
        ({"title": {"semantic_search": MODEL}}, "schema.title.semantic_search"),
        ({"title": {"full_text_search": "english"}}, "schema.title.full_text_search"),
        ({"title": {"splitter": {"parameters": [1]}}}, "schema.title.splitter.parameters"),
        (
            {"title": {"semantic_search": {"model": MODEL, "parameters": "x"}}},
            "schema.title.semantic_search.parameters",
        ),
    ],
)
def test_parts_that_must_be_objects(schema: object, path: str) -> None:
    assert path in invalid(schema)


# --- names (§2.1, F19) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p", "my docs 2", "pipe-line_1", "ünïcödé_名前", "tab\there"])
def test_names_of_letters_digits_whitespace_dash_underscore_are_accepted(name: str) -> None:
    assert Pipeline(name, {}).name == name
    assert pgml.Collection(name, "postgresql://127.0.0.1:1/none").name == name


@pytest.mark.parametrize("name", ["a.b", 'a"b', "a'b", "a;b", "a/b", "a$b", "", "a%b"])
def test_names_with_other_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        Pipeline(name, {})
    with pytest.raises(ValidationError):
        pgml.Collection(name, "postgresql://127.0.0.1:1/none")


def test_a_non_string_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        Pipeline(5, {})  # type: ignore[arg-type]


# --- Model, Splitter, SingleFieldPipeline (§2.4) ------------------------------------------------------------


def test_model_defaults() -> None:
    model = Model()
    assert (model.name, model.source, model.parameters) == ("Alibaba-NLP/gte-base-en-v1.5", "pgml", {})
    model = Model(name=MODEL, source="openai", parameters={"prompt": "passage: "})
    assert (model.name, model.source, model.parameters) == (MODEL, "openai", {"prompt": "passage: "})


def test_model_refuses_an_unknown_source() -> None:
    with pytest.raises(ValidationError):
        Model(source="cohere")


def test_splitter_defaults() -> None:
    splitter = Splitter()
    assert (splitter.name, splitter.parameters) == ("recursive_character", {})
    splitter = Splitter(name="markdown", parameters={"chunk_size": 100})
    assert (splitter.name, splitter.parameters) == ("markdown", {"chunk_size": 100})


def test_single_field_pipeline_schema_shape() -> None:
    # The upstream's own unit test (single_field_pipeline.rs).
    pipeline = SingleFieldPipeline(
        "test_name",
        Model("test_model", "pgml", {"test_parameter": 10}),
        Splitter("test_splitter", {"test_parameter": 11}),
        {
            "full_text_search": {"active": True, "configuration": "test_configuration"},
            "hnsw": {"m": 16, "ef_construction": 64},
        },
    )
    assert isinstance(pipeline, Pipeline)
    assert pipeline.name == "test_name"
    assert pipeline.schema == {
        "text": {
            "splitter": {"model": "test_splitter", "parameters": {"test_parameter": 11}},
            "semantic_search": {
                "model": "test_model",
                "parameters": {"test_parameter": 10},
                "hnsw": {"m": 16, "ef_construction": 64},
            },
            "full_text_search": {"configuration": "test_configuration"},
        }
    }


def test_single_field_pipeline_defaults() -> None:
    pipeline = SingleFieldPipeline("p", Model(), Splitter(), {})
    schema = pipeline.schema
    assert schema is not None and list(schema) == ["text"]
    text = schema["text"]
    assert set(text) == {"semantic_search", "splitter"}  # no full_text_search unless active
    assert text["splitter"] == {"model": "recursive_character", "parameters": {}}
    semantic = text["semantic_search"]
    assert semantic["model"] == "Alibaba-NLP/gte-base-en-v1.5"
    assert semantic["parameters"] == {}
    assert semantic.get("hnsw") is None
    assert semantic.get("source", "pgml") == "pgml"
    fields = pipeline.fields
    assert fields is not None and fields["text"].semantic is not None
    assert (fields["text"].semantic.m, fields["text"].semantic.ef_construction) == (16, 64)


def test_single_field_pipeline_without_splitter_or_parameters() -> None:
    pipeline = SingleFieldPipeline("p", Model(MODEL))
    assert pipeline.schema is not None
    assert set(pipeline.schema["text"]) == {"semantic_search"}


def test_single_field_pipeline_full_text_defaults_to_english() -> None:
    pipeline = SingleFieldPipeline("p", Model(MODEL), None, {"full_text_search": {"active": True}})
    assert pipeline.schema is not None
    assert pipeline.schema["text"]["full_text_search"] == {"configuration": "english"}
    inactive = SingleFieldPipeline("p", Model(MODEL), None, {"full_text_search": {"active": False}})
    assert inactive.schema is not None and "full_text_search" not in inactive.schema["text"]


def test_single_field_pipeline_keeps_an_openai_source() -> None:
    # F17: the upstream drops it, and the field is then embedded locally with a model of the same name.
    pipeline = SingleFieldPipeline("p", Model("text-embedding-ada-002", "openai"))
    assert pipeline.schema is not None
    assert pipeline.schema["text"]["semantic_search"]["source"] == "openai"
    fields = pipeline.fields
    assert fields is not None and fields["text"].semantic is not None
    assert fields["text"].semantic.runtime == "openai"


def test_single_field_pipeline_without_a_model_has_no_schema() -> None:
    pipeline = SingleFieldPipeline("p")
    assert isinstance(pipeline, Pipeline)
    assert pipeline.schema is None


def test_the_pre_1_0_pipeline_form_is_not_valid() -> None:
    with pytest.raises((ValidationError, TypeError)):
        Pipeline("p", Model(), Splitter())  # type: ignore[call-arg]
