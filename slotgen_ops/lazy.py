"""A package's public API, each name imported from its module when first used (PEP 562).

Importing one module of a package never imports the rest of it, so the
light commands (`status`, `next`, a rollback's early write) stay light
while every package still exports its API in `__all__`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["exports"]


def exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: `where` maps each exported name to the module defining it."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
