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
        if name in ("--env", "-e", "--workspace", "-w", "--controls"):
            options[name.lstrip("-")[0]] = value if eq else next(args, "")
    from slotgen_ops import STARTED
    from slotgen_ops.policy.paths import ENV_NAME_RE, workspace_root

    if options.get("c"):  # --controls FILE: that env-file, with no workspace at all
        from slotgen_ops.changes.controls_file import KillSwitchNotEngaged, engage_kill_switch

        from slotgen_ops.policy.paths import env_name_for_controls

        try:
            values, how, old = engage_kill_switch(Path(options["c"]), env_name_for_controls(options["c"],
                                                                                            options.get("e")))
        except (KillSwitchNotEngaged, OSError) as exc:
            return {"engaged": False, "problem": str(exc)}
        return {"engaged": True, "values": values, "written": how, "old": old, "controls": options["c"],
                "engagedMs": round((time.perf_counter() - STARTED) * 1000, 3)}

    env = options.get("e", "")
    root = workspace_root(Path(options["w"]) if options.get("w") else None)
    if root is None or not ENV_NAME_RE.match(env):
        return None
    controls = root / "environments" / f"{env}.env"
    if not (controls.exists() or controls.is_symlink()):
        # A database-backed environment: the env-files `slotgen render` keeps on this host, if any, then the
        # environment's row itself (libpq through ctypes: no psycopg, no CLI yet).
        from slotgen_ops.changes.hostfiles import engage as engage_host

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
    from slotgen_ops.changes.controls_file import KillSwitchNotEngaged, engage_kill_switch

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
    from slotgen_ops.policy.paths import state_url_in_files

    return state_url_in_files(root)


#: `status` and `next` options the fast path understands; anything else goes to the full CLI.
_VIEW_OPTIONS = {"--env": "env", "-e": "env", "--workspace": "workspace", "-w": "workspace"}


def fast_view(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """`status`/`next` with only --env, --workspace and --json, each at most once: (command, options).

    The command an operator runs most then starts without the CLI framework (typer imports pydantic and
    coerces every parameter through it: most of a status's time). Any other form (help, a typo, an option
    given twice, a short option glued to its value) returns None and the full CLI parses it, with its
    usual errors; both run the same code (``status_view``) and print the same bytes (a test compares them).
    """
    if not argv or argv[0] not in ("status", "next"):
        return None
    options: dict[str, Any] = {}
    tokens = argv[1:]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name == "--json" and not eq:
            key, found = "json", True
        elif name in _VIEW_OPTIONS:
            if not eq:
                index += 1
                if index >= len(tokens):
                    return None
                value = tokens[index]
            if not value or value.startswith("-"):
                return None
            key, found = _VIEW_OPTIONS[name], value
        else:
            return None
        if key in options:
            return None
        options[key] = found
        index += 1
    if argv[0] == "next" and "env" not in options:
        return None
    return argv[0], options


def run_view(command: str, options: dict[str, Any]) -> None:
    """Run a fast-path `status`/`next` inside the same error boundary as the full CLI; exits."""
    from . import boundary
    from ..errors import SlotgenError
    from ..files.locking import set_wait_notice

    set_wait_notice(boundary.wait_notice)
    workspace = Path(options["workspace"]) if "workspace" in options else None
    try:
        from .status_view import run_next, run_status

        run = run_status if command == "status" else run_next
        code = run(options.get("env"), workspace, bool(options.get("json")))
        sys.stdout.flush()
    except SlotgenError as exc:
        boundary.fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        boundary.interrupted()
    except BrokenPipeError:
        boundary.reader_gone(sys.argv[1:])
    except Exception as exc:  # never a traceback for an operator
        boundary.unexpected(exc)
    sys.exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point.

    SIGTERM and SIGHUP (a dropped SSH session) behave like SIGINT from the first
    instruction on; an interrupt at any moment ends in one line and exit 130.
    """
    try:
        from .boundary import keep_interrupts  # an interrupt may land while this module loads
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted (SIGINT, SIGTERM or SIGHUP) before the command started; nothing changed\n")
        sys.exit(130)
    keep_interrupts()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    # slotgen uses no pydantic plugin; looking for them scans every installed package's entry points (about
    # 10 ms of every command). An operator who wants one can still set the variable.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        view = fast_view(sys.argv[1:])
        if view is not None:
            run_view(*view)
        early = early_rollback(sys.argv[1:])
        from .app import main as app_main

        app_main(early)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted (SIGINT, SIGTERM or SIGHUP) before the command started; nothing changed\n")
        sys.exit(130)
