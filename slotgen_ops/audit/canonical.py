"""Canonical JSON serialisation: the bytes the audit hash chain is computed over.

One value has exactly one serialisation: keys sorted, no whitespace, UTF-8,
no ASCII escaping. Floats are refused everywhere, because their text form
(``1e16`` vs ``1e+16``, ``0.1`` round-tripping) differs between languages and
versions, and a hash that depends on float formatting cannot be re-verified by
another runtime. Only ``dict`` (string keys), ``list``, ``str``, ``int``,
``bool`` and ``None`` are accepted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["UNHASHED", "canonical_bytes", "entry_hash", "parse_canonical", "parse_entry"]


def canonical_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` canonically; ``ValueError`` names the first bad path.

    >>> canonical_bytes({"b": 1, "a": [True, None, "é"]})
    b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
    """
    _check(obj, "$")
    return _dumps(obj)


#: The members an entry's hash does not cover: the hash itself, and the signature over it (SPEC section 7).
UNHASHED = ("hash", "signature")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical bytes of ``entry`` without its ``hash`` and ``signature`` keys."""
    body = {k: v for k, v in entry.items() if k not in UNHASHED}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


# Built once: json.dumps(obj, **options) builds an encoder per call, which
# dominates the cost of verifying a long log. allow_nan=False is belt and
# braces: _check already refused every float.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


def _check(obj: Any, path: str) -> None:
    """Walk ``obj`` and refuse anything outside the canonical subset."""
    # bool is a subclass of int: accepted as itself. Exact type checks keep
    # int/str subclasses (IntEnum, StrEnum) out: their json text is not stable.
    kind = type(obj)
    if obj is None or kind is bool or kind is int:
        return
    if kind is str:
        _check_text(obj, path)
        return
    if kind is float:
        raise ValueError(f"{path}: float {obj!r} is not allowed in canonical JSON (use int or str)")
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str:
                raise ValueError(f"{path}: key {key!r} is not a string")
            _check_text(key, f"{path}.{key}")
            _check(value, f"{path}.{key}")
        return
    if kind is list:
        for i, value in enumerate(obj):
            _check(value, f"{path}[{i}]")
        return
    raise ValueError(f"{path}: {kind.__name__} is not allowed in canonical JSON")


def _check_text(text: str, path: str) -> None:
    # A lone surrogate cannot be encoded as UTF-8 and would make the hash
    # depend on an error handler; refuse it here with a path instead.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{path}: string is not valid Unicode ({exc.reason})") from None


def _refuse_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer: floats are not canonical")


# One decoder, built once: json.loads(..., parse_float=...) would build a new
# decoder per call, which dominates the cost of verifying a long log.
_DECODER = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_float)


def _parse(line: bytes) -> Any:
    try:
        return _DECODER.decode(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not an entry (nested too deeply)") from None


def parse_canonical(line: bytes) -> Any:
    """Parse one serialised value and insist it is in canonical form.

    ``ValueError`` if ``line`` is not JSON, holds a float/NaN/Infinity, a lone
    surrogate, a duplicated key, or any whitespace/ordering/escaping that
    :func:`canonical_bytes` would not have produced. Used by the audit reader:
    two byte strings that parse to the same value would otherwise both match
    one hash, so a hand-edited line could carry different text than was hashed.
    """
    value = _parse(line)
    try:
        again = _dumps(value)
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode") from None
    if again != line:
        raise ValueError("not in canonical form (edited by hand?)")
    return value


def parse_entry(line: bytes) -> tuple[dict[str, Any], str]:
    """Parse a canonical entry line (no newline); return it and its recomputed hash.

    Same checks as :func:`parse_canonical`, plus: an object whose ``hash`` is
    a string. The returned hash is :func:`entry_hash` of the entry (without
    ``hash`` and ``signature``); it is not compared with the stored ``hash`` here.
    """
    entry = _parse(line)
    if type(entry) is not dict:
        raise ValueError("not a JSON object")
    stored = entry.get("hash")
    if type(stored) is not str:
        raise ValueError("hash is missing or not a string")
    # Sorted keys make the canonical text: the members below "hash", the hash
    # member, those between "hash" and "signature", the signature member, the
    # members above it. Serialising the three runs of other members once gives
    # both the bytes to hash and the bytes to compare with the line: half the
    # work of serialising the entry twice.
    try:
        runs = (_dumps({k: v for k, v in entry.items() if k < "hash"})[1:-1],
                _dumps({k: v for k, v in entry.items() if "hash" < k < "signature"})[1:-1],
                _dumps({k: v for k, v in entry.items() if k > "signature"})[1:-1])
        member = b'"hash":' + _dumps(stored)
        signed = b'"signature":' + _dumps(entry["signature"]) if "signature" in entry else b""
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode") from None
    if b"{" + b",".join(part for part in (runs[0], member, runs[1], signed, runs[2]) if part) + b"}" != line:
        raise ValueError("not in canonical form (edited by hand?)")
    body = b"{" + b",".join(part for part in runs if part) + b"}"
    return entry, hashlib.sha256(body).hexdigest()

