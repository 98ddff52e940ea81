"""An audit log as an approver reads it: one row per change, and exposure over time (SPEC section 11).

Pure: no I/O, no output. The input is an environment's audit entries, oldest
first, and its break-glass journal entries, each ``{"entry": ..., "folded":
bool, "journal": path}`` (what ``audit show --json`` lists under
``breakGlass``). Entries are read defensively: a field of an unexpected type
is shown as missing, never an exception (``audit verify`` judges the log).

A *row* is one change: ``init``, a ``set`` (a runbook step or a step down), a
``rollback`` (by an operator, automatic after a failed verification,
recovered, or a break-glass act), a ``config-accept`` (a policy change), an
``audit-repair``; and, flagged ``refused``, each refusal and each verification
overtaken by another change (nothing applied). An ``approve`` entry is not a
row: it goes on the row of the change that used it (``approval``), and one no
change used stays in ``approvals`` with ``usedBy`` null. A ``verify`` entry is
not a row either: it goes on the row of the change whose state it checked
(``verifications``) -- the change before it, the rollback it preceded (a
failed verification that engaged the kill-switch) or followed
(``after-rollback``). A break-glass act and the rollback that later folded it
into the log are one row, at the time of the act.

The exposure series has one point per moment the controls changed, from the
state each entry records after itself. A break-glass act engaged the
kill-switch in the controls file before any entry said so: from the act until
the kill-switch is next turned off by a ``set``, the kill-switch counts as
engaged whatever an entry recorded meanwhile.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..contract import ALLOWLIST_VAR, CONTROL_VARS, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from ..contract import feature_flag_on, kill_switch_engaged, rollout_percent

INIT, SET, VERIFY, ROLLBACK, APPROVE, REFUSED = "init", "set", "verify", "rollback", "approve", "refused"
RECOVER, REPAIR, CONFIG_ACCEPT = "recover", "audit-repair", "config-accept"
POLICY = "policy"

#: What `--control` takes: the four controls, and `policy` (approved policy-file changes).
CONTROL_NAMES: tuple[str, ...] = (*CONTROL_VARS, POLICY)

_FAILED_BEFORE = ("before-change", "before-config-accept")


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _s(value: Any) -> str | None:
    """A recorded scalar as text (None stays None)."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _seq(entry: dict[str, Any]) -> int | None:
    seq = entry.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def who(entry: dict[str, Any]) -> dict[str, Any]:
    """Who made an entry: operator id as recorded, name, roles, identity mode, and the key that signed it."""
    actor = _d(entry.get("actor"))
    signature = _d(entry.get("signature"))
    roles = entry.get("roles") if isinstance(entry.get("roles"), list) else actor.get("roles")
    return {
        "operator": _s(entry.get("operator")) or _s(actor.get("id")),
        "name": _s(actor.get("name")),
        "roles": [str(r) for r in roles] if isinstance(roles, list) else [],
        "identity": _s(actor.get("identity")),
        "known": actor.get("known") if isinstance(actor.get("known"), bool) else None,
        "key": _s(signature.get("fingerprint")) or _s(actor.get("key")),
        "signed": bool(signature.get("fingerprint")),
    }


def _verification(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    failed = value.get("failed")
    return {"passed": bool(value.get("passed")),
            "failed": [str(f) for f in failed] if isinstance(failed, list) else [],
            "samples": value.get("samples"), "openaiCalls": value.get("openaiCalls"), "p95Ms": value.get("p95Ms")}


def _approval(entry: dict[str, Any]) -> dict[str, Any]:
    record = _d(_d(entry.get("details")).get("approval"))
    by = who(entry)
    return {
        "id": _s(entry.get("approvalId")),
        "seq": _seq(entry),
        "ts": _s(entry.get("ts")),
        "approver": _s(record.get("approver")) or by["operator"],
        "approverName": by["name"],
        "approverKey": by["key"] or _s(record.get("approverKey")),
        "control": _s(entry.get("control")),
        "old": _s(record.get("old", entry.get("old"))),
        "value": _s(record.get("value", entry.get("new"))),
        "decisionRecord": _s(entry.get("decisionRecord")),
        "expiresAt": _s(record.get("expiresAt")),
        "usedBy": None,
    }


def _row(entry: dict[str, Any], previous_policy: str | None = None) -> dict[str, Any]:
    action = _s(entry.get("action")) or "?"
    details = _d(entry.get("details"))
    control, old, new = _s(entry.get("control")), entry.get("old"), entry.get("new")
    if action == CONFIG_ACCEPT:
        control = POLICY
        old = previous_policy if old is None else old
        new = _s(_d(details.get("policy")).get("digest")) if new is None else new
    if action == INIT:
        old, new = None, None  # the controls an environment starts with are the first exposure point
    row = {
        "seq": _seq(entry),
        "ts": _s(entry.get("ts")),
        "action": action,
        "step": _s(entry.get("step")),
        "trigger": _s(details.get("trigger")),
        "control": control,
        "old": _s(old) if not isinstance(old, dict) else None,
        "new": _s(new) if not isinstance(new, dict) else None,
        "appliedBy": who(entry),
        "approvalId": _s(entry.get("approvalId")),
        "approval": None,
        "decisionRecord": _s(entry.get("decisionRecord")),
        "reason": _s(entry.get("reason")),
        "verification": _verification(entry.get("verification")),
        "verifications": [],
        "rollback": action == ROLLBACK or (action == REPAIR and control == KILL_VAR and new == "true"),
        "refused": action == REFUSED,
        "refusal": _s(details.get("refusal")) or (_s(entry.get("reason")) if action == REFUSED else None),
        "breakGlass": None,
    }
    if action == VERIFY:  # a verification overtaken by another change: nothing was applied
        proposed = _d(details.get("proposed"))
        row.update(control=_s(proposed.get("control")), old=_s(proposed.get("old")), new=_s(proposed.get("new")),
                   refused=True, refusal="superseded: the environment changed while this was being verified; "
                                         "nothing applied")
    if action == ROLLBACK and row["trigger"] == "break-glass-fold":
        row["breakGlass"] = {"folded": True, "foldedSeq": row["seq"], "foldedTs": row["ts"],
                             "foldedBy": row["appliedBy"]["operator"], "journal": _s(details.get("breakGlassLog")),
                             "journalSeq": details.get("breakGlassSeq"), "hash": _s(details.get("breakGlassHash")),
                             "problem": _s(details.get("problem"))}
        if details.get("breakGlassTs") is not None:
            row["ts"] = _s(details.get("breakGlassTs"))
        act_operator = _s(details.get("breakGlassOperator"))
        row["appliedBy"] = {**who({}), "operator": act_operator}
        reason = row["reason"] or ""
        prefix = "break-glass rollback folded into the chain: "
        row["reason"] = reason[len(prefix):] if reason.startswith(prefix) else reason or None
    return row


def _glass_row(item: dict[str, Any]) -> dict[str, Any]:
    entry = _d(item.get("entry"))
    row = _row({**entry, "details": {k: v for k, v in _d(entry.get("details")).items() if k != "trigger"}})
    row.update(seq=None, trigger="break-glass", rollback=True)
    row["breakGlass"] = {"folded": bool(item.get("folded")), "foldedSeq": None, "foldedTs": None, "foldedBy": None,
                         "journal": _s(item.get("journal")), "journalSeq": _seq(entry), "hash": _s(entry.get("hash")),
                         "problem": _s(_d(entry.get("details")).get("problem"))}
    return row


def build(entries: Iterable[dict[str, Any]], break_glass: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """``{"changes": rows, "approvals": [...], "exposure": points}`` (see the module's docstring)."""
    entries = [e for e in entries if isinstance(e, dict)]
    glass = [g for g in break_glass if isinstance(g, dict) and isinstance(g.get("entry"), dict)]
    approvals: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    by_seq: dict[int, dict[str, Any]] = {}
    verifies: list[dict[str, Any]] = []
    policy = None  # the accepted policy's digest before each entry
    for entry in entries:
        action = entry.get("action")
        before, policy = policy, _s(_d(_d(_d(entry.get("state")).get("policy"))).get("digest")) or policy
        if action == APPROVE:
            approval = _approval(entry)
            if approval["id"]:
                approvals[approval["id"]] = approval
            continue
        if action == VERIFY and not _d(entry.get("details")).get("superseded"):
            verifies.append(entry)
            continue
        row = _row(entry, before)
        rows.append(row)
        if row["seq"] is not None:
            by_seq[row["seq"]] = row
    _link_approvals(rows, approvals)
    _link_verifications(rows, by_seq, verifies)
    folds = {row["breakGlass"]["hash"]: row for row in rows if row["breakGlass"] and row["breakGlass"]["hash"]}
    for item in glass:
        entry = item["entry"]
        fold = folds.get(_s(entry.get("hash")))
        if fold is not None:  # the act and its record in the chain are one row, at the act's time and by its operator
            journal_row = _glass_row(item)
            fold["breakGlass"].update(journal=journal_row["breakGlass"]["journal"] or fold["breakGlass"]["journal"],
                                      journalSeq=journal_row["breakGlass"]["journalSeq"], folded=True)
            fold.update(ts=journal_row["ts"] or fold["ts"], appliedBy=journal_row["appliedBy"],
                        reason=journal_row["reason"], decisionRecord=journal_row["decisionRecord"],
                        old=journal_row["old"] if journal_row["old"] is not None else fold["old"])
        else:
            rows.append(_glass_row(item))
    rows.sort(key=lambda r: (r["ts"] or "", r["seq"] if r["seq"] is not None else -1))
    return {"changes": rows, "approvals": sorted(approvals.values(), key=lambda a: (a["seq"] or 0)),
            "exposure": exposure(entries, glass)}


def _link_approvals(rows: list[dict[str, Any]], approvals: dict[str, dict[str, Any]]) -> None:
    for row in rows:
        found = approvals.get(row["approvalId"] or "")
        if found is None:
            if row["approvalId"]:
                row["approval"] = {"id": row["approvalId"], "seq": None, "ts": None, "approver": None,
                                   "approverName": None, "approverKey": None, "decisionRecord": None,
                                   "missing": True}
            continue
        row["approval"] = {k: found[k] for k in ("id", "seq", "ts", "approver", "approverName", "approverKey",
                                                 "decisionRecord", "expiresAt")}
        if not row["refused"] and found["usedBy"] is None:
            found["usedBy"] = row["seq"]


def _link_verifications(rows: list[dict[str, Any]], by_seq: dict[int, dict[str, Any]],
                        verifies: list[dict[str, Any]]) -> None:
    changes = sorted((r for r in rows if r["seq"] is not None and not r["refused"]), key=lambda r: r["seq"])
    seqs = [r["seq"] for r in changes]
    for entry in verifies:
        seq = _seq(entry)
        details = _d(entry.get("details"))
        trigger = _s(details.get("trigger"))
        target = None
        if trigger == "after-rollback" and isinstance(details.get("afterSeq"), int):
            target = by_seq.get(details["afterSeq"])
        elif trigger in _FAILED_BEFORE and seq is not None:
            after = by_seq.get(seq + 1)
            target = after if after is not None and after["rollback"] else None
        if target is None and seq is not None:
            before = bisect_left(seqs, seq)
            target = changes[before - 1] if before else None
        if target is None:
            continue
        summary = _verification(entry.get("verification")) or {"passed": False, "failed": [], "samples": None,
                                                                 "openaiCalls": None, "p95Ms": None}
        target["verifications"].append({"seq": seq, "ts": _s(entry.get("ts")), "by": who(entry)["operator"],
                                        "key": who(entry)["key"], "trigger": trigger, "step": _s(entry.get("step")),
                                        "decisionRecord": _s(entry.get("decisionRecord")), **summary})


# -- exposure over time -----------------------------------------------------------


def _point(ts: str | None, seq: int | None, controls: dict[str, Any], **extra: Any) -> dict[str, Any]:
    kill = _s(controls.get(KILL_VAR))
    rollout = _s(controls.get(ROLLOUT_VAR))
    allowlist = _s(controls.get(ALLOWLIST_VAR)) or None
    point = {"ts": ts, "seq": seq, "killEngaged": kill_switch_engaged(kill), "featureOn": feature_flag_on(
        _s(controls.get(FEATURE_VAR))), "rolloutPercent": rollout_percent(rollout), "rollout": rollout,
        "allowlist": allowlist}
    point["open"] = (not point["killEngaged"] and point["featureOn"] and allowlist is not None
                     and point["rolloutPercent"] is not None)
    point.update(extra)
    return point


_VALUES = ("killEngaged", "featureOn", "rolloutPercent", "rollout", "allowlist")


def exposure(entries: Iterable[dict[str, Any]], break_glass: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The controls over time: a point wherever they changed (the first entry's state included)."""
    events: list[tuple[str, int, dict[str, Any], bool]] = []
    for entry in entries:
        if isinstance(entry, dict):
            events.append((_s(entry.get("ts")) or "", 1, entry, False))
    for item in break_glass:
        entry = _d(item.get("entry"))
        if entry.get("action") == ROLLBACK:
            events.append((_s(entry.get("ts")) or "", 0, entry, True))
    ordered = sorted(range(len(events)), key=lambda i: (events[i][0], i))
    points: list[dict[str, Any]] = []
    controls: dict[str, Any] | None = None
    forced = False  # a break-glass act engaged the kill-switch outside the log
    for index in ordered:
        ts, _, entry, is_glass = events[index]
        action = entry.get("action")
        if is_glass:
            if controls is None:
                continue
            forced = True
            controls = {**controls, KILL_VAR: "true"}
        else:
            recorded = _d(_d(entry.get("state")).get("controls"))
            if recorded:
                controls = dict(recorded)
            elif action == INIT and isinstance(entry.get("new"), dict):
                controls = dict(entry["new"])
            elif controls is not None and entry.get("control") in CONTROL_VARS and action in (SET, ROLLBACK, REPAIR):
                controls = {**controls, entry["control"]: entry.get("new")}
            if controls is None:
                continue
            if action == SET and entry.get("control") == KILL_VAR and not kill_switch_engaged(_s(entry.get("new"))):
                forced = False
            if forced:
                controls = {**controls, KILL_VAR: "true"}
        point = _point(ts or None, None if is_glass else _seq(entry), controls, breakGlass=is_glass,
                       action=_s(action))
        if points and all(points[-1][k] == point[k] for k in _VALUES):
            continue
        points.append(point)
    return points


# -- reading rows ---------------------------------------------------------------


def verification_text(row: dict[str, Any]) -> str:
    """What the verifications of a change showed, in a few words: 'pass', 'FAIL: latency', 'verified seq 9: pass'."""
    parts = []
    own = row.get("verification")
    if own:
        parts.append("pass" if own["passed"] else "FAIL: " + (", ".join(own["failed"]) or "failed"))
    for v in row.get("verifications") or []:
        outcome = "pass" if v["passed"] else "FAIL: " + (", ".join(v["failed"]) or "failed")
        if v.get("step") == "verify":
            label = "step verify"
        elif v.get("trigger") == "after-rollback":
            label = "after rollback"
        elif v.get("trigger") in _FAILED_BEFORE:
            label = "before the change"
        else:
            label = "verified"
        parts.append(f"{label} (seq {v['seq']}): {outcome}")
    return "; ".join(parts)


def row_operators(row: dict[str, Any]) -> set[str]:
    found = {row["appliedBy"].get("operator")}
    if row.get("approval"):
        found.add(row["approval"].get("approver"))
    found.discard(None)
    return found  # type: ignore[return-value]


def _moment(ts: str | None) -> datetime | None:
    from ..clock import parse_utc_or_none

    return parse_utc_or_none(ts)


def select(rows: Iterable[dict[str, Any]], *, operator: str | None = None, action: str | None = None,
           since: datetime | None = None, until: datetime | None = None, control: str | None = None,
           decision_record: str | None = None) -> list[dict[str, Any]]:
    """Rows matching every given filter. ``operator``: applied or approved it; ``action``: the change's action,
    or ``approve``/``verify`` for changes that used an approval / carry a verification; ``since <= ts < until``
    (a row whose time cannot be read is kept out when a time filter is given)."""
    kept = []
    for row in rows:
        if operator is not None and operator not in row_operators(row):
            continue
        if action is not None and not (row["action"] == action
                                       or (action == APPROVE and row.get("approval"))
                                       or (action == VERIFY and row.get("verifications"))):
            continue
        if control is not None and row.get("control") != control:
            continue
        if decision_record is not None and decision_record not in (
                row.get("decisionRecord"), (row.get("approval") or {}).get("decisionRecord")):
            continue
        if since is not None or until is not None:
            moment = _moment(row.get("ts"))
            if moment is None or (since is not None and moment < since) or (until is not None and moment >= until):
                continue
        kept.append(row)
    return kept


def entry_matches(entry: dict[str, Any], control: str | None = None, decision_record: str | None = None) -> bool:
    """A raw entry under --control / --decision-record (a config-accept is a change of `policy`)."""
    if control is not None:
        named = POLICY if entry.get("action") == CONFIG_ACCEPT else entry.get("control")
        if named != control:
            return False
    if decision_record is not None and entry.get("decisionRecord") != decision_record:
        return False
    return True


__all__ = ["CONTROL_NAMES", "build", "entry_matches", "exposure", "row_operators", "select", "verification_text",
           "who"]
