"""`slotgen init`: a workspace that works with no further editing (SPEC section 5)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..data import data_path
from ..errors import BadInput
from .atomic import atomic_write
from .authority import Actor
from .entries import new_entry
from .state import INIT, SAFE_CONTROLS
from .workspace import OPERATORS_FILE, WORKSPACE_FILE, Workspace

ENVIRONMENTS = ("staging", "production")

WORKSPACE_YAML = """\
# slotgen workspace. Unknown keys are refused.
version: 1
runbook: runbooks/beta-enable.yaml
# Every change links a release decision record: DR-<n> or an https URL.
decisionRecordPattern: '^(DR-[1-9][0-9]*|https://[^\\s/$.?#][^\\s]*)$'
environments:
  staging:
    openai:
      model: gpt-4o-mini
      # null: the SDK's OPENAI_BASE_URL; the key is read from the variable named here.
      baseUrl: null
      apiKeyEnv: OPENAI_API_KEY
      timeoutSeconds: 10
      maxRetries: 1
  production:
    openai:
      model: gpt-4o-mini
      baseUrl: null
      apiKeyEnv: OPENAI_API_KEY
      timeoutSeconds: 10
      maxRetries: 1
"""

OPERATORS_YAML = """\
# Who may change Beta runtime controls (SPEC section 3). Roles:
#   engineering-owner, on-call: runbook steps and rollback
#   approver: approvals for rollout increases (never their own)
operators:
  - id: owner
    name: Engineering Owner (demo)
    roles: [engineering-owner]
  - id: oncall
    name: On-call Operator (demo)
    roles: [on-call]
  - id: approver
    name: Product/Operations Approver (demo)
    roles: [approver]
"""

SHIPPED_FILES = (
    ("allowlists", "slot-generation-allowlist.v1.json"),
    ("runbooks", "beta-enable.yaml"),
    ("runbooks", "sample-jobs.jsonl"),
)


def init_workspace(target: Path, actor: Actor) -> dict[str, Any]:
    """Write a complete workspace into `target` and start each environment's audit log."""
    from .environment import create_environment

    if (target / WORKSPACE_FILE).exists():
        raise BadInput(f"{target}: already a slotgen workspace ({WORKSPACE_FILE} exists); nothing changed")
    if target.exists() and not target.is_dir():
        raise BadInput(f"{target}: exists and is not a directory")
    if (target / "environments").exists():
        raise BadInput(f"{target}/environments exists without {WORKSPACE_FILE}; refusing to overwrite it")
    target.mkdir(parents=True, exist_ok=True)
    for folder, name in SHIPPED_FILES:
        (target / folder).mkdir(exist_ok=True)
        destination = target / folder / name
        if not destination.exists():
            shutil.copyfile(data_path(folder, name), destination)
    atomic_write(target / OPERATORS_FILE, OPERATORS_YAML.encode("utf-8"))
    (target / "environments").mkdir(exist_ok=True)
    # slotgen.yaml last: until it exists the folder is not a workspace.
    atomic_write(target / WORKSPACE_FILE, WORKSPACE_YAML.encode("utf-8"))
    workspace = Workspace(target)
    from .policy import snapshot

    policy = snapshot(target, workspace.roster.model_dump(mode="json"))
    entries = {}
    for name in ENVIRONMENTS:
        env = workspace.environment(name)
        fields = new_entry(name, actor, None, action=INIT, new=dict(SAFE_CONTROLS),
                           reason="workspace created by slotgen init", details={"policy": policy},
                           policy=policy["digest"])
        entries[name] = create_environment(env, fields, actor)["seq"]
    return {"workspace": str(workspace.root), "environments": list(ENVIRONMENTS), "auditSeq": entries}
