"""Run the real `slotgen` in a child process, as an operator (or CI) would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


FAULTWRAP = str(Path(__file__).resolve().parent.parent / "faultwrap.py")


def command(*args: str, fault: list[str] | None = None) -> list[str]:
    """The argv of a real `slotgen` run; with `fault`, through the test-only fault launcher."""
    if fault is not None:
        return [sys.executable, FAULTWRAP, *fault, "--", *args]
    return [sys.executable, "-m", "slotgen_ops", *args]


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTGEN_", "FEATURE_SLOTGEN", "OPENAI_"))}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "120"})
    full_env.update(env or {})
    return full_env


def demo_key(args: tuple[str, ...] | list[str], cwd: Path | None, env: dict[str, str] | None) -> dict[str, str]:
    """The rehearsal key `slotgen init` wrote for the operator a command names, as SLOTGEN_SIGNING_KEY.

    Commands in tests act as the demo operators; each signs with that operator's demo key unless the
    test passes --key or sets SLOTGEN_SIGNING_KEY itself (even to "", to act without a key).
    """
    env = env or {}
    if "--key" in args or "SLOTGEN_SIGNING_KEY" in env:
        return {}
    args = list(args)
    operator = args[args.index("--operator") + 1] if "--operator" in args[:-1] else env.get("SLOTGEN_OPERATOR")
    if not operator:
        return {}
    if "--workspace" in args[:-1]:
        root = Path(args[args.index("--workspace") + 1])
        if not root.is_absolute() and cwd is not None:
            root = Path(cwd) / root
    elif env.get("SLOTGEN_WORKSPACE"):
        root = Path(env["SLOTGEN_WORKSPACE"])
    else:
        root = Path(cwd or Path.cwd())
    for base in (root, *root.parents):
        if (base / "slotgen.yaml").is_file():
            key = base / "demo-keys" / operator
            return {"SLOTGEN_SIGNING_KEY": str(key)} if key.is_file() else {}
    return {}


def slotgen(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None,
            fault: list[str] | None = None) -> Run:
    full = {**(env or {}), **demo_key(args, cwd, env)}
    proc = subprocess.run(command(*args, fault=fault), cwd=cwd, env=clean_env(full), capture_output=True,
                          text=True, input=stdin if stdin is not None else "", timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(run: Run, code: int) -> None:
    assert run.code == code, (run.code, run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
