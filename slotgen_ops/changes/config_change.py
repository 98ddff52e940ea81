"""Accepting a policy change (SPEC section 8): `approve --config` and `config accept`.

A policy file edited after it was accepted blocks every change but rollback
(`policy.require_pinned`). To accept the edit, an approver approves the
policy *as it now stands* (the approval is bound to its digest), and an
engineering-owner who is not that approver accepts it: the sample jobs are
verified under the new policy first (a policy change can widen exposure),
then one entry records the new digests, what changed and the roster now in
force. Roles are checked against the roster *accepted before* the change, so
an operator added by an edit to operators.yaml cannot approve or accept
their own addition.
"""

from __future__ import annotations

from typing import Any

from ..errors import Refused
from ..policy.authority import (
    APPROVER_ROLE,
    Actor,
    approval_record,
    check_approval,
    check_decision_record,
    new_approval_id,
    now_utc,
    require_role,
)
from .outcomes import Confirm, Preview, Result, _entry, _fail_closed, _moved, _refusal, _superseded
from .settling import _settled
from .verifying import Verifier, _verify_unlocked
from .environment import Environment
from ..policy.pins import accepted_actor, describe, drift, snapshot
from ..runbook.state import APPROVE, CONFIG_ACCEPT, VERIFY
from ..policy.roster import Roster

POLICY = "policy"  # the "control" an approval for a policy change is bound to
OWNER_ROLE = "engineering-owner"


def _current_roster(env: Environment) -> dict[str, Any]:
    from ..policy.config import OPERATORS_FILE
    from ..policy.yamlfile import load_yaml_model

    return load_yaml_model(env.workspace.root / OPERATORS_FILE, Roster).as_doc()


def _current_identity(env: Environment) -> str:
    """The identity mode slotgen.yaml now asks for (what an accepted change puts in force)."""
    from ..policy.config import WORKSPACE_FILE, WorkspaceConfig
    from ..policy.yamlfile import load_yaml_model

    return load_yaml_model(env.workspace.root / WORKSPACE_FILE, WorkspaceConfig).identity


def approve_config(env: Environment, *, actor: Actor, decision_record: str | None, dry_run: bool,
                   confirm: Confirm) -> Result:
    """An approver approves the policy files as they now stand (bound to their digest)."""
    actor = accepted_actor(env.snapshot().state, actor)
    snap, notes = _settled(env, actor, dry_run)
    state = snap.state
    actor = accepted_actor(state, actor)
    request = {"command": "approve --config", "decisionRecord": decision_record, "control": POLICY}
    try:
        require_role(actor, (APPROVER_ROLE,), "approve policy changes")
        dr = check_decision_record(decision_record, env.workspace.config.decisionRecordPattern)
        changes = drift(state.get("policy"), env.workspace.root)
        if not changes:
            raise Refused("nothing to approve: every policy file matches its accepted digest")
    except Refused as exc:
        raise _refusal(env, actor, exc, state, request, dry_run) from None
    new = snapshot(env.workspace.root, None)
    old_digest = (state.get("policy") or {}).get("digest")
    record = approval_record(env.name, POLICY, new["digest"], dr, actor.claimed or "",
                             env.workspace.runbook.approvals.ttlHours, now_utc(), old=old_digest, key=actor.fingerprint)
    record.update(changes=changes)
    change = {"control": POLICY, "old": old_digest, "new": new["digest"]}
    if dry_run:
        return Result(ok=True, change=change, dry_run=True, warnings=notes,
                      message=f"dry-run: would approve the policy change {describe(changes)}; nothing written")
    if not confirm(Preview(env.name, None, POLICY, old_digest, new["digest"], approval=True,
                           ttl_hours=env.workspace.runbook.approvals.ttlHours)):
        raise _refusal(env, actor, Refused("not confirmed: with no terminal an approval needs --yes"), state,
                       request, dry_run=False)
    approval_id = new_approval_id()

    def commit(writer) -> dict[str, Any]:
        assert writer.snapshot is not None
        return writer.record(_entry(env, actor, writer.snapshot.state, action=APPROVE, control=POLICY,
                                    old=old_digest, new=new["digest"], decisionRecord=dr, approvalId=approval_id,
                                    details={"approval": record}))

    entry = env.transact(actor, commit)
    return Result(ok=True, change=change, audit_seq=entry["seq"], approval_id=approval_id, warnings=notes,
                  message=f"approval {approval_id} recorded for the policy change {describe(changes)}; expires "
                  f"{record['expiresAt']}", extra={"expiresAt": record["expiresAt"], "changes": changes})


def accept_config(env: Environment, *, actor: Actor, decision_record: str | None, approval_id: str | None,
                  dry_run: bool, verifier: Verifier) -> Result:
    """An engineering-owner accepts the approved policy change: verified, then recorded."""
    actor = accepted_actor(env.snapshot().state, actor)
    snap, notes = _settled(env, actor, dry_run)
    state = snap.state
    actor = accepted_actor(state, actor)
    request = {"command": "config accept", "decisionRecord": decision_record, "approvalId": approval_id,
               "control": POLICY}
    root = env.workspace.root
    try:
        require_role(actor, (OWNER_ROLE,), "accept policy changes")
        dr = check_decision_record(decision_record, env.workspace.config.decisionRecordPattern)
        changes = drift(state.get("policy"), root)
        if not changes:
            raise Refused("nothing to accept: every policy file matches its accepted digest")
        new = snapshot(root, _current_roster(env), _current_identity(env))
        check_approval(state["approvals"], approval_id, env.name, POLICY, new["digest"], dr, actor.claimed or "",
                       now_utc(), old=(state.get("policy") or {}).get("digest"), key=actor.fingerprint)
    except Refused as exc:
        raise _refusal(env, actor, exc, state, request, dry_run) from None
    change = {"control": POLICY, "old": (state.get("policy") or {}).get("digest"), "new": new["digest"]}
    if dry_run:
        return Result(ok=True, change=change, dry_run=True, warnings=notes,
                      message=f"dry-run: would verify and accept {describe(changes)}; nothing written")
    report, summary = _verify_unlocked(verifier, env, snap.controls.values)  # under the new policy files

    def commit(writer) -> Result:
        fresh = writer.snapshot
        assert fresh is not None
        if _moved(snap, fresh):
            raise _superseded(env, writer, actor, snap, summary, dr, change, "this policy change")
        again = snapshot(root, new["roster"], new["identity"])
        if again["digest"] != new["digest"]:
            raise _refusal(env, actor, Refused("the policy files changed again while the change was being "
                                               "verified; approve the files as they now stand"),
                           fresh.state, request, dry_run=False, writer=writer)
        result = Result(ok=True, change=change, verification=report, warnings=notes)
        if not summary["passed"]:
            ventry = writer.record(_entry(env, actor, fresh.state, action=VERIFY, verification=summary,
                                          decisionRecord=dr, details={"trigger": "before-config-accept",
                                                                      "proposed": change, "changes": changes}))
            return _fail_closed(env, writer, actor, ventry, result, summary["failed"], dr, " under the new policy")
        entry = writer.record(_entry(env, actor, fresh.state, action=CONFIG_ACCEPT, decisionRecord=dr,
                                     approvalId=approval_id, verification=summary, policy=new["digest"],
                                     details={"policy": new, "changes": changes}))
        result.audit_seq = entry["seq"]
        result.message = f"policy change accepted: {describe(changes)}"
        result.extra["changes"] = changes
        return result

    return env.transact(actor, commit)


def config_status(env: Environment) -> dict[str, Any]:
    """Which policy files differ from the accepted ones, and how (reads only)."""
    try:
        head = env.log.head()
    except Exception as exc:  # noqa: BLE001 - status of a broken log: say so, never crash
        return {"env": env.name, "accepted": None, "drift": [], "problem": str(exc)}
    policy = ((head or {}).get("state") or {}).get("policy")
    if not isinstance(policy, dict):
        return {"env": env.name, "accepted": None, "drift": [], "problem": "no accepted policy in the audit log"}
    return {"env": env.name, "accepted": policy.get("digest"), "drift": drift(policy, env.workspace.root),
            "problem": None}


__all__ = ["POLICY", "accept_config", "accepted_actor", "approve_config", "config_status"]
