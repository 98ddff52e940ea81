"""Pinned policy through the real CLI (SPEC section 8): each way of loosening the policy by editing
a file is refused (exit 4, naming the file), rollback still works, and an edit is accepted only with
an approval by someone else, verified first, judged against the roster accepted before the edit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, APPROVED, kill_as_runtime_reads, walk  # noqa: E402

ENV = {"OPENAI_API_KEY": API_KEY}


def run(ws: Path, *args: str):
    return slotgen(*args, "--workspace", str(ws), env=ENV)


def widen_allowlist(ws: Path) -> None:
    path = ws / APPROVED
    doc = json.loads(path.read_text())
    rule = doc["rules"][0]
    doc["rules"] = [rule] + [{**rule, "id": f"wide-{i}", "subject": f"subject-{i}"} for i in range(23)]
    path.write_text(json.dumps(doc))


def loosen_runbook(ws: Path) -> None:
    path = ws / "runbooks" / "beta-enable.yaml"
    text = path.read_text()
    path.write_text(text.replace("ladder: [1, 5]", "ladder: [100]"))


def change_base_url(ws: Path) -> None:
    path = ws / "slotgen.yaml"
    path.write_text(path.read_text().replace("timeoutSeconds: 2", "timeoutSeconds: 3"))


def edit_samples(ws: Path) -> None:
    path = ws / "runbooks" / "sample-jobs.jsonl"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


def add_mallory(ws: Path) -> None:
    path = ws / "operators.yaml"
    path.write_text(path.read_text() + "  - id: mallory\n    name: Mallory\n"
                    "    roles: [engineering-owner, on-call, approver]\n")


EDITS = {"allowlist": (widen_allowlist, APPROVED), "runbook": (loosen_runbook, "runbooks/beta-enable.yaml"),
         "slotgen.yaml": (change_base_url, "slotgen.yaml"), "samples": (edit_samples, "runbooks/sample-jobs.jsonl"),
         "operators": (add_mallory, "operators.yaml")}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_policy_file_blocks_every_change_but_rollback(tmp_path, endpoint, edit):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)  # live at 1
    change, name = EDITS[edit]
    change(ws)
    for args in (("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-9",
                  "--approval", "apv-0000000000", "--operator", "oncall", "--yes"),
                 ("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-9",
                  "--operator", "approver", "--yes"),
                 ("verify", "--env", "staging", "--decision-record", "DR-9", "--operator", "oncall")):
        r = run(ws, *args)
        assert_one_line_error(r, 4)
        assert name in r.stderr and "config status" in r.stderr
    status = run(ws, "status", "--env", "staging", "--json").json()
    assert [d["file"] for d in status["policy"]["drift"]] == [name]
    assert any(name in w for w in status["warnings"])
    shown = run(ws, "config", "status", "--env", "staging", "--json").json()["environments"][0]
    assert shown["drift"][0]["file"] == name and shown["drift"][0]["change"] == "changed"
    assert run(ws, "rollback", "--env", "staging", "--reason", "drift", "--operator", "oncall").code == 0
    assert kill_as_runtime_reads(ws / "environments" / "staging.env") == "true"


def test_mallory_cannot_grant_herself_roles(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    add_mallory(ws)
    # Her roles come from the roster accepted before the edit: she is nobody there.
    r = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-66", "--operator", "mallory",
            "--yes")
    assert r.code == 3 and "unknown operator 'mallory'" in r.stderr
    ok = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-66", "--operator", "approver",
             "--yes", "--json")
    assert ok.code == 0, ok.stderr
    approval = ok.json()["approvalId"]
    r = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-66", "--approval", approval,
            "--operator", "mallory")
    assert r.code == 3 and "unknown operator 'mallory'" in r.stderr
    # Nothing changed: every change is still refused.
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-9", "--operator", "mallory").code == 4
    # And rollback still works in that state (SPEC section 6), recorded in the log, signed by oncall.
    rb = run(ws, "rollback", "--env", "staging", "--reason", "roster edit", "--operator", "oncall", "--json")
    assert rb.code == 0 and rb.json()["rollback"]["engaged"] is True and not rb.json().get("breakGlass")


def test_an_accepted_edit_needs_another_operators_approval_bound_to_the_files(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)  # verified, kill-switch on
    widen_allowlist(ws)
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-70", "--operator",
                   "approver", "--yes", "--json").json()["approvalId"]
    # The approval is bound to the files as they stood: edit again, and it no longer fits.
    path = ws / APPROVED
    path.write_text(path.read_text().replace("wide-1", "wide-one"))
    stale = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-70", "--approval", approval,
                "--operator", "owner")
    assert stale.code == 3 and "not for this change" in stale.stderr
    approval = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-71", "--operator",
                   "approver", "--yes", "--json").json()["approvalId"]
    wrong_role = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-71", "--approval", approval,
                     "--operator", "oncall")
    assert wrong_role.code == 3 and "engineering-owner" in wrong_role.stderr
    accepted = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-71", "--approval", approval,
                   "--operator", "owner", "--json")
    assert accepted.code == 0, accepted.stderr
    doc = accepted.json()
    assert doc["verification"]["passed"] is True and doc["changes"][0]["file"] == APPROVED
    entries = [json.loads(line) for line in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "config-accept" and entries[-1]["approvalId"] == approval
    assert entries[-1]["policy"] == entries[-1]["details"]["policy"]["digest"]
    # A policy change can widen exposure: like a control change it needs step 5 again.
    assert run(ws, "next", "--env", "staging", "--json").json()["step"] == "verify"
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-72", "--operator", "oncall").code == 0
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_an_approver_cannot_accept_the_change_they_approved(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 3, endpoint.base_url)
    roster = ws / "operators.yaml"
    loosen_runbook(ws)
    # 'boss' with both roles (and a key) must be in the accepted roster first: accept that roster change properly.
    from slotgen_ops.audit.sshkeygen import generate_key

    line = generate_key(ws / "demo-keys" / "boss")
    roster.write_text(roster.read_text() + "  - id: boss\n    name: Both\n    roles: [engineering-owner, approver]\n"
                      f"    keys: [\"{line}\"]\n")
    a = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-80", "--operator", "approver",
            "--yes", "--json").json()["approvalId"]
    assert run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-80", "--approval", a,
               "--operator", "owner").code == 0
    change_base_url(ws)
    a = run(ws, "approve", "--env", "staging", "--config", "--decision-record", "DR-81", "--operator", "boss",
            "--yes", "--json").json()["approvalId"]
    r = run(ws, "config", "accept", "--env", "staging", "--decision-record", "DR-81", "--approval", a,
            "--operator", "boss")
    assert r.code == 3 and "cannot use their own approval" in r.stderr
