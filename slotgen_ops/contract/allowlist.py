"""The versioned allowlist: parsed and matched without I/O (SPEC section 1).

A rule matches a job when each of its five fields equals the job's field, or
lists it. Exact strings only: no wildcards, no case folding, no trimming.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from operator import itemgetter
from typing import Any

from .job import json_type

RULE_FIELDS: tuple[str, ...] = ("kind", "subject", "level", "board", "specVersion")
_RULE_KEYS = frozenset(("id", "description", *RULE_FIELDS))
_key = itemgetter(*RULE_FIELDS)
_TOP_KEYS = frozenset(("schemaVersion", "version", "enabled", "rules", "description"))
# Rules are expanded into a set of exact 5-tuples for O(1) matching unless the
# expansion would be larger than this; then each rule is checked in turn.
_EXPANSION_LIMIT = 200_000


class AllowlistInvalid(ValueError):
    """The allowlist document breaks its schema; the message names the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    fields: tuple[frozenset[str], ...]  # in RULE_FIELDS order

    def matches(self, key: tuple[str, ...]) -> bool:
        return all(value in allowed for value, allowed in zip(key, self.fields))

    @property
    def cohort_size(self) -> int:
        """How many distinct (kind, subject, level, board, specVersion) it admits."""
        size = 1
        for allowed in self.fields:
            size *= len(allowed)
        return size


class Allowlist:
    """A parsed allowlist. `match(job)` returns the id of the first matching rule."""

    __slots__ = ("version", "enabled", "rules", "_index")

    def __init__(self, version: str, enabled: bool, rules: tuple[Rule, ...]) -> None:
        self.version = version
        self.enabled = enabled
        self.rules = rules
        index: dict[tuple[str, ...], str] | None = {}
        if sum(rule.cohort_size for rule in rules) <= _EXPANSION_LIMIT:
            for rule in reversed(rules):  # the first rule wins a shared key
                for key in product(*(sorted(f) for f in rule.fields)):
                    index[key] = rule.id
        else:
            index = None
        self._index = index

    @property
    def available(self) -> bool:
        return True

    @property
    def cohort_size(self) -> int:
        return sum(rule.cohort_size for rule in self.rules)

    def match(self, job: dict[str, Any]) -> str | None:
        """The id of the first rule matching the job, or None. Ignores `enabled`."""
        key = _key(job)
        if self._index is not None:
            return self._index.get(key)
        for rule in self.rules:
            if rule.matches(key):
                return rule.id
        return None


@dataclass(frozen=True, slots=True)
class AllowlistUnavailable:
    """No usable allowlist (unset, missing, unreadable, invalid): fails closed."""

    reason: str
    version: None = None
    enabled: bool = False

    @property
    def available(self) -> bool:
        return False

    def match(self, job: dict[str, Any]) -> None:
        return None


def parse_allowlist(doc: Any) -> Allowlist:
    """Check an allowlist document against its schema and compile it.

    Mirrors `schemas/allowlist.schema.json`; raises AllowlistInvalid naming the
    first failing field.
    """
    if type(doc) is not dict:
        raise AllowlistInvalid(f"(allowlist): must be a JSON object, got {json_type(doc)}")
    for key in doc:
        if key not in _TOP_KEYS:
            raise AllowlistInvalid(f"{key}: unknown field")
    for key in ("schemaVersion", "version", "enabled", "rules"):
        if key not in doc:
            raise AllowlistInvalid(f"{key}: required field is missing")
    schema_version = doc["schemaVersion"]
    if isinstance(schema_version, bool) or schema_version != 1:
        raise AllowlistInvalid(f"schemaVersion: must be 1, got {schema_version!r}")
    version = doc["version"]
    if type(version) is not str or not version:
        raise AllowlistInvalid("version: must be a non-empty string")
    if "description" in doc and type(doc["description"]) is not str:
        raise AllowlistInvalid("description: must be a string")
    enabled = doc["enabled"]
    if type(enabled) is not bool:
        raise AllowlistInvalid(f"enabled: must be true or false, got {json_type(enabled)}")
    rules_doc = doc["rules"]
    if type(rules_doc) is not list:
        raise AllowlistInvalid(f"rules: must be an array, got {json_type(rules_doc)}")
    rules = tuple(_parse_rule(i, r) for i, r in enumerate(rules_doc))
    return Allowlist(version=version, enabled=enabled, rules=rules)


def _parse_rule(index: int, doc: Any) -> Rule:
    where = f"rules[{index}]"
    if type(doc) is not dict:
        raise AllowlistInvalid(f"{where}: must be an object, got {json_type(doc)}")
    for key in doc:
        if key not in _RULE_KEYS:
            raise AllowlistInvalid(f"{where}.{key}: unknown field (no wildcards or extra keys)")
    rule_id = doc.get("id")
    if type(rule_id) is not str or not rule_id:
        raise AllowlistInvalid(f"{where}.id: must be a non-empty string")
    if "description" in doc and type(doc["description"]) is not str:
        raise AllowlistInvalid(f"{where}.description: must be a string")
    fields = []
    for name in RULE_FIELDS:
        if name not in doc:
            raise AllowlistInvalid(f"{where}.{name}: required field is missing")
        fields.append(_exact_strings(f"{where}.{name}", doc[name]))
    return Rule(id=rule_id, fields=tuple(fields))


def _exact_strings(where: str, value: Any) -> frozenset[str]:
    if type(value) is str:
        return frozenset((value,))
    if type(value) is list and value and all(type(v) is str for v in value):
        return frozenset(value)
    if type(value) is list and not value:
        raise AllowlistInvalid(f"{where}: must list at least one value")
    raise AllowlistInvalid(f"{where}: must be a string or a list of strings")

