"""A document's ``source_uuid`` and ``version`` (contract §4.6), checked against serde_json texts written out by
hand: the upstream hashes ``serde_json::to_string(&document["id"])``, so every byte of that text matters for a
collection that both SDKs update (K8)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from pgml.errors import ValidationError
from pgml.identity import compact_json, source_uuid, version


def md5_uuid(text: str) -> str:
    """The contract's definition: the 16 raw bytes of md5(text), no version or variant bits."""
    return str(uuid.UUID(bytes=hashlib.md5(text.encode("utf-8")).digest()))


def test_the_contract_examples() -> None:
    assert str(source_uuid(1)) == "c4ca4238-a0b9-2382-0dcc-509a6f75849b"
    assert str(source_uuid("1")) == "2f7bb230-c708-19ae-b10b-45a709bcf48f"


def test_source_uuid_is_not_a_version_3_uuid() -> None:
    # uuid3 would overwrite the version nibble with 3 and the variant bits; the upstream keeps the md5 bytes.
    assert source_uuid(1).version != 3
    assert source_uuid(1).bytes == hashlib.md5(b"1").digest()


# (id value, serde_json::to_string of it, derived by hand from serde_json/ryu's rules)
VECTORS = [
    # integers and the other scalars
    (0, "0"),
    (-5, "-5"),
    (9223372036854775807, "9223372036854775807"),
    (True, "true"),
    (False, "false"),
    (None, "null"),
    # strings: quoted, no spaces
    ("1", '"1"'),
    ("doc-1", '"doc-1"'),
    ("", '""'),
    # floats: ryu's layout, integral floats keep ".0", exponents without "+" or leading zeros
    (1.0, "1.0"),
    (-2.5, "-2.5"),
    (0.1, "0.1"),
    (-0.0, "-0.0"),
    (100.0, "100.0"),
    (123456.789, "123456.789"),
    (1e15, "1000000000000000.0"),  # 16 digits before the point: still plain
    (9007199254740992.0, "9007199254740992.0"),
    (1e16, "1e16"),  # Python writes 1e+16
    (2.5e16, "2.5e16"),
    (1e21, "1e21"),
    (1e100, "1e100"),
    (12345678901234567890.0, "1.2345678901234567e19"),
    (1.7976931348623157e308, "1.7976931348623157e308"),
    (0.00001, "0.00001"),  # Python writes 1e-05
    (1.5e-5, "0.000015"),
    (0.000123, "0.000123"),
    (1e-6, "1e-6"),  # Python writes 1e-06
    (1.5e-7, "1.5e-7"),  # Python writes 1.5e-07
    (-1.5e-7, "-1.5e-7"),
    (5e-324, "5e-324"),
    # arrays and objects: compact, keys sorted by code point (= UTF-8 byte order), at every depth
    ([], "[]"),
    ({}, "{}"),
    ([1, "a", None, 2.0], '[1,"a",null,2.0]'),
    (
        {"b": [1, {"z": None, "a": True}], "a": "x", "é": 1, "Z": 2},
        '{"Z":2,"a":"x","b":[1,{"a":true,"z":null}],"é":1}',
    ),
    ({"v": 1e16, "u": [1.5e-7]}, '{"u":[1.5e-7],"v":1e16}'),
    # non-ASCII kept as UTF-8, astral characters included (no surrogate escapes)
    ("héllo wörld 日本 🎉", '"héllo wörld 日本 🎉"'),
    # escapes: the two-character forms where JSON has one, else \u00XX with lower-case hex; DEL and "/" as is
    ("a\nb\tc", '"a\\nb\\tc"'),
    ("\x00\x01\x08\x0c\r\x1f\x7f/", '"\\u0000\\u0001\\b\\f\\r\\u001f\x7f/"'),
    ('say "hi" \\ now', '"say \\"hi\\" \\\\ now"'),
    ({"k\n": "\x1b"}, '{"k\\n":"\\u001b"}'),
]


@pytest.mark.parametrize(("value", "serde_text"), VECTORS, ids=[repr(v[0])[:40] for v in VECTORS])
def test_source_uuid_hashes_the_serde_json_text(value: object, serde_text: str) -> None:
    assert compact_json(value) == serde_text
    assert str(source_uuid(value)) == md5_uuid(serde_text)


def test_one_and_the_string_one_are_different_documents() -> None:
    # K8
    assert source_uuid(1) != source_uuid("1")
    assert source_uuid(1) != source_uuid(1.0)


def test_object_key_order_does_not_change_the_uuid() -> None:
    assert source_uuid({"a": 1, "b": {"d": 2, "c": 3}}) == source_uuid({"b": {"c": 3, "d": 2}, "a": 1})


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {"id": 1, "x": {1, 2}}, [1, object()]])
def test_values_that_are_not_json_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        compact_json(value)


def test_a_lone_surrogate_is_not_a_json_string() -> None:
    # Python lets a str hold one; UTF-8, serde_json and jsonb do not.
    with pytest.raises(ValidationError):
        source_uuid("a\ud800b")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    # NaN and the infinities are not JSON: jsonb rejects them, and as ids they would all hash like null.
    with pytest.raises(ValidationError):
        compact_json({"id": 1, "x": value})


def test_non_string_object_keys_are_refused() -> None:
    # JSON object keys are strings; {"id": 1, 2: "x"} is not a JSON object.
    with pytest.raises(ValidationError):
        compact_json({"id": 1, 2: "x"})


def test_version_lists_every_top_level_key_with_the_md5_of_its_compact_json() -> None:
    document = {
        "id": 5,
        "text": "héllo",
        "meta": {"z": 1, "a": [1.5, None]},
        "n": 1e16,
        "flag": False,
    }
    stamped = version(document, 1_700_000_000_123)
    expected_texts = {
        "id": "5",
        "text": '"héllo"',
        "meta": '{"a":[1.5,null],"z":1}',
        "n": "1e16",
        "flag": "false",
    }
    assert stamped == {
        key: {"last_updated": 1_700_000_000_123, "md5": hashlib.md5(text.encode()).hexdigest()}
        for key, text in expected_texts.items()
    }
    assert list(stamped) == list(document)


def test_version_of_an_empty_document_is_empty() -> None:
    assert version({}, 1) == {}
