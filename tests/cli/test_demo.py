"""`make demo` runs `slotgen demo`: the whole staging walk end to end, every command's exit code as scripted."""

from __future__ import annotations

import re

from .helpers import slotgen


def test_the_demo_walks_staging_to_five_percent_and_back_with_every_exit_code_as_expected():
    run = slotgen("demo")
    assert run.code == 0, run.stdout[-3000:] + run.stderr
    text = " ".join(run.stdout.split())
    assert "every exit code as expected" in text
    assert "unexpected exit" not in text and "SOMETHING WAS UNEXPECTED" not in text
    assert "Traceback" not in run.stdout + run.stderr and "internal error" not in text
    # The walk reached 5% live, a failed check rolled it back (exit 1, kill-switch engaged), then a step down.
    assert "SLOTGEN_AI_ROLLOUT_PERCENT: 1 -> 5" in text
    assert "(exit 1)" in text and "kill-switch engaged" in text
    assert "SLOTGEN_AI_ROLLOUT_PERCENT: 5 -> 1" in text
    assert re.search(r"valid: \d+ entries, chain, signatures and controls agree", text)


def test_an_unexpected_exit_marks_the_walk_failed(tmp_path):
    """The demo's summary comes from the walk's own record of exit codes, not a constant."""
    from rich.console import Console

    from slotgen_ops.cli.demo import _Walk
    from .helpers import clean_env

    out = Console(file=open(tmp_path / "out.txt", "w"), width=100)
    walk = _Walk(out, clean_env(), tmp_path, tmp_path)
    walk.run(["--version"], expect=0, show=False)
    assert walk.ok and walk.commands == 1
    walk.run(["--version"], expect=3, show=False)
    assert not walk.ok and walk.commands == 2
    out.file.close()
    assert "unexpected exit 0 (expected 3)" in (tmp_path / "out.txt").read_text()
