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


def slotgen(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTGEN_", "FEATURE_SLOTGEN", "OPENAI_"))}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "120"})
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "slotgen_ops", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, input=stdin if stdin is not None else "", timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(run: Run, code: int) -> None:
    assert run.code == code, (run.code, run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
