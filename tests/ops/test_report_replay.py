"""audit verify replays every entry in the same pass as the chain check: an entry whose
recorded `state` was forged (with a valid hash chain and a matching controls head) is named."""

from __future__ import annotations

from slotgen_ops.policy.authority import Actor
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.oversight.report import audit_verify, chain_report
from slotgen_ops.runbook.state import REFUSED
from slotgen_ops.workspace import Workspace


def test_forged_state_with_a_valid_chain_is_the_first_bad_entry(tmp_path):
    init_workspace(tmp_path / "ws", Actor(claimed=None, operator=None))
    env = Workspace(tmp_path / "ws").environment("staging")
    head = env.log.head()
    forged = dict(head["state"], controls={**head["state"]["controls"], "SLOTGEN_AI_KILL": "false"})
    unproven = {"identity": "unidentified"}  # unsigned, as a refusal of an unknown operator may be
    # A "refusal" that claims to have switched the kill-switch off, appended around the writer (which would
    # recompute the state), as a forger would.
    with env.log.locked():
        entry = env.log.append({"env": "staging", "action": REFUSED, "operator": "mallory", "actor": unproven,
                                "state": forged})
        env.log.append({"env": "staging", "action": REFUSED, "operator": "mallory", "actor": unproven,
                        "state": forged})
    assert env.log.verify().valid  # the hash chain alone cannot see it
    report = audit_verify(env)
    assert report["valid"] is False
    assert report["firstBad"] == entry["seq"] == 2
    assert "recorded state" in report["reason"]
    assert chain_report(env)["firstBad"] == 2
