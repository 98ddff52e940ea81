"""The `slotgen` entry point: for a rollback, the kill-switch before anything else.

`slotgen rollback --env E` engages the kill-switch here, before the CLI
framework, pydantic or any configuration is imported (SPEC section 6: kill-
switch first). Only the environment's name and the workspace are read from
the command line; nothing here can refuse or fail the command: if this early
write cannot happen, the full command below tries again and reports (exit 5).
The full command then runs as always: it writes the kill-switch again (a
no-op), records who and why, and verifies.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def early_rollback(argv: list[str]) -> dict[str, Any] | None:
    """Engage the kill-switch if `argv` is a plain `rollback --env E`; what happened, or None."""
    if not argv or argv[0] != "rollback" or any(a in ("--dry-run", "--help", "-h") for a in argv):
        return None
    options: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in ("--env", "-e", "--workspace", "-w"):
            options[name.lstrip("-")[0]] = value if eq else next(args, "")
    from slotgen_ops import STARTED
    from slotgen_ops.ops.paths import ENV_NAME_RE, workspace_root

    env = options.get("e", "")
    root = workspace_root(Path(options["w"]) if options.get("w") else None)
    if root is None or not ENV_NAME_RE.match(env):
        return None
    controls = root / "environments" / f"{env}.env"
    if not (controls.exists() or controls.is_symlink()):
        # A database-backed environment: the env-files `slotgen render` keeps on this host, if any, then the
        # environment's row itself (libpq through ctypes: no psycopg, no CLI yet).
        from slotgen_ops.ops.hostfiles import engage as engage_host

        done = engage_host(root, env)
        here = ", ".join(str(p) for p, ok, _ in done if ok)
        url = _state_url(root)
        row = None
        if url:
            from slotgen_ops.store.pgfast import engage as engage_row

            try:
                row = engage_row(url, env)
            except Exception:  # noqa: BLE001 - a head start only: the rollback proper engages it regardless
                row = None
        ms = round((time.perf_counter() - STARTED) * 1000, 3)
        if row is not None:
            return {"engaged": True, "written": "the database" + (f" and {here}" if here else ""), "old": row[1],
                    "engagedMs": ms}
        if not here:
            return None
        return {"engaged": True, "host": True, "written": here, "engagedMs": ms, "old": None}
    from slotgen_ops.ops.controls_file import KillSwitchNotEngaged, engage_kill_switch

    try:
        values, how, old = engage_kill_switch(controls, env)  # signals deferred inside
    except (KillSwitchNotEngaged, OSError) as exc:
        return {"engaged": False, "problem": str(exc)}
    return {"engaged": True, "values": values, "written": how, "old": old,
            "engagedMs": round((time.perf_counter() - STARTED) * 1000, 3)}


def _state_url(root: Path) -> str | None:
    """Where a workspace keeps its environments, read without the CLI: $SLOTGEN_STATE_URL, else its files."""
    override = os.environ.get("SLOTGEN_STATE_URL")
    if override:
        return None if override == "files" else override
    from slotgen_ops.ops.paths import state_url_in_files

    return state_url_in_files(root)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point.

    SIGTERM and SIGHUP (a dropped SSH session) behave like SIGINT from the first
    instruction on; an interrupt at any moment ends in one line and exit 130.
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        early = early_rollback(sys.argv[1:])
        from .app import main as app_main

        app_main(early)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted (SIGINT, SIGTERM or SIGHUP) before the command started; nothing changed\n")
        sys.exit(130)
