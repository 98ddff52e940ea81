"""`make demo-team` (`slotgen demo --team`) runs end to end on a real PostgreSQL server it starts itself."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import slotgen  # noqa: E402


def test_the_team_demo_runs_and_never_prints_the_password():
    run = slotgen("demo", "--team")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    assert "every exit code as expected" in run.stdout
    assert "append-only: UPDATE refused" in " ".join(run.stdout.split())
    assert "valid: 6 entries" in run.stdout
    import re

    assert "postgresql://slotgen_admin@127.0.0.1" in run.stdout
    assert not re.search(r"postgres(ql)?://[^\s/@]*:[^\s/@]*@", run.stdout + run.stderr), "a URL with a password"
