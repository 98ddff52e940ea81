"""The README's walk-through is what the commands print today: tools/walkthrough.py runs every command of it
for real, in a fresh workspace against the shipped endpoint, and compares (approval ids, timings and times
masked). A change to any command's output fails here until the README is regenerated
(`.venv/bin/python tools/walkthrough.py`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_walkthrough_matches_a_fresh_run():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "walkthrough.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    assert "matches a fresh run" in run.stdout


def test_the_check_can_fail(tmp_path):
    """masked() keeps what matters: a changed word in a command's output is a difference."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import walkthrough
    finally:
        sys.path.pop(0)
    a = "ok: step 1 (kill-switch-on): SLOTGEN_AI_KILL=true verified, recorded and applied (audit seq 2)"
    assert walkthrough.masked(a) != walkthrough.masked(a.replace("seq 2", "seq 3"))
    assert walkthrough.masked("approval id: apv-7b0c2fe268") == walkthrough.masked("approval id: apv-19f763807a")
    assert walkthrough.masked("engaged 29.616 ms after") == walkthrough.masked("engaged 1.8 ms after")


def test_a_line_wrapped_at_another_word_still_matches_but_a_changed_word_does_not():
    """A timing with more digits (a slower machine) moves a wrap; that is not a difference, a word is."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import walkthrough
    finally:
        sys.path.pop(0)
    readme = "rollback: read back 3.1 ms after start; cause:\nthe endpoint answered HTTP 500\n"
    slower = "rollback: read back 13.125 ms after start; cause: the\nendpoint answered HTTP 500\n"
    assert walkthrough.matches(readme, slower)
    assert not walkthrough.matches(readme, slower.replace("HTTP 500", "HTTP 502"))
    assert not walkthrough.matches(readme, slower.replace("cause: the", "cause:"))
