"""The workspace's configuration files as frozen dataclasses, checked field by field with the standard library.

Every command reads slotgen.yaml, operators.yaml and the runbook; `slotgen status` is the command an operator
runs most, and building pydantic models for three small files cost more than the rest of a status. So the
configuration is checked here instead, with the same rules: unknown keys refused, types strict (a string is
not a number, a number is not a string, a boolean is neither), each problem one `field.path: what` part of a
single line naming the file (``yamlfile.load_yaml_model``).

A model is a frozen dataclass with a ``FIELDS`` mapping of ``name -> Field`` in declaration order; ``build``
turns a YAML document into one, or raises ``Invalid`` with every problem found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()


class Invalid(ValueError):
    """A document that does not fit its model: every problem, each as `location: what`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Field:
    """One key of a model: how its value is read (a ``Reader``), and its default."""

    read: Callable[[Any, str, list[str]], Any]
    default: Any = REQUIRED


_FAILED = object()  # a value that did not read: its problem is already recorded


def _where(loc: str) -> str:
    return loc or "(top)"


def _kind(value: Any) -> str:
    return "null" if value is None else {"bool": "a boolean", "int": "a number", "float": "a number", "str": "a string",
                                         "list": "a list", "dict": "a mapping"}.get(type(value).__name__,
                                                                                   type(value).__name__)


class Reader:
    """Reads one value: `reader(value, loc, problems)` returns it (converted) or records why not and returns
    ``_FAILED``. Readers are objects, not closures, so that what they check stays inspectable (and testable)."""

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        raise NotImplementedError


class Text(Reader):
    """A string (not a number or a boolean), optionally non-empty or matching `pattern` in full."""

    def __init__(self, *, min_length: int = 0, pattern: str | None = None) -> None:
        self.min_length = min_length
        self.pattern = pattern
        self.compiled = re.compile(pattern) if pattern else None

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if not isinstance(value, str):
            problems.append(f"{_where(loc)}: must be a string, not {_kind(value)}")
            return _FAILED
        if len(value) < self.min_length:
            problems.append(f"{_where(loc)}: must not be empty")
            return _FAILED
        if self.compiled is not None and not self.compiled.fullmatch(value):
            problems.append(f"{_where(loc)}: {value!r} must match {self.pattern}")
            return _FAILED
        return value


class Integer(Reader):
    """A whole number written as one (not a string of digits, not a boolean), within the bounds."""

    def __init__(self, *, ge: int | None = None, le: int | None = None) -> None:
        self.ge = ge
        self.le = le

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{_where(loc)}: must be a whole number, not {_kind(value)}")
            return _FAILED
        if (self.ge is not None and value < self.ge) or (self.le is not None and value > self.le):
            problems.append(f"{_where(loc)}: {value} is out of range ({_bounds(self.ge, self.le)})")
            return _FAILED
        return value


class Number(Reader):
    """A number, whole or not (not a string, not a boolean, not NaN), within the bounds; read as a float."""

    def __init__(self, *, gt: float | None = None, le: float | None = None) -> None:
        self.gt = gt
        self.le = le

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            problems.append(f"{_where(loc)}: must be a number, not {_kind(value)}")
            return _FAILED
        if (self.gt is not None and not value > self.gt) or (self.le is not None and not value <= self.le):
            problems.append(f"{_where(loc)}: {value} is out of range ({_bounds(None, self.le, self.gt)})")
            return _FAILED
        return float(value)


def _bounds(ge: float | None, le: float | None, gt: float | None = None) -> str:
    low = f"more than {gt}" if gt is not None else (f"at least {ge}" if ge is not None else "")
    high = f"at most {le}" if le is not None else ""
    return " and ".join(p for p in (low, high) if p)


class OneOf(Reader):
    """Exactly one of `choices` (compared by value and type: the string 'true' is not True, 1 is not True)."""

    def __init__(self, *choices: Any) -> None:
        self.choices = choices

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if not any(type(value) is type(c) and value == c for c in self.choices):
            shown = ", ".join("null" if c is None else repr(c) for c in self.choices)
            problems.append(f"{_where(loc)}: must be one of {shown}, not {value!r}")
            return _FAILED
        return value


class Optional(Reader):
    """null, or what `inner` reads."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        return None if value is None else self.inner(value, loc, problems)


class Items(Reader):
    """A list of what `inner` reads, as a tuple."""

    def __init__(self, inner: Reader, *, min_length: int = 0) -> None:
        self.inner = inner
        self.min_length = min_length

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if not isinstance(value, list):
            problems.append(f"{_where(loc)}: must be a list, not {_kind(value)}")
            return _FAILED
        if len(value) < self.min_length:
            problems.append(f"{_where(loc)}: needs at least {self.min_length} item{'s' if self.min_length != 1 else ''}")
            return _FAILED
        out = tuple(self.inner(v, f"{loc}.{i}", problems) for i, v in enumerate(value))
        return _FAILED if any(v is _FAILED for v in out) else out


class Mapping(Reader):
    """A mapping of string keys (each read by `keys` when given) to what `inner` reads, as a dict."""

    def __init__(self, inner: Reader, *, keys: Reader | None = None) -> None:
        self.inner = inner
        self.keys = keys

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        if not isinstance(value, dict):
            problems.append(f"{_where(loc)}: must be a mapping, not {_kind(value)}")
            return _FAILED
        out = {}
        for key, item in value.items():
            where = f"{loc}.{key}" if loc else str(key)
            if not isinstance(key, str):
                problems.append(f"{where}: the key must be a string, not {_kind(key)} (quote it)")
                out[key] = _FAILED
            elif self.keys is not None and self.keys(key, where, problems) is _FAILED:
                out[key] = _FAILED
            else:
                out[key] = self.inner(item, where, problems)
        return _FAILED if any(v is _FAILED for v in out.values()) else out


class Model(Reader):
    """A nested model: a mapping read by `build`."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        return _build(self.cls, value, loc, problems)


class Checked(Reader):
    """What `inner` reads, then `check(value)`, which returns the value to keep or raises ValueError(why)."""

    def __init__(self, inner: Reader, check: Callable[[Any], Any]) -> None:
        self.inner = inner
        self.check = check

    def __call__(self, value: Any, loc: str, problems: list[str]) -> Any:
        out = self.inner(value, loc, problems)
        if out is _FAILED:
            return out
        try:
            return self.check(out)
        except ValueError as exc:
            problems.append(f"{_where(loc)}: {exc}")
            return _FAILED


def _build(cls: type, doc: Any, loc: str, problems: list[str]) -> Any:
    if not isinstance(doc, dict):
        problems.append(f"{_where(loc)}: must be a mapping, not {_kind(doc)}")
        return _FAILED
    fields: dict[str, Field] = cls.FIELDS
    before = len(problems)
    for key in doc:
        if key not in fields:
            problems.append(f"{loc + '.' if loc else ''}{key}: unknown key")
    values = {}
    for name, spec in fields.items():
        where = f"{loc}.{name}" if loc else name
        if name in doc:
            values[name] = spec.read(doc[name], where, problems)
        elif spec.default is REQUIRED:
            problems.append(f"{where}: required")
        else:
            values[name] = spec.default
    if len(problems) > before:
        return _FAILED
    return cls(**values)


def build(cls: type, doc: Any) -> Any:
    """`doc` (parsed YAML) as a `cls`; Invalid naming every field that does not fit."""
    problems: list[str] = []
    out = _build(cls, doc, "", problems)
    if out is _FAILED:  # exactly when a problem was recorded
        raise Invalid(problems)
    return out
