"""A corpus of malformed workspace files, runbooks, rosters, control values and
arguments: each gives exit 2 or 3 with one clear line, no traceback, and the
controls are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen

DR = ["--decision-record", "DR-7"]
ALLOWLIST = "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "ws"
    assert slotgen("init", str(root)).code == 0
    for args in (["SLOTGEN_AI_KILL=true", "--operator", "owner"], ["FEATURE_SLOTGEN_AI=true", "--operator", "oncall"]):
        assert slotgen("set", "--env", "staging", *args, *DR, "--yes", "--workspace", str(root)).code == 0
    return root


@pytest.fixture
def ws(base: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(base, copy)
    return copy


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


FILE_CORPUS = {
    "config-not-yaml": ("slotgen.yaml", None, "version: [1\n", "not valid YAML"),
    "config-unknown-key": ("slotgen.yaml", "version: 1", "version: 1\nsurprise: true", "surprise: unknown key"),
    "config-bad-env-name": ("slotgen.yaml", "  production:", "  Prod Env:", "environment name"),
    "config-bad-pattern": ("slotgen.yaml", "decisionRecordPattern: '^(DR-[1-9][0-9]*|https://[^\\s/$.?#][^\\s]*)$'",
                           "decisionRecordPattern: '(['", "not a regular expression"),
    "config-bad-timeout": ("slotgen.yaml", "timeoutSeconds: 10", "timeoutSeconds: -1", "timeoutSeconds"),
    "config-list": ("slotgen.yaml", None, "- a\n- b\n", "expected a mapping"),
    "roster-unknown-role": ("operators.yaml", "roles: [on-call]", "roles: [superuser]", "roles"),
    "roster-duplicate-id": ("operators.yaml", "id: oncall", "id: owner", "listed twice"),
    "roster-missing-name": ("operators.yaml", "    name: On-call Operator (demo)\n", "", "name"),
    "roster-not-yaml": ("operators.yaml", None, "operators: {", "not valid YAML"),
    "roster-bad-id": ("operators.yaml", "id: oncall", "id: On Call!", "id"),
    "runbook-reordered": ("runbooks/beta-enable.yaml", "  - id: kill-switch-on", "  - id: verify-first", "steps"),
    "runbook-ladder-falls": ("runbooks/beta-enable.yaml", "ladder: [1, 5]", "ladder: [5, 1]", "ladder"),
    "runbook-unknown-key": ("runbooks/beta-enable.yaml", "schemaVersion: 1", "schemaVersion: 1\nfast: true", "fast"),
    "runbook-no-default-soak": ("runbooks/beta-enable.yaml", "  default: 30\n", "", "soakMinutes"),
    "runbook-not-yaml": ("runbooks/beta-enable.yaml", None, "steps: [", "YAML"),
    "runbook-bad-requirement": ("runbooks/beta-enable.yaml", "requires: [kill-switch-engaged, approval]",
                                "requires: [kill-switch-engaged, vibes]", "requires"),
}


@pytest.mark.parametrize("case", sorted(FILE_CORPUS))
def test_malformed_workspace_files(ws, case):
    name, old, new, fragment = FILE_CORPUS[case]
    path = ws / name
    if old is None:
        path.write_text(new)
    else:
        _replace(path, old, new)
    controls_before = (ws / "environments" / "staging.env").read_bytes()
    log_before = (ws / "environments" / "staging.audit.jsonl").read_bytes()
    run = slotgen("set", "--env", "staging", ALLOWLIST, *DR, "--operator", "owner", "--yes", "--workspace", str(ws))
    assert_one_line_error(run, 2)
    assert fragment in run.stderr, run.stderr
    assert name.split("/")[-1] in run.stderr
    assert (ws / "environments" / "staging.env").read_bytes() == controls_before
    assert (ws / "environments" / "staging.audit.jsonl").read_bytes() == log_before


ARG_CORPUS = {
    "kill-not-boolean": (["set", "--env", "staging", "SLOTGEN_AI_KILL=yes", *DR, "--operator", "owner"], 2, "takes true or false"),
    "feature-maybe": (["set", "--env", "staging", "FEATURE_SLOTGEN_AI=maybe", *DR, "--operator", "owner"], 2, "true or false"),
    "rollout-text": (["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=abc", *DR, "--operator", "owner"], 2, "0..100"),
    "rollout-101": (["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=101", *DR, "--operator", "owner"], 2, "0..100"),
    "rollout-negative": (["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=-1", *DR, "--operator", "owner"], 2, "0..100"),
    "unknown-control": (["set", "--env", "staging", "SLOTGEN_AI_TURBO=1", *DR, "--operator", "owner"], 2, "not a control"),
    "no-equals": (["set", "--env", "staging", "FEATURE_SLOTGEN_AI", *DR, "--operator", "owner"], 2, "KEY=VALUE"),
    "nothing-to-set": (["set", "--env", "staging", *DR, "--operator", "owner"], 2, "needs one KEY=VALUE"),
    "bad-record": (["set", "--env", "staging", ALLOWLIST, "--decision-record", "whenever", "--operator", "owner"], 2,
                   "not a decision record"),
    "http-record": (["set", "--env", "staging", ALLOWLIST, "--decision-record", "http://x/DR", "--operator", "owner"], 2,
                    "not a decision record"),
    "unknown-env": (["set", "--env", "qa", ALLOWLIST, *DR, "--operator", "owner"], 2, "unknown environment"),
    "missing-env": (["set", ALLOWLIST, *DR, "--operator", "owner"], 2, "--env"),
    "missing-record": (["set", "--env", "staging", ALLOWLIST, "--operator", "owner"], 3, "missing decision record"),
    "unknown-operator": (["set", "--env", "staging", ALLOWLIST, *DR, "--operator", "mallory"], 3, "unknown operator"),
    "approver-sets": (["set", "--env", "staging", ALLOWLIST, *DR, "--operator", "approver"], 3, "may not"),
    "no-operator": (["set", "--env", "staging", ALLOWLIST, *DR], 3, "no operator"),
    "combined": (["set", "--env", "staging", ALLOWLIST, "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--operator", "owner"], 3,
                 "combined"),
    "unapproved-allowlist": (["set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=/etc/passwd", *DR, "--operator", "owner"],
                             3, "not an approved allowlist"),
    "missing-allowlist": (["set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/none.json", *DR, "--operator",
                           "owner"], 2, "not found"),
    "owner-approves": (["approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", *DR, "--operator", "owner"], 3,
                       "may not"),
    "approve-off-ladder": (["approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=3", *DR, "--operator", "approver"], 3,
                           "not a rung"),
    "approve-kill-on": (["approve", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, "--operator", "approver"], 3,
                        "needs no approval"),
    "approve-feature": (["approve", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, "--operator", "approver"], 3,
                        "only rollout increases and re-enabling"),
    "audit-bad-since": (["audit", "show", "--env", "staging", "--since", "yesterday"], 2, "ISO 8601"),
    "export-bad-format": (["audit", "export", "--env", "staging", "--format", "xml"], 2, "jsonl or csv"),
    "no-workspace": (["status", "--env", "staging", "--workspace", "/nonexistent/ws"], 2, "not a slotgen workspace"),
}


@pytest.mark.parametrize("case", sorted(ARG_CORPUS))
def test_malformed_values_and_arguments(ws, case):
    args, code, fragment = ARG_CORPUS[case]
    controls_before = (ws / "environments" / "staging.env").read_text()
    values_before = [ln for ln in controls_before.splitlines() if not ln.startswith("#")]
    log = ws / "environments" / "staging.audit.jsonl"
    entries_before = log.read_text().count("\n")
    workspace = [] if "--workspace" in args else ["--workspace", str(ws)]
    run = slotgen(*args, "--yes", *workspace) if args[0] in ("set", "approve") else slotgen(*args, *workspace)
    assert_one_line_error(run, code)
    assert fragment in run.stderr, run.stderr
    values_after = [ln for ln in (ws / "environments" / "staging.env").read_text().splitlines() if not ln.startswith("#")]
    assert values_after == values_before
    added = log.read_text().count("\n") - entries_before
    if code == 2:
        assert added == 0, "bad input is not recorded"
    else:
        assert added == 1 and '"action":"refused"' in log.read_text().splitlines()[-1], "a refusal is recorded"
