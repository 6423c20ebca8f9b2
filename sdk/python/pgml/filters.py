"""The filter, ``order_by`` and ``keys`` languages (contract §3.4, §3.5), compiled to SQL over ``documents``.

Every value and path is quoted, never pasted (F10): JSON values are jsonb literals, paths are text arrays or
quoted JSONPath. A ``%`` never appears in the SQL we return, so callers may compose it into a statement that
also takes query parameters (psycopg reads any ``%`` there as a placeholder).
"""

from __future__ import annotations

import json

from psycopg import sql

from .errors import ValidationError

DOCUMENTS = sql.SQL("documents")
DOCUMENT = sql.SQL("documents.document")

_TRUE = sql.SQL("TRUE")
_FALSE = sql.SQL("FALSE")
_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_LOGICAL = frozenset({"$and", "$or", "$not"})
_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", *_COMPARISONS, *_LOGICAL})
_ORDER_COLUMNS = frozenset({"id", "created_at", "source_uuid"})
_DIRECTIONS = frozenset({"asc", "ASC", "desc", "DESC"})
_BUILD_PAIRS = 50  # jsonb_build_object takes at most 100 arguments (FUNC_MAX_ARGS)

Path = tuple[str, ...]


def compile_filter(filter: object, document: sql.Composable = DOCUMENT) -> sql.Composable:
    """A boolean SQL expression over the jsonb ``document`` expression; ``{}`` compiles to TRUE.

    Raises ValidationError, naming the key or operator, for anything the language does not define (F6).
    """
    if not isinstance(filter, dict):
        raise ValidationError(f"filter must be an object, got {type(filter).__name__}")
    return _join(_terms(filter, (), document), "AND", _TRUE)


def compile_order_by(
    order_by: object, document: sql.Composable = DOCUMENT, table: sql.Composable = DOCUMENTS
) -> sql.Composable:
    """ORDER BY terms (without the keyword): each NULLS LAST, in the order given (F7), then ``<table>.id ASC``.

    Nested objects are paths; ``COLUMN_<col>`` orders by a real column, and only id, created_at and
    source_uuid are accepted (F10).
    """
    if not isinstance(order_by, dict):
        raise ValidationError(f'order_by must be an object such as {{"year": "desc"}}, got {order_by!r}')
    terms: list[sql.Composable] = []
    for key, value in order_by.items():
        if isinstance(key, str) and key.startswith("COLUMN_"):
            column = key.removeprefix("COLUMN_")
            if column not in _ORDER_COLUMNS:
                raise ValidationError(
                    f"order_by key {key!r}: only COLUMN_id, COLUMN_created_at and COLUMN_source_uuid exist"
                )
            terms.append(
                _order_term(sql.SQL("{}.{}").format(table, sql.Identifier(column)), value, repr(key))
            )
        else:
            terms.extend(_order_paths(key, value, (), document))
    terms.append(sql.SQL("{}.{} ASC").format(table, sql.Identifier("id")))
    return sql.SQL(", ").join(terms)


def project_keys(keys: object, document: sql.Composable = DOCUMENT) -> sql.Composable:
    """A jsonb object of ``keys``: ``"a,b"`` reads the path a→b into the output key ``"a,b"``; a missing path
    gives null."""
    if not isinstance(keys, list | tuple) or not all(isinstance(key, str) for key in keys):
        raise ValidationError(f'keys must be a list of strings such as ["id", "meta,rank"], got {keys!r}')
    pairs = [
        sql.SQL("{}, {} #> {}").format(_text(key), document, _path_array(tuple(key.split(","))))
        for key in keys
    ]
    objects = [
        sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs[start : start + _BUILD_PAIRS]))
        for start in range(0, max(len(pairs), 1), _BUILD_PAIRS)
    ]
    return objects[0] if len(objects) == 1 else sql.SQL("({})").format(sql.SQL(" || ").join(objects))


def _terms(filter: dict[object, object], path: Path, document: sql.Composable) -> list[sql.Composable]:
    """The conditions of one filter object at ``path``; the caller ANDs them."""
    terms: list[sql.Composable] = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise ValidationError(f"filter keys must be strings, got {key!r} at {_where(path)}")
        if key in _LOGICAL:
            terms.append(_logical(key, value, path, document))
        elif key.startswith("$"):
            if key not in _OPERATORS:
                raise ValidationError(f"unknown filter operator {key!r} at {_where(path)}")
            if not path:
                raise ValidationError(
                    f'filter operator {key!r} must follow a key, as in {{"key": {{"{key}": ...}}}}'
                )
            terms.append(_comparison(key, value, path, document))
        elif isinstance(value, dict):
            terms.extend(_terms(value, (*path, key), document))
        else:
            raise ValidationError(
                f'filter key {_where((*path, key))} must map to an object such as {{"$eq": ...}}, got {value!r}'
            )
    return terms


def _logical(operator: str, value: object, path: Path, document: sql.Composable) -> sql.Composable:
    """``$and``/``$or``/``$not`` over sub-filters that inherit ``path``."""
    if operator == "$not" and isinstance(value, dict):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, dict) for item in value):
        accepted = "a list of filter objects" + (" or one object" if operator == "$not" else "")
        raise ValidationError(f"{operator} at {_where(path)} takes {accepted}, got {value!r}")
    parts = [_join(_terms(item, path, document), "AND", _TRUE) for item in value]
    if operator == "$or":
        return _join(parts, "OR", _FALSE)
    conjunction = _join(parts, "AND", _TRUE)
    return sql.SQL("(NOT {})").format(conjunction) if operator == "$not" else conjunction


def _comparison(operator: str, value: object, path: Path, document: sql.Composable) -> sql.Composable:
    """One operator applied at ``path``, with the upstream's SQL meaning (K7)."""
    where = f"{operator} at {_where(path)}"
    if operator in ("$eq", "$ne"):
        nested: object = value
        for key in reversed(path):
            nested = {key: nested}
        contains = sql.SQL("{} @> {}").format(document, _jsonb(nested, where))  # the GIN jsonb_path_ops index
        return sql.SQL("({})" if operator == "$eq" else "(NOT ({}))").format(contains)
    if operator in _COMPARISONS:
        return sql.SQL("(({} #> {}) {} {})").format(
            document, _path_array(path), sql.SQL(_COMPARISONS[operator]), _jsonb(value, where)
        )
    if not isinstance(value, list | tuple):
        raise ValidationError(f"{where} takes a list of values, got {value!r}")
    # Both sides go through jsonb_array_elements_text, so a non-string in the list compares as the JSON text
    # Postgres gives the stored value (10 → '10', true → 'true'); the lax [*] also reaches into array fields.
    jsonpath = "$" + "".join("." + _json_text(key) for key in path) + "[*]"
    overlap = sql.SQL(
        "ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array({}, {}::jsonpath)))"
        " && ARRAY(SELECT jsonb_array_elements_text({}))"
    ).format(document, sql.Literal(jsonpath), _jsonb(list(value), where))
    return sql.SQL("({})" if operator == "$in" else "(NOT ({}))").format(overlap)


def _order_paths(key: object, value: object, path: Path, document: sql.Composable) -> list[sql.Composable]:
    """The terms under one ``order_by`` key: a direction, or an object whose keys extend the path."""
    if not isinstance(key, str):
        raise ValidationError(f"order_by keys must be strings, got {key!r}")
    path = (*path, key)
    if not isinstance(value, dict):
        return [_order_term(sql.SQL("({} #> {})").format(document, _path_array(path)), value, _where(path))]
    if not value:
        raise ValidationError(f"order_by key {_where(path)} maps to an empty object")
    return [
        term for child, direction in value.items() for term in _order_paths(child, direction, path, document)
    ]


def _order_term(expression: sql.Composable, direction: object, where: str) -> sql.Composable:
    if not isinstance(direction, str) or direction not in _DIRECTIONS:
        raise ValidationError(
            f"order_by {where}: direction must be asc, ASC, desc or DESC, got {direction!r}"
        )
    return sql.SQL("{} {} NULLS LAST").format(expression, sql.SQL(direction.upper()))


def _join(parts: list[sql.Composable], operator: str, empty: sql.Composable) -> sql.Composable:
    """Parts combined with AND/OR, parenthesised; ``empty`` (the operator's identity) when there are none."""
    if len(parts) < 2:
        return parts[0] if parts else empty
    return sql.SQL("({})").format(sql.SQL(f" {operator} ").join(parts))


def _json_text(value: object) -> str:
    """JSON text with ``%`` spelled ``\\u0025`` (only strings can hold one), which jsonb and jsonpath decode."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).replace("%", "\\u0025")


def _jsonb(value: object, where: str) -> sql.Composable:
    try:
        text = _json_text(value)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{where}: the value is not JSON ({error})") from error
    return sql.SQL("{}::jsonb").format(sql.Literal(text))


def _text(value: str) -> sql.Composable:
    """A text literal; a ``%`` is written as chr(37) so that no ``%`` reaches psycopg's placeholder parser."""
    if "%" not in value:
        return sql.Literal(value)
    return sql.SQL("({})").format(
        sql.SQL(" || chr(37) || ").join(sql.Literal(part) for part in value.split("%"))
    )


def _path_array(path: Path) -> sql.Composable:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(_text(key) for key in path))


def _where(path: Path) -> str:
    """A path for messages: the list of keys, since a key may itself contain dots."""
    return repr(list(path)) if path else "the top level"
