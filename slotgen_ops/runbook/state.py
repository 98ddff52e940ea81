"""An environment's state, and how each audit entry changes it.

Pure: no I/O. The audit log is the source of truth; every entry carries the
state after it (`state`), so reading the head is enough for `status`, and
`replay()` rebuilds the same state from the actions alone, which is how a
hand-forged `state` is caught.
"""

from __future__ import annotations

from typing import Any

from ..contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from ..contract.controls import feature_flag_on, kill_switch_engaged, rollout_percent
from ..clock import expired

CONTROL_ORDER = (KILL_VAR, FEATURE_VAR, ROLLOUT_VAR, ALLOWLIST_VAR)

# What `slotgen init` writes: every control safe (SPEC section 5).
SAFE_CONTROLS: dict[str, str | None] = {KILL_VAR: "true", FEATURE_VAR: "false", ROLLOUT_VAR: "0", ALLOWLIST_VAR: None}

# Audit actions.
INIT = "init"
SET = "set"
VERIFY = "verify"
ROLLBACK = "rollback"
APPROVE = "approve"
REFUSED = "refused"
RECOVER = "recover"
REPAIR = "audit-repair"
CONFIG_ACCEPT = "config-accept"
ACTIONS = (INIT, SET, VERIFY, ROLLBACK, APPROVE, REFUSED, RECOVER, REPAIR, CONFIG_ACCEPT)


def initial_state() -> dict[str, Any]:
    return {
        "controls": dict(SAFE_CONTROLS),
        "killConfirmed": False,       # step 1 done (or a rollback confirmed it)
        "stepVerified": False,        # an explicit passing verify since the last change (step 5)
        "verificationPassing": None,  # the latest verification's result; None: none since the last change
        "lastChangeAt": None,         # ts of the last applied control change (soak)
        "approvals": {},              # outstanding approvals by id
        "rolledBack": False,          # a rollback since the kill-switch was last turned off (re-entry needs approval)
        "steppedDown": False,         # the last control change reduced exposure (a step down)
        "policy": None,               # the accepted policy: {digest, files, roster} (SPEC section 8)
        "breakGlassFolded": [],       # hashes of break-glass journal entries folded into this log
    }


def apply(state: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """The state after `entry`, from the state before it (None before init)."""
    action = entry.get("action")
    if action == INIT:
        if state is not None:  # a second start would replace everything recorded before it (SPEC section 14)
            raise ValueError("'init' is entry 1 and only entry 1")
        new = initial_state()
        new["controls"] = dict(entry.get("new") or SAFE_CONTROLS) if isinstance(entry.get("new"), dict) else dict(SAFE_CONTROLS)
        new["policy"] = (entry.get("details") or {}).get("policy")
        return new
    if state is None:
        raise ValueError("the first entry of a log must be 'init'")
    # Fresh containers for what apply() changes; approval records themselves are never mutated.
    new = {**state, "controls": dict(state["controls"]), "approvals": dict(state["approvals"])}
    ts = entry.get("ts")
    if action == SET:
        new["controls"][entry["control"]] = entry["new"]
        new["lastChangeAt"] = ts
        new["stepVerified"] = False
        # A change is verified before it is committed; its entry carries that verification.
        verification = entry.get("verification")
        new["verificationPassing"] = bool(verification.get("passed")) if isinstance(verification, dict) else None
        if entry["control"] == KILL_VAR and entry["new"] == "false":
            new["rolledBack"] = False
        new["steppedDown"] = entry.get("step") == "reduce-exposure"
        if entry.get("step") == "kill-switch-on":
            new["killConfirmed"] = True
        if entry.get("approvalId"):
            new["approvals"].pop(entry["approvalId"], None)
    elif action == ROLLBACK or (action == REPAIR and entry.get("control") == KILL_VAR and entry.get("new") == "true"):
        # A repair that cut a torn line engages the kill-switch in the same entry (what the line said is unknown).
        new["controls"][KILL_VAR] = "true"
        new["killConfirmed"] = True
        new["stepVerified"] = False
        new["verificationPassing"] = None
        new["lastChangeAt"] = ts
        new["rolledBack"] = True
        folded = (entry.get("details") or {}).get("breakGlassHash")
        if isinstance(folded, str):
            new["breakGlassFolded"] = [*state.get("breakGlassFolded", []), folded]
    elif action == VERIFY:
        if (entry.get("details") or {}).get("superseded"):
            return _expire(new, ts)  # a verification overtaken by another change changes nothing
        passed = bool((entry.get("verification") or {}).get("passed"))
        new["verificationPassing"] = passed
        if passed and entry.get("step") == "verify":
            new["stepVerified"] = True
    elif action == CONFIG_ACCEPT:
        # A policy change can widen exposure: like a control change, it restarts the soak and needs step 5 again.
        new["policy"] = (entry.get("details") or {}).get("policy")
        new["lastChangeAt"] = ts
        new["stepVerified"] = False
        if entry.get("approvalId"):
            new["approvals"].pop(entry["approvalId"], None)
        verification = entry.get("verification")
        new["verificationPassing"] = bool(verification.get("passed")) if isinstance(verification, dict) else None
    elif action == APPROVE:
        approval = (entry.get("details") or {}).get("approval")
        if isinstance(approval, dict) and entry.get("approvalId"):
            new["approvals"][entry["approvalId"]] = approval
    # REFUSED, RECOVER, REPAIR change nothing.
    return _expire(new, ts)


def _expire(new: dict[str, Any], ts: Any) -> dict[str, Any]:
    if ts is not None and new["approvals"]:
        new["approvals"] = {k: v for k, v in new["approvals"].items() if not expired(v.get("expiresAt"), ts)}
    return new


def reach(controls: dict[str, Any] | None) -> tuple[str | None, int] | None:
    """Which jobs the controls can send to the OpenAI path, as the gating engine reads them (SPEC section 1):
    None when none at all (kill-switch engaged, feature flag not on, no allowlist, or a rollout that is not a
    percent, each of which fails closed); else (allowlist path, percent of the allowlisted jobs), where
    rollout 0 means the gate is off: every allowlisted job, 100%."""
    if not isinstance(controls, dict):
        return None
    if kill_switch_engaged(controls.get(KILL_VAR)) or not feature_flag_on(controls.get(FEATURE_VAR)):
        return None
    allowlist = controls.get(ALLOWLIST_VAR)
    percent = rollout_percent(controls.get(ROLLOUT_VAR))
    if not allowlist or percent is None:
        return None
    return str(allowlist), 100 if percent == 0 else percent


def widening(before: dict[str, Any] | None, after: dict[str, Any]) -> str | None:
    """Why the state `after` may expose more jobs, or grant more, than `before` (None before init: nothing
    exists, which exposes nothing); None when it exposes no more (SPEC section 14: only such an entry may lack
    a proven operator).

    Conservative, from the recorded state alone (no file is read): `after` exposes no more when it exposes
    nothing, or when `before` exposed something through the same allowlist file with at least the same
    percent (the allowlist's contents are pinned policy, so the same path is the same cohort). Anything that
    is not plainly lower counts as wider: another allowlist path, a policy or identity mode that changed (a
    policy can widen exposure, SPEC section 8), an approval gained, a verification that now passes.
    """
    old = before or {}
    if old.get("policy") != after.get("policy") and before is not None:
        return "it changes the accepted policy"
    now, was = reach(after.get("controls")), reach(old.get("controls"))
    if now is not None:
        if was is None:
            return f"it exposes jobs ({_shown(now)}) where nothing was exposed"
        if now[0] != was[0]:
            return f"it exposes the allowlist {now[0]!r} instead of {was[0]!r}"
        if now[1] > was[1]:
            return f"it widens the rollout from {was[1]}% to {now[1]}% of allowlisted jobs"
    gained = set(after.get("approvals") or {}) - set(old.get("approvals") or {})
    if gained:
        return f"it adds approval {sorted(gained)[0]}"
    if after.get("stepVerified") and not old.get("stepVerified"):
        return "it marks the step verified"
    if after.get("verificationPassing") is True and old.get("verificationPassing") is not True:
        return "it records a passing verification"
    return None


def _shown(reached: tuple[str | None, int]) -> str:
    return f"{reached[1]}% of the jobs allowlisted by {reached[0]!r}"


def replay(entries) -> dict[str, Any] | None:
    """The state rebuilt from the actions of a log's entries alone."""
    state = None
    for entry in entries:
        state = apply(state, entry)
    return state


def differences(found: dict[str, Any], recorded: dict[str, Any]) -> str:
    """Each control whose value in the controls found differs from the audit log's: recorded vs found."""
    names = [k for k in recorded if found.get(k) != recorded[k]]
    names += sorted(k for k in found if k not in recorded)
    return "; ".join(f"{k} recorded {_value(recorded.get(k))}, found {_value(found.get(k))}" for k in names)


def _value(value: Any) -> str:
    import json

    return "(unset)" if value is None or value == "" else json.dumps(value, ensure_ascii=False)
