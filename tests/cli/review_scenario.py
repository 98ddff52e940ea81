"""A workspace with what an approver must be able to review (SPEC section 11): the runbook walked to live at 5,
a step down under an https decision record, a refusal (under a hostile one), a rollback by an operator no roster lists (with hostile
text in every field it records), an approval no change used, and a break-glass rollback not yet folded."""

from __future__ import annotations

import sys
from pathlib import Path

from .helpers import slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lock_holder import lock_held  # noqa: E402
from walked import API_KEY, walk  # noqa: E402

OPERATOR = "<script>alert(1)</script>"
REASON = '"><img src=x onerror=alert(3)>'
DR_TEXT = '"><img src=x onerror=alert(4)>'        # not a decision record: a rollback records it as given
DR_LINK = 'https://dr.example/"><svg/onload=alert(5)>'  # passes the decision-record pattern; no URL: never a link
DR_URL = "https://dr.example/decisions/7?team=ops&rung=1"  # a decision record that is a link
ENV = {"OPENAI_API_KEY": API_KEY}


def run(ws: Path, *args: str, code: int = 0):
    done = slotgen(*args, "--workspace", str(ws), env=ENV)
    assert done.code == code, (args, done.code, done.stdout, done.stderr)
    return done


def build_workspace(ws: Path, base_url: str) -> Path:
    walk(ws, 7, base_url)
    run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", DR_URL,
        "--operator", "oncall", "--yes")
    run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", DR_LINK,
        "--operator", OPERATOR, "--yes", code=3)
    run(ws, "rollback", "--env", "staging", "--reason", REASON, "--operator", OPERATOR, "--decision-record", DR_TEXT)
    run(ws, "approve", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-10",
        "--operator", "approver", "--yes")
    with lock_held(ws / "environments"):
        done = run(ws, "rollback", "--env", "staging", "--reason", "incident", "--operator", "oncall", "--json")
        assert done.json()["rollback"]["breakGlass"] is True
    return ws
