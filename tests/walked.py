"""A real workspace walked to a given runbook position, for the incident and fault tests.

`walk(root, upto, base_url)` runs `slotgen init`'s code and the change service
in-process with the *real* verification against an OpenAI-compatible endpoint
at `base_url` (the shipped fake server, started by the test), so the files are
exactly what the CLI would leave. Positions: 0 init, 1 kill-switch on,
2 feature on, 3 allowlist, 4 canary (rollout 1), 5 verified, 6 live at 1,
7 live at 5.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from slotgen_ops.policy.authority import resolve_actor
from slotgen_ops.changes.steps import approve, set_control, verify_environment
from slotgen_ops.workspace.init import init_workspace
from slotgen_ops.verification.samples import run_verification
from slotgen_ops.workspace import Workspace

APPROVED = "allowlists/slot-generation-allowlist.v1.json"
API_KEY = "sk-test-local"


def configure_endpoint(root: Path, base_url: str, timeout_s: int = 2, retries: int = 0) -> None:
    """Point every environment of the workspace at `base_url`, with a short timeout."""
    path = Path(root) / "slotgen.yaml"
    text = path.read_text()
    text = re.sub(r"baseUrl: null", f"baseUrl: {base_url}", text)
    text = re.sub(r"timeoutSeconds: \d+", f"timeoutSeconds: {timeout_s}", text)
    text = re.sub(r"maxRetries: \d+", f"maxRetries: {retries}", text)
    path.write_text(text)


def demo_actor(ws: Workspace, name: str | None, roster=None):
    """A demo operator acting in `ws`, proven by the rehearsal key `slotgen init` wrote for them."""
    who = name or os.environ.get("SLOTGEN_OPERATOR")
    key = ws.root / "demo-keys" / who if who else None
    return resolve_actor(roster if roster is not None else Workspace(ws.root).roster, name,
                         key if key is not None and key.is_file() else None)


def accept_policy(root: Path, env: str = "staging", verifier=run_verification, dr: str = "DR-900") -> None:
    """Record the workspace's policy files as they now stand (approve --config, then config accept)."""
    from slotgen_ops.changes.config_change import accept_config, approve_config

    ws = Workspace(Path(root))
    environment = ws.environment(env)
    approval = approve_config(environment, actor=demo_actor(ws, "approver"), decision_record=dr,
                              dry_run=False, confirm=lambda p: True).approval_id
    result = accept_config(Workspace(Path(root)).environment(env), actor=demo_actor(ws, "owner"),
                           decision_record=dr, approval_id=approval, dry_run=False, verifier=verifier)
    assert result.ok, result.message


def walk(root: Path, upto: int, base_url: str, env: str = "staging", state: str | None = None) -> Workspace:
    """`state`: a postgresql:// URL to keep the environments in (the caller sets SLOTGEN_STATE_URL to it)."""
    os.environ.setdefault("OPENAI_API_KEY", API_KEY)
    init_workspace(Path(root), resolve_actor(None, "owner"), state=state)
    configure_endpoint(root, base_url)
    accept_policy(root, env)  # the endpoint is part of slotgen.yaml: a policy change like any other
    ws = Workspace(Path(root))

    def environment():
        return Workspace(Path(root)).environment(env)

    def actor(name):
        return demo_actor(ws, name)

    def do_set(item, who="owner", approval=None, dr="DR-1"):
        return set_control(environment(), [item], actor=actor(who), decision_record=dr, approval_id=approval,
                           expect=None, dry_run=False, confirm=lambda p: True, verifier=run_verification)

    def do_approve(item, dr="DR-1"):
        return approve(environment(), [item], actor=actor("approver"), decision_record=dr, dry_run=False,
                       confirm=lambda p: True).approval_id

    plan = [
        lambda: do_set("SLOTGEN_AI_KILL=true"),
        lambda: do_set("FEATURE_SLOTGEN_AI=true", "oncall"),
        lambda: do_set(f"SLOTGEN_AI_ALLOWLIST_PATH={APPROVED}"),
        lambda: do_set("SLOTGEN_AI_ROLLOUT_PERCENT=1", "oncall", do_approve("SLOTGEN_AI_ROLLOUT_PERCENT=1")),
        lambda: verify_environment(environment(), actor=actor("owner"), decision_record="DR-1",
                                   verifier=run_verification),
        lambda: do_set("SLOTGEN_AI_KILL=false"),
        lambda: do_set("SLOTGEN_AI_ROLLOUT_PERCENT=5", "oncall", do_approve("SLOTGEN_AI_ROLLOUT_PERCENT=5")),
    ]
    for index, action in enumerate(plan[:upto]):
        result = action()
        assert result.ok, (index + 1, result.message, result.verification and result.verification["checks"])
    return ws


def kill_as_runtime_reads(controls_path: Path) -> str | None:
    """SLOTGEN_AI_KILL as systemd/docker would read the file (through a symlink)."""
    from slotgen_ops.changes.controls_file import runtime_values

    return runtime_values(Path(controls_path).read_bytes())["SLOTGEN_AI_KILL"]
