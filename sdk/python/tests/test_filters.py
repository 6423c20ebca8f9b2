"""The filter, order_by and keys compilers (contract §3.4, §3.5) as SQL text, without a database."""

from __future__ import annotations

import pytest
from pgml.errors import ValidationError
from pgml.filters import compile_filter, compile_order_by, project_keys
from psycopg import sql

DOC = "documents.document"


def render(composable: sql.Composable) -> str:
    return composable.as_string(None)


def where(filter: object) -> str:
    return render(compile_filter(filter))


def contains(json: str) -> str:
    return f"({DOC} @> '{json}'::jsonb)"


def extract(*path: str) -> str:
    keys = ", ".join(f"'{key}'" for key in path)
    return f"({DOC} #> ARRAY[{keys}]::text[])"


def overlaps(jsonpath: str, values: str) -> str:
    return (
        f"ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array({DOC}, '{jsonpath}'::jsonpath)))"
        f" && ARRAY(SELECT jsonb_array_elements_text('{values}'::jsonb))"
    )


def test_empty_filter_is_true() -> None:
    assert where({}) == "TRUE"


def test_eq_is_containment_of_the_nested_path() -> None:
    assert where({"title": {"$eq": "alpha"}}) == contains('{"title": "alpha"}')
    assert where({"meta": {"tags": {"$eq": [1, 2]}}}) == contains('{"meta": {"tags": [1, 2]}}')
    assert where({"meta": {"lang": {"$eq": None}}}) == contains('{"meta": {"lang": null}}')


def test_ne_negates_containment() -> None:
    assert where({"a": {"b": {"$ne": True}}}) == "(NOT " + contains('{"a": {"b": true}}') + ")"


@pytest.mark.parametrize(("operator", "symbol"), [("$gt", ">"), ("$gte", ">="), ("$lt", "<"), ("$lte", "<=")])
def test_comparisons_use_jsonb_ordering(operator: str, symbol: str) -> None:
    assert where({"year": {operator: 2020}}) == f"({extract('year')} {symbol} '2020'::jsonb)"
    assert where({"a": {"b": {operator: "x"}}}) == f"({extract('a', 'b')} {symbol} '\"x\"'::jsonb)"


def test_in_and_nin_overlap_the_texts_of_a_lax_path() -> None:
    expected = overlaps('$."meta"."tags"[*]', '["x", 10, true]')
    assert where({"meta": {"tags": {"$in": ["x", 10, True]}}}) == f"({expected})"
    assert where({"meta": {"tags": {"$nin": ("x", 10, True)}}}) == f"(NOT ({expected}))"


def test_operators_of_one_object_are_all_anded() -> None:
    """F6: the upstream applied only the alphabetically first operator."""
    year, not_three = extract("year"), "(NOT " + contains('{"year": 3}') + ")"
    assert where({"year": {"$gte": 1, "$lt": 5, "$ne": 3}}) == (
        f"(({year} >= '1'::jsonb) AND ({year} < '5'::jsonb) AND {not_three})"
    )


def test_keys_of_one_object_are_anded_and_paths_nest() -> None:
    a, bd = contains('{"a": 1}'), contains('{"b": {"d": 3}}')
    assert where({"a": {"$eq": 1}, "b": {"c": {"$gt": 2}, "d": {"$eq": 3}}}) == (
        f"({a} AND ({extract('b', 'c')} > '2'::jsonb) AND {bd})"
    )


def test_and_or_not() -> None:
    a, b = contains('{"a": 1}'), contains('{"b": 2}')
    one, two = {"a": {"$eq": 1}}, {"b": {"$eq": 2}}
    assert where({"$and": [one, two]}) == f"({a} AND {b})"
    assert where({"$or": [one, two]}) == f"({a} OR {b})"
    assert where({"$not": [one, two]}) == f"(NOT ({a} AND {b}))"
    assert where({"$not": one}) == f"(NOT {a})"
    assert where({"$or": [{"$and": [one, two]}, one]}) == f"(({a} AND {b}) OR {a})"
    assert where({"$and": []}) == "TRUE"
    assert where({"$or": []}) == "FALSE"


def test_logical_operators_inherit_the_path() -> None:
    uuid, uuid2 = contains('{"meta": {"uuid": "1"}}'), contains('{"meta": {"uuid2": "2"}}')
    assert (
        where({"meta": {"$or": [{"uuid": {"$eq": "1"}}, {"uuid2": {"$eq": "2"}}]}}) == f"({uuid} OR {uuid2})"
    )
    assert where({"year": {"$or": [{"$lt": 1}, {"$gt": 9}]}}) == (
        f"(({extract('year')} < '1'::jsonb) OR ({extract('year')} > '9'::jsonb))"
    )
    assert where({"m": {"$not": {"k": {"$ne": 1}}}}) == "(NOT (NOT " + contains('{"m": {"k": 1}}') + "))"


def test_keys_with_quotes_dots_and_backslashes_are_quoted() -> None:
    """F10: a key cannot leave its literal, and a dot inside a key is not a path separator."""
    assert where({"a.b": {'q"k': {"$eq": 1}}}) == (
        r"""(documents.document @>  E'{"a.b": {"q\\"k": 1}}'::jsonb)"""
    )
    assert where({"it's": {"$gt": 1}}) == f"(({DOC} #> ARRAY['it''s']::text[]) > '1'::jsonb)"
    assert where({"a.b": {'q"k\\': {"$in": ["v"]}}}) == (
        f"(ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array({DOC}, "
        r""" E'$."a.b"."q\\"k\\\\"[*]'::jsonpath)))"""
        """ && ARRAY(SELECT jsonb_array_elements_text('["v"]'::jsonb)))"""
    )
    assert where({"x') OR TRUE --": {"$eq": "'; DROP TABLE t; --"}}) == contains(
        "{\"x'') OR TRUE --\": \"''; DROP TABLE t; --\"}"
    )


def test_no_percent_sign_reaches_the_sql() -> None:
    """psycopg reads any ``%`` in a statement that has parameters as a placeholder."""
    rendered = where({"50%": {"$eq": "100%s", "$gt": "%", "$in": ["%"]}})
    assert "%" not in rendered
    assert r"""E'{"50\\u0025": "100\\u0025s"}'::jsonb""" in rendered  # JSON and JSONPath escape it
    assert r"""E'$."50\\u0025"[*]'::jsonpath""" in rendered
    assert "ARRAY[('50' || chr(37) || '')]::text[]" in rendered  # a text literal spells it chr(37)
    assert "%" not in render(compile_order_by({"a%b": "asc"})) + render(project_keys(["a%b"]))


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ([], "filter must be an object"),
        (None, "filter must be an object"),
        ({"a": {"$exists": True}}, "unknown filter operator '$exists'"),
        ({"a": {"$contains": "x"}}, "unknown filter operator '$contains'"),
        ({"$regex": "x"}, "unknown filter operator '$regex'"),
        ({"$eq": {"k": 1}}, "filter operator '$eq' must follow a key"),
        ({"$in": [1]}, "filter operator '$in' must follow a key"),
        ({"a": 1}, "filter key ['a'] must map to an object"),
        ({"a": {"b": [1]}}, "filter key ['a', 'b'] must map to an object"),
        ({1: {"$eq": 1}}, "filter keys must be strings"),
        ({"$and": {"a": {"$eq": 1}}}, "$and at the top level takes a list of filter objects"),
        ({"$or": [{"a": {"$eq": 1}}, 2]}, "$or at the top level takes a list of filter objects"),
        ({"m": {"$not": "x"}}, "$not at ['m'] takes a list of filter objects or one object"),
        ({"a": {"$in": "x"}}, "$in at ['a'] takes a list of values"),
        ({"a": {"$nin": {"x": 1}}}, "$nin at ['a'] takes a list of values"),
        ({"a": {"$eq": {1, 2}}}, "$eq at ['a']: the value is not JSON"),
        ({"a": {"$gt": float("nan")}}, "$gt at ['a']: the value is not JSON"),
        ({"$or": [{"a": {"$bad": 1}}]}, "unknown filter operator '$bad' at ['a']"),
    ],
)
def test_invalid_filters(filter: object, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        compile_filter(filter)
    assert message in str(raised.value)


def test_the_document_expression_is_a_parameter() -> None:
    rendered = render(compile_filter({"a": {"$eq": 1}}, sql.SQL("d.{}").format(sql.Identifier("doc"))))
    assert rendered == '(d."doc" @> \'{"a": 1}\'::jsonb)'


def test_order_by_terms_follow_the_given_order() -> None:
    """F7: the upstream sorted the keys alphabetically."""
    assert render(compile_order_by({"year": "desc", "meta": {"rank": "asc", "lang": "DESC"}})) == (
        f"{extract('year')} DESC NULLS LAST, {extract('meta', 'rank')} ASC NULLS LAST,"
        f' {extract("meta", "lang")} DESC NULLS LAST, documents."id" ASC'
    )


def test_order_by_columns_are_table_qualified() -> None:
    assert render(compile_order_by({"COLUMN_id": "desc", "COLUMN_created_at": "ASC"})) == (
        'documents."id" DESC NULLS LAST, documents."created_at" ASC NULLS LAST, documents."id" ASC'
    )
    assert render(compile_order_by({"COLUMN_source_uuid": "asc"}, table=sql.SQL("d"))) == (
        'd."source_uuid" ASC NULLS LAST, d."id" ASC'
    )
    assert render(compile_order_by({})) == 'documents."id" ASC'


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        ([("year", "desc")], "order_by must be an object"),
        ("year", "order_by must be an object"),
        ({"year": "descending"}, "order_by ['year']: direction must be asc, ASC, desc or DESC"),
        ({"year": "Desc"}, "direction must be"),
        ({"year": 1}, "direction must be"),
        ({"meta": {"rank": None}}, "order_by ['meta', 'rank']: direction"),
        ({"meta": {}}, "order_by key ['meta'] maps to an empty object"),
        ({"COLUMN_document": "asc"}, "order_by key 'COLUMN_document': only COLUMN_id"),
        ({"COLUMN_id; DROP TABLE x": "asc"}, "only COLUMN_id"),
        ({"COLUMN_id": {"x": "asc"}}, "order_by 'COLUMN_id': direction"),
        ({1: "asc"}, "order_by keys must be strings"),
    ],
)
def test_invalid_order_by(order_by: object, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        compile_order_by(order_by)
    assert message in str(raised.value)


def test_keys_project_paths_under_their_literal_names() -> None:
    assert render(project_keys(["id", "meta,rank"])) == (
        f"jsonb_build_object('id', {DOC} #> ARRAY['id']::text[],"
        f" 'meta,rank', {DOC} #> ARRAY['meta', 'rank']::text[])"
    )
    assert render(project_keys([])) == "jsonb_build_object()"


def test_many_keys_are_split_over_several_objects() -> None:
    """jsonb_build_object takes at most 100 arguments."""
    rendered = render(project_keys([f"k{index}" for index in range(120)]))
    assert rendered.count("jsonb_build_object(") == 3
    assert rendered.startswith("(jsonb_build_object('k0', ") and rendered.endswith("ARRAY['k119']::text[]))")


@pytest.mark.parametrize("keys", ["id", None, {"id": 1}, ["id", 1]])
def test_invalid_keys(keys: object) -> None:
    with pytest.raises(ValidationError, match="keys must be a list of strings"):
        project_keys(keys)
