"""The runbook's rules on PostgreSQL, with every step taken alternately from two clones of one workspace
(issue 9): refusals, approvals bound to one change, a failed verification rolling back, re-entry after a
rollback, stepping down, and a policy file edited in one clone only. Real CLI, real database, real keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, slotgen  # noqa: E402

APPROVED = "allowlists/slot-generation-allowlist.v1.json"


class Team:
    """Clones a and b of one database-backed workspace; `turn` alternates between them."""

    def __init__(self, a: Path, b: Path, env: dict, server) -> None:
        self.sides = [a, b]
        self.env = env
        self.server = server
        self.n = 0

    def next_side(self) -> Path:
        ws = self.sides[self.n % 2]
        self.n += 1
        return ws

    def run(self, *args: str, who: str | None = None, ws: Path | None = None, dr: str | None = "DR-1"):
        ws = ws or self.next_side()
        extra = ["--operator", who, "--key", str(ws / "demo-keys" / who)] if who else []
        extra += ["--decision-record", dr] if dr else []
        return slotgen(*args, *extra, "--workspace", str(ws), env=self.env, cwd=ws)

    def ok(self, *args: str, **kw):
        r = self.run(*args, **kw)
        assert r.code == 0, (args, r.stderr)
        return r

    def approve(self, item: str) -> str:
        return self.ok("approve", "--env", "staging", item, "--yes", "--json", who="approver").json()["approvalId"]

    def walk(self, upto: int) -> None:
        steps = [
            lambda: self.ok("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--yes", who="owner"),
            lambda: self.ok("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--yes", who="oncall"),
            lambda: self.ok("set", "--env", "staging", f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED}", "--yes", who="owner"),
            lambda: self.ok("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", "--approval",
                            self.approve("SLOTGEN_AI_ROLLOUT_PERCENT=1"), who="oncall"),
            lambda: self.ok("verify", "--env", "staging", who="owner"),
            lambda: self.ok("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes", who="owner"),
            lambda: self.ok("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--yes", "--approval",
                            self.approve("SLOTGEN_AI_ROLLOUT_PERCENT=5"), who="oncall"),
        ]
        for step in steps[:upto]:
            step()

    def entries(self) -> list[dict]:
        out = self.ok("audit", "export", "--env", "staging", dr=None)
        return [json.loads(line) for line in out.stdout.splitlines()]

    def controls(self) -> dict:
        return self.ok("status", "--env", "staging", "--json", dr=None).json()["controls"]

    def verify_both(self) -> None:
        for ws in self.sides:
            assert self.run("audit", "verify", "--env", "staging", ws=ws, dr=None).code == 0


@pytest.fixture
def team(pg_team):
    return Team(*pg_team)


def test_every_kind_of_refusal_from_either_clone_is_recorded_for_both(team):
    team.walk(1)
    refusals = [
        (("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes"), "owner", "DR-1", "skip"),
        (("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes"), "owner",
         "DR-1", "combined"),
        (("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--yes"), "approver", "DR-1", "role"),
        (("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--yes"), "owner", None, "decision record"),
    ]
    for args, who, dr, why in refusals:
        r = team.run(*args, who=who, dr=dr)
        assert_one_line_error(r, 3)
    team.walk(0)
    team.ok("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--yes", who="oncall")
    team.ok("set", "--env", "staging", f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED}", "--yes", who="owner")
    jump = team.run("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--yes", who="oncall")
    assert_one_line_error(jump, 3)  # a ladder jump
    for ws in team.sides:
        refused = [e for e in team.run("audit", "export", "--env", "staging", ws=ws, dr=None).stdout.splitlines()
                   if json.loads(e)["action"] == "refused"]
        assert len(refused) == 5, f"{ws.name} sees every refusal"
    team.verify_both()


def test_an_approval_is_bound_single_use_and_travels_between_clones(team):
    team.walk(3)
    one = team.approve("SLOTGEN_AI_ROLLOUT_PERCENT=1")
    wrong = team.run("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--yes", "--approval", one, who="oncall")
    assert_one_line_error(wrong, 3)
    other_dr = team.run("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", "--approval", one,
                        who="oncall", dr="DR-2")
    assert_one_line_error(other_dr, 3)
    team.ok("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", "--approval", one, who="oncall")
    again = team.run("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", "--approval", one,
                     who="oncall")
    assert again.code == 3  # used: gone (and the step is done anyway)
    team.verify_both()


def test_a_failed_verification_rolls_back_for_every_clone(team):
    team.walk(5)
    team.server.set_mode("http500")
    r = team.run("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes", who="owner")
    assert r.code == 1, r.stderr
    team.server.set_mode("ok")
    for ws in team.sides:
        assert team.run("status", "--env", "staging", "--json", ws=ws, dr=None).json()["controls"][
            "SLOTGEN_AI_KILL"] == "true"
    actions = [e["action"] for e in team.entries()][-2:]
    assert actions == ["verify", "rollback"]
    team.verify_both()


def test_re_entry_after_a_rollback_needs_a_verify_and_an_approval(team):
    team.walk(6)
    assert team.controls()["SLOTGEN_AI_KILL"] == "false"
    team.ok("rollback", "--env", "staging", "--reason", "incident", who="oncall", dr=None)
    assert team.run("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes", who="owner").code == 3
    team.ok("verify", "--env", "staging", who="owner")
    approval = team.approve("SLOTGEN_AI_KILL=false")
    team.ok("set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--yes", "--approval", approval, who="owner")
    assert team.controls()["SLOTGEN_AI_KILL"] == "false"
    team.verify_both()


def test_stepping_down_needs_no_approval(team):
    team.walk(7)
    team.ok("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", who="oncall")
    assert team.controls()["SLOTGEN_AI_ROLLOUT_PERCENT"] == "1"
    assert team.entries()[-1]["step"] == "reduce-exposure"
    team.verify_both()


def test_a_policy_file_edited_in_one_clone_blocks_only_that_clone(team, pg_url):
    team.walk(3)
    a, b = team.sides
    allowlist = a / APPROVED
    allowlist.write_text(allowlist.read_text().replace('"rules"', '"rules" ', 1))  # any byte is a change
    blocked = team.run("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", who="approver", ws=a)
    assert_one_line_error(blocked, 4)
    assert APPROVED in blocked.stderr
    fine = team.run("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--yes", who="approver", ws=b)
    assert fine.code == 0, fine.stderr
    rb = team.run("rollback", "--env", "staging", "--reason", "drift", who="oncall", ws=a, dr=None)
    assert rb.code == 0, rb.stderr  # rollback still works in the drifted clone
    with psycopg.connect(pg_url) as conn:
        kill = conn.execute("SELECT controls->>'SLOTGEN_AI_KILL' FROM slotgen_environments "
                            "WHERE name = 'staging'").fetchone()[0]
    assert kill == "true"
    team.verify_both()
