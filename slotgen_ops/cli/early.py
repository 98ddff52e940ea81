"""What the entry point's kill-switch-first write did for this process (`entry.early_rollback`).

A module of its own so that the commands read it without importing the app that registers them.
"""

from __future__ import annotations

from typing import Any

EARLY: dict[str, Any] | None = None
