"""Reading the allowlist file the runtime is pointed at. Fails closed, never raises."""

from __future__ import annotations

import json
from pathlib import Path

from ..contract import Allowlist, AllowlistInvalid, AllowlistUnavailable, parse_allowlist


def load_allowlist(path: str | None, base: Path | None = None) -> Allowlist | AllowlistUnavailable:
    """The allowlist at `path` (relative paths resolve against `base`), or why not.

    Missing, unreadable, not JSON or schema-invalid: AllowlistUnavailable, so
    every job is NOT_ALLOWLISTED (SPEC section 1).
    """
    if not path:
        return AllowlistUnavailable("SLOTGEN_AI_ALLOWLIST_PATH is unset")
    file = Path(path)
    if base is not None and not file.is_absolute():
        file = base / file
    try:
        text = _read_bounded(file)
    except FileNotFoundError:
        return AllowlistUnavailable(f"{path}: file not found")
    except (OSError, UnicodeDecodeError) as exc:
        return AllowlistUnavailable(f"{path}: unreadable ({exc.__class__.__name__}"
                                    + (f": {exc.args[0]}" if isinstance(exc, _NotAFile) else "") + ")")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return AllowlistUnavailable(f"{path}: not JSON ({exc.__class__.__name__ if isinstance(exc, RecursionError) else exc})")
    try:
        return parse_allowlist(doc)
    except AllowlistInvalid as exc:
        return AllowlistUnavailable(f"{path}: {exc}")


#: An allowlist is a few rules; a file past this is not one (and is never read whole).
ALLOWLIST_BOUND = 4 << 20


class _NotAFile(OSError):
    """Not a regular file within ALLOWLIST_BOUND (a FIFO, a device, a directory, a huge file)."""


def _read_bounded(file: Path) -> str:
    """The file's text, read without blocking and within its bound (`files.atomic.read_bounded`): the runtime
    never waits on a FIFO nor reads /dev/zero without end (SPEC section 14); such a path fails closed like any
    unreadable one, as _NotAFile."""
    import errno

    from ..files.atomic import UnsafeFile, read_bounded

    try:
        data = read_bounded(file, ALLOWLIST_BOUND)
    except UnsafeFile as exc:
        raise _NotAFile(f"over {ALLOWLIST_BOUND} bytes" if exc.errno == errno.EFBIG else "not a regular file") from None
    return data.decode("utf-8")


def read_allowlist_strict(path: Path) -> Allowlist:
    """For commands that take an allowlist as input (set, init): raise on any problem."""
    from ..errors import BadInput

    state = load_allowlist(str(path))
    if isinstance(state, AllowlistUnavailable):
        raise BadInput(f"allowlist {state.reason}")
    return state
