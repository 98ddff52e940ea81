"""Canonical JSON (audit/canonical.py): the exact bytes, the exact refusals, and the path each refusal names.

The audit hash chain is computed over these bytes, so a change in any of them
(key order, separators, escaping) or in what is refused is a change of format.
"""

from __future__ import annotations

import enum
import hashlib

import pytest

from slotgen_ops.audit.canonical import UNHASHED, canonical_bytes, entry_hash, parse_canonical, parse_entry


class Level(enum.IntEnum):
    LOW = 1


class Name(str):
    pass


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- canonical_bytes ---------------------------------------------------------------


def test_bytes_are_sorted_compact_utf8() -> None:
    value = {"b": 1, "a": [True, False, None, "é", -3, 0], "c": {"z": "", "y": []}, "é": {}}
    assert canonical_bytes(value) == '{"a":[true,false,null,"é",-3,0],"b":1,"c":{"y":[],"z":""},"é":{}}'.encode()


@pytest.mark.parametrize("value", [None, True, False, 0, 7, -1, 10**30, "", "x", [], {}])
def test_scalars_and_empty_containers_are_accepted(value: object) -> None:
    assert canonical_bytes(value) == canonical_bytes([value])[1:-1]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "$: float 1.5 is not allowed in canonical JSON (use int or str)"),
        ({"a": [0, {"b": 2.0}]}, "$.a[1].b: float 2.0 is not allowed in canonical JSON (use int or str)"),
        ([1, [2, float("nan")]], "$[1][1]: float nan is not allowed in canonical JSON (use int or str)"),
        ({"k": {3: "v"}}, "$.k: key 3 is not a string"),
        ({"k": {Name("n"): 1}}, "$.k: key 'n' is not a string"),
        ({"a": "\ud800"}, "$.a: string is not valid Unicode (surrogates not allowed)"),
        ({"\udfff": 1}, "$.\udfff: string is not valid Unicode (surrogates not allowed)"),
        ("\ud800", "$: string is not valid Unicode (surrogates not allowed)"),
        ({"t": (1, 2)}, "$.t: tuple is not allowed in canonical JSON"),
        ([{1, 2}], "$[0]: set is not allowed in canonical JSON"),
        ({"b": b"x"}, "$.b: bytes is not allowed in canonical JSON"),
        ({"e": Level.LOW}, "$.e: Level is not allowed in canonical JSON"),
        ({"s": Name("n")}, "$.s: Name is not allowed in canonical JSON"),
    ],
)
def test_refusals_name_the_path(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        canonical_bytes(value)
    assert str(caught.value) == message


def test_first_bad_member_in_list_order_is_named() -> None:
    with pytest.raises(ValueError) as caught:
        canonical_bytes([0, 1, 2.5, "ok", 3.5])
    assert str(caught.value).startswith("$[2]: ")


# -- entry_hash ----------------------------------------------------------------------


def test_entry_hash_leaves_out_hash_and_signature_only() -> None:
    assert UNHASHED == ("hash", "signature")
    body = {"a": 1, "hashes": 2, "signatures": 3, "z": None}
    expected = sha(canonical_bytes(body))
    assert entry_hash(body) == expected
    assert entry_hash({**body, "hash": "h", "signature": {"sig": "s"}}) == expected
    assert entry_hash({**body, "hash": "h"}) == expected
    assert entry_hash({**body, "extra": 0}) != expected


# -- parse_canonical -------------------------------------------------------------


def test_parse_canonical_returns_the_value() -> None:
    line = '{"a":[1,"é",null,true],"b":{}}'.encode()
    assert parse_canonical(line) == {"a": [1, "é", None, True], "b": {}}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"a":1.0}', "number 1.0 is not an integer: floats are not canonical"),
        (b'{"a":1e5}', "number 1e5 is not an integer: floats are not canonical"),
        (b'{"a":NaN}', "number NaN is not an integer: floats are not canonical"),
        (b'[-Infinity]', "number -Infinity is not an integer: floats are not canonical"),
        (b'{"a":\xff}', "not UTF-8 (invalid start byte)"),
        (b'{"a":', "not JSON (Expecting value at column 6)"),
        (b'{"a":1} x', "not JSON (Extra data at column 9)"),
        (b'"\\ud800"', "string is not valid Unicode"),
        (b'{"b":1,"a":2}', "not in canonical form (edited by hand?)"),
        (b'{"a": 1}', "not in canonical form (edited by hand?)"),
        (b'{"a":"\\u00e9"}', "not in canonical form (edited by hand?)"),
        (b'{"a":1,"a":1}', "not in canonical form (edited by hand?)"),
        (b'{"a":1}\n', "not in canonical form (edited by hand?)"),
    ],
)
def test_parse_canonical_refusals(line: bytes, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_canonical(line)
    assert str(caught.value) == message


def test_deep_nesting_is_refused_not_a_crash() -> None:
    line = b"[" * 100_000 + b"]" * 100_000
    for parse in (parse_canonical, parse_entry):
        with pytest.raises(ValueError) as caught:
            parse(line)
        assert str(caught.value) == "not an entry (nested too deeply)"


# -- parse_entry -------------------------------------------------------------------


ENTRIES = [
    {"hash": "h"},
    {"hash": "h", "signature": None},
    {"a": 1, "hash": "h"},
    {"hash": "h", "i": 2},
    {"hash": "h", "z": 3},
    {"a": 1, "hash": "h", "i": [2], "signature": {"k": "v"}, "z": "é"},
    {"a": 1, "hash": "h", "signature": "s"},
    {"hash": "h", "signature": "s", "t": 1},
    {"hash": "h", "hasha": 1, "signaturd": 2, "signaturea": 3, "hasg": 4},
    {"a": {"hash": "inner", "signature": "inner"}, "hash": "", "s": None},
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_parse_entry_returns_entry_and_hash_without_hash_and_signature(entry: dict[str, object]) -> None:
    line = canonical_bytes(entry)
    body = {k: v for k, v in entry.items() if k not in ("hash", "signature")}
    assert parse_entry(line) == (entry, sha(canonical_bytes(body)))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[1]", "not a JSON object"),
        (b'"hash"', "not a JSON object"),
        (b"{}", "hash is missing or not a string"),
        (b'{"a":1}', "hash is missing or not a string"),
        (b'{"hash":1}', "hash is missing or not a string"),
        (b'{"hash":null}', "hash is missing or not a string"),
        (b'{"hash":"h","s":1.5}', "number 1.5 is not an integer: floats are not canonical"),
        (b'{"hash":"h","s":"\\udc00"}', "string is not valid Unicode"),
        (b'{"hash":"\\udc00"}', "string is not valid Unicode"),
        (b'{"hash":"h","signature":"\\udc00"}', "string is not valid Unicode"),
        (b'{"hash":"h","a":1}', "not in canonical form (edited by hand?)"),
        (b'{"signature":1,"hash":"h"}', "not in canonical form (edited by hand?)"),
        (b'{"hash":"h","z":1,"signature":1}', "not in canonical form (edited by hand?)"),
        (b'{"hash": "h"}', "not in canonical form (edited by hand?)"),
        (b'{"hash":"h","hash":"h"}', "not in canonical form (edited by hand?)"),
        (b'{"hash":"h","signature":1,"signature":1}', "not in canonical form (edited by hand?)"),
        (b'{"a":1,"a":1,"hash":"h"}', "not in canonical form (edited by hand?)"),
        (b'{"hash":"h"}\n', "not in canonical form (edited by hand?)"),
        (b'{"hash":"h",}', "not JSON (Expecting property name enclosed in double quotes at column 13)"),
    ],
)
def test_parse_entry_refusals(line: bytes, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_entry(line)
    assert str(caught.value) == message
