"""Guidance an operator can act on, through the real CLI: a failed check names its cause (and the rollback
records it), integrity failures name what differs and the command that puts it right, and
`slotgen endpoint serve` gives staging a local endpoint to rehearse against.

Real processes, real files, the real `openai` SDK against the shipped server on 127.0.0.1; nothing reaches
the internet (with no key configured, nothing is sent at all).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

from .helpers import assert_one_line_error, clean_env, command, slotgen

DR = ["--decision-record", "DR-31"]
ALLOWLIST = "allowlists/slot-generation-allowlist.v1.json"
LIVE = {"SLOTGEN_AI_KILL": "false", "FEATURE_SLOTGEN_AI": "true", "SLOTGEN_AI_ROLLOUT_PERCENT": "1",
        "SLOTGEN_AI_ALLOWLIST_PATH": ALLOWLIST}


# --- workspaces ---------------------------------------------------------------------------------------------------


def _walk_to_verified(root: Path) -> None:
    """`slotgen init`, then steps 1-5 (kill-switch still on: every job stubbed, no endpoint needed), signed by the
    demo operators' keys, in-process through the same change service the CLI calls."""
    from slotgen_ops.changes.steps import approve, set_control, verify_environment
    from slotgen_ops.workspace.init import init_workspace
    from slotgen_ops.policy.authority import resolve_actor
    from slotgen_ops.verification.samples import run_verification
    from slotgen_ops.workspace import Workspace

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from walked import demo_actor

    init_workspace(root, resolve_actor(None, "owner"))

    def env():
        return Workspace(root).environment("staging")

    def do_set(item: str, who: str, approval: str | None = None) -> None:
        result = set_control(env(), [item], actor=demo_actor(Workspace(root), who), decision_record="DR-31",
                             approval_id=approval, expect=None, dry_run=False, confirm=lambda p: True,
                             verifier=run_verification)
        assert result.ok, result.message

    do_set("SLOTGEN_AI_KILL=true", "owner")
    do_set("FEATURE_SLOTGEN_AI=true", "oncall")
    do_set(f"SLOTGEN_AI_ALLOWLIST_PATH={ALLOWLIST}", "owner")
    approval = approve(env(), ["SLOTGEN_AI_ROLLOUT_PERCENT=1"], actor=demo_actor(Workspace(root), "approver"),
                       decision_record="DR-31", dry_run=False, confirm=lambda p: True).approval_id
    do_set("SLOTGEN_AI_ROLLOUT_PERCENT=1", "oncall", approval)
    result = verify_environment(env(), actor=demo_actor(Workspace(root), "owner"), decision_record="DR-31",
                                verifier=run_verification)
    assert result.ok, result.message


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> Path:
    """A workspace at step 5 (verified, kill-switch on), from `slotgen init` with no endpoint configured."""
    root = tmp_path_factory.mktemp("template") / "ws"
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("OPENAI_", "SLOTGEN_"))}
    cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    try:
        _walk_to_verified(root)
    finally:
        os.environ.update(saved)
        if cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = cache
    return root


@pytest.fixture
def ws(verified: Path, tmp_path: Path) -> Path:
    """A copy of the step-5 workspace of its own."""
    root = tmp_path / "ws"
    shutil.copytree(verified, root, ignore=shutil.ignore_patterns("*.lock"))
    return root


def run(ws: Path, *args: str, env: dict | None = None):
    return slotgen(*args, "--workspace", str(ws), env=env)


def kill_off(ws: Path, env: dict | None = None, *extra: str):
    """Step 6: the kill-switch off, verified against whatever endpoint `env` points at."""
    return run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, "--operator", "owner", "--yes",
               *extra, env=env)


def last_entry(ws: Path) -> dict:
    lines = (ws / "environments" / "staging.audit.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])


def live_controls(ws: Path) -> None:
    """Make the walked workspace live (step 6 applied) so a plain `verify` sends the canary to the endpoint."""
    with serving() as (url, _):
        assert kill_off(ws, {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "rehearsal"}).code == 0


# --- 1. the cause of a failed check -------------------------------------------------------------------------------


def test_no_key_and_no_endpoint_the_failed_check_and_the_rollback_say_so(ws):
    r = kill_off(ws, None, "--json")
    assert r.code == 1, r.stderr
    doc = r.json()
    v = doc["verification"]
    assert v["passed"] is False and list(v)[:3] == ["passed", "cause", "causeKind"]
    assert v["causeKind"] == "configuration"
    assert v["cause"].startswith("no OpenAI API key: set OPENAI_API_KEY")
    assert "no endpoint is configured" in v["cause"] and "`slotgen endpoint serve`" in v["cause"]
    assert v["openaiCalls"] == 0 and v["codes"]["OPENAI_HTTP_ERROR"] == 2
    failing = [c for c in v["checks"] if not c["passed"]]
    assert [c["name"] for c in failing] == ["error-codes"]
    assert all(c["detail"].endswith(f"; cause: {v['cause']}") for c in failing)
    passing = [c for c in v["checks"] if c["passed"]]
    assert passing and not any("cause:" in c["detail"] for c in passing)
    # The rollback keeps its reason and appends the cause, in the result and in the audit log.
    reason = doc["rollback"]["reason"]
    assert reason == f"automatic: verification failed before step 6 (kill-switch-off) (error-codes); cause: {v['cause']}"
    entry = last_entry(ws)
    assert entry["action"] == "rollback" and entry["reason"] == reason and entry["state"]["controls"]["SLOTGEN_AI_KILL"] == "true"


def test_the_human_output_of_a_failed_change_shows_the_cause(ws):
    r = kill_off(ws)
    assert r.code == 1
    flat = " ".join(r.stdout.split())
    assert "cause: no OpenAI API key: set OPENAI_API_KEY" in flat


def test_nothing_listening_names_the_address_and_the_command_that_starts_one(ws):
    with socket.socket() as held:  # bound, never listening: a connection to it is refused, and the port stays ours
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1"
        r = kill_off(ws, {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-local"}, "--json")
    assert r.code == 1
    v = r.json()["verification"]
    assert v["causeKind"] == "configuration"
    assert v["cause"] == (f"nothing listens at {url} (connection refused; from OPENAI_BASE_URL): start one with "
                          f"`slotgen endpoint serve --port {port}`")
    assert r.json()["rollback"]["reason"].endswith(v["cause"])


@pytest.mark.parametrize("mode, words", [("nonjson", "that is not JSON"),
                                         ("schema_invalid", "that breaks the result schema")])
def test_model_behaviour_is_told_apart_from_configuration(ws, mode, words):
    live_controls(ws)
    with FakeOpenAIServer(mode) as server:
        r = run(ws, "verify", "--env", "staging", "--json",
                env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"})
    assert r.code == 1
    doc = r.json()
    assert list(doc)[:3] == ["passed", "cause", "causeKind"]
    assert doc["causeKind"] == "model"
    assert doc["cause"].startswith(f"model behaviour: 2 of 2 job(s) on the OpenAI path got an answer from "
                                   f"gpt-4o-mini {words}")
    assert all(c["detail"].endswith(f"; cause: {doc['cause']}") for c in doc["checks"] if not c["passed"])


def test_a_refused_key_and_a_failing_endpoint_are_named_by_their_status(ws):
    live_controls(ws)
    with FakeOpenAIServer("ok", require_key="the-right-key") as server:
        r = run(ws, "verify", "--env", "staging", "--json",
                env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "a-wrong-key"})
        assert r.code == 1
        assert r.json()["causeKind"] == "configuration"
        assert r.json()["cause"] == (f"the endpoint answered HTTP 401 (unauthorized): {server.base_url} refused the "
                                     "API key; check OPENAI_API_KEY")
        server.set_mode("http500")
        r = run(ws, "verify", "--env", "staging", "--json",
                env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "the-right-key"})
    assert r.code == 1
    assert r.json()["causeKind"] == "endpoint"
    assert r.json()["cause"].startswith(f"the endpoint answered HTTP 500 (a server error at {server.base_url})")


def test_a_passing_verification_has_no_cause(ws):
    live_controls(ws)
    with FakeOpenAIServer("ok") as server:
        r = run(ws, "verify", "--env", "staging", "--json",
                env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"})
    assert r.code == 0, r.stdout
    assert r.json()["passed"] is True and r.json()["cause"] is None and r.json()["causeKind"] is None
    assert not any("cause:" in c["detail"] for c in r.json()["checks"])


def test_a_timeout_names_the_setting_that_bounds_it(ws, monkeypatch):
    from slotgen_ops.verification.samples import run_verification
    from slotgen_ops.workspace import Workspace

    config = ws / "slotgen.yaml"
    config.write_text(re.sub(r"timeoutSeconds: \d+", "timeoutSeconds: 0.3", config.read_text()))
    with FakeOpenAIServer("hung") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        report = run_verification(Workspace(ws).environment("staging"), LIVE)
    assert report["passed"] is False and report["causeKind"] == "configuration"
    assert report["cause"] == (f"{server.base_url} did not answer within 0.3s (2 of 2 job(s) on the OpenAI path; "
                               "environments.staging.openai.timeoutSeconds): the endpoint is down, hung or overloaded")


def test_connection_failures_are_told_apart_by_their_cause_chain():
    from slotgen_ops.runtime import openai_executor as executor

    def chained(*links: BaseException) -> BaseException:
        for outer, inner in zip(links, links[1:]):
            outer.__cause__ = inner
        return links[0]

    assert executor.connection_failure(chained(OSError("Connection error."), ConnectionRefusedError(111, "refused"))) \
        == executor.FAILURE_REFUSED
    assert executor.connection_failure(chained(OSError("Connection error."), socket.gaierror(-2, "not known"))) \
        == executor.FAILURE_DNS
    assert executor.connection_failure(chained(OSError("Connection error."), TimeoutError())) \
        == executor.FAILURE_CONNECTION


# --- 2. integrity errors that point somewhere ----------------------------------------------------------------------


def assert_points_to(message: str, command_line: str) -> None:
    assert command_line in message, message
    assert "seq None" not in message and "run 'slotgen audit verify'" not in message, message


def test_hand_edited_controls_are_named_with_recorded_and_found_values(ws):
    controls = ws / "environments" / "staging.env"
    controls.write_text(controls.read_text().replace("SLOTGEN_AI_ROLLOUT_PERCENT=1", "SLOTGEN_AI_ROLLOUT_PERCENT=50"))
    said = 'SLOTGEN_AI_ROLLOUT_PERCENT recorded "1", found "50"'
    repair = "slotgen audit repair --env staging"

    changed = kill_off(ws)
    assert_one_line_error(changed, 4)
    assert said in changed.stderr and "with the kill-switch engaged" in changed.stderr
    assert_points_to(changed.stderr, repair)

    status = run(ws, "status", "--env", "staging", "--json").json()
    assert status["audit"]["valid"] is False and said in status["audit"]["problem"]
    assert status["next"]["commands"] == [repair]

    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4
    doc = verify.json()
    assert said in doc["reason"] and doc["remedy"] == repair
    assert_points_to(doc["reason"], repair)
    assert "slotgen audit verify" not in doc["reason"]

    fixed = run(ws, "audit", "repair", "--env", "staging", "--operator", "owner")
    assert fixed.code == 0, fixed.stderr
    again = run(ws, "audit", "verify", "--env", "staging", "--json").json()
    assert again["valid"] is True and again["remedy"] is None
    assert "SLOTGEN_AI_KILL=true" in controls.read_text() and "SLOTGEN_AI_ROLLOUT_PERCENT=1" in controls.read_text()


def test_an_older_controls_file_is_named_by_its_seq_and_values(ws):
    controls = ws / "environments" / "staging.env"
    log = ws / "environments" / "staging.audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    older = next(e for e in entries if e.get("control") == "FEATURE_SLOTGEN_AI")  # step 2
    from slotgen_ops.changes.controls_file import render_controls

    controls.write_bytes(render_controls("staging", older["state"]["controls"], older["seq"], older["hash"]))
    head = entries[-1]["seq"]
    repair = "slotgen audit repair --env staging"
    changed = kill_off(ws)
    assert_one_line_error(changed, 4)
    assert f"records audit seq {older['seq']} but the audit log's last entry is seq {head}" in changed.stderr
    assert f'SLOTGEN_AI_ALLOWLIST_PATH recorded "{ALLOWLIST}", found (unset)' in changed.stderr
    assert 'SLOTGEN_AI_ROLLOUT_PERCENT recorded "1", found "0"' in changed.stderr
    assert_points_to(changed.stderr, repair)

    doc = run(ws, "audit", "verify", "--env", "staging", "--json").json()
    assert doc["valid"] is False and doc["remedy"] == repair
    assert_points_to(doc["reason"], repair)
    assert run(ws, "audit", "repair", "--env", "staging", "--operator", "owner").code == 0
    assert run(ws, "audit", "verify", "--env", "staging", "--json").json()["valid"] is True


def test_a_damaged_controls_file_is_rewritten_by_repair(ws):
    controls = ws / "environments" / "staging.env"
    controls.write_text(controls.read_text() + "SLOTGEN_AI_KILL=false\n")
    doc = run(ws, "audit", "verify", "--env", "staging", "--json").json()
    assert doc["valid"] is False and "SLOTGEN_AI_KILL is set twice" in doc["reason"]
    assert_points_to(doc["reason"], "'slotgen audit repair --env staging' rewrites it from the audit log")
    changed = kill_off(ws)
    assert_one_line_error(changed, 4)
    assert_points_to(changed.stderr, "slotgen audit repair --env staging")
    assert run(ws, "audit", "repair", "--env", "staging", "--operator", "owner").code == 0
    assert run(ws, "audit", "verify", "--env", "staging", "--json").json()["valid"] is True


def test_a_missing_controls_file_says_rollback_then_repair(ws):
    (ws / "environments" / "staging.env").unlink()
    doc = run(ws, "audit", "verify", "--env", "staging", "--json").json()
    assert doc["valid"] is False and "controls file is missing" in doc["reason"]
    assert doc["remedy"] == "slotgen rollback --env staging --reason TEXT"
    assert_points_to(doc["reason"], "then 'slotgen audit repair --env staging' restores the audit log's values")
    # Following the advice works.
    assert run(ws, "rollback", "--env", "staging", "--reason", "controls file lost", "--operator", "owner").code == 0
    assert run(ws, "audit", "repair", "--env", "staging", "--operator", "owner").code == 0
    assert run(ws, "audit", "verify", "--env", "staging", "--json").json()["valid"] is True


def test_drifted_policy_files_are_named_with_how_to_accept_or_undo(ws):
    runbook = ws / "runbooks" / "beta-enable.yaml"
    original = runbook.read_bytes()
    runbook.write_bytes(original + b"# edited\n")
    (ws / "allowlists" / "extra.json").write_text("{}")

    changed = kill_off(ws)
    assert_one_line_error(changed, 4)
    line = changed.stderr
    assert "runbooks/beta-enable.yaml (changed since accepted)" in line
    assert "allowlists/extra.json (added, not in the accepted policy)" in line
    assert "'slotgen approve --env staging --config --decision-record REF'" in line
    assert "'slotgen config accept --env staging --decision-record REF --approval ID'" in line
    assert "remove allowlists/extra.json" in line and "restore runbooks/beta-enable.yaml as accepted" in line
    assert "seq None" not in line

    warnings = run(ws, "status", "--env", "staging", "--json").json()["warnings"]
    drift = [w for w in warnings if w.startswith("policy files differ")]
    assert len(drift) == 1 and "restore runbooks/beta-enable.yaml as accepted" in drift[0]

    # Undoing as told lifts the refusal.
    runbook.write_bytes(original)
    (ws / "allowlists" / "extra.json").unlink()
    dry = kill_off(ws, None, "--dry-run")
    assert dry.code == 0, dry.stderr


# --- 3. slotgen endpoint serve -------------------------------------------------------------------------------------


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`slotgen endpoint serve --port 0 ARGS` as a real process; yields the base URL it printed, then SIGTERMs it."""
    proc = subprocess.Popen(command("endpoint", "serve", "--port", "0", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = proc.stdout.readline()
        match = re.search(r"OPENAI_BASE_URL=(\S+) OPENAI_API_KEY=rehearsal", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(1), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_serve_prints_the_env_vars_and_the_openai_sdk_gets_a_valid_answer():
    import openai

    with serving() as (url, proc):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        client = openai.OpenAI(base_url=url, api_key="rehearsal", max_retries=0, timeout=10,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "jobId: rehearsal-1"}])
        result = json.loads(completion.choices[0].message.content)
        assert result["jobId"] == "rehearsal-1" and len(result["slots"]) == 2
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["rehearsal endpoint stopped after 1 completion request(s)"] and err == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_ctrl_c_or_a_dropped_session_stops_it_with_exit_0(signum):
    with serving("--mode", "nonjson") as (_, proc):
        proc.send_signal(signum)
        proc.send_signal(signum)  # a second one while stopping changes nothing
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.splitlines() == ["rehearsal endpoint stopped after 0 completion request(s)"]
    assert err == ""


def test_staging_walks_through_step_6_against_the_rehearsal_endpoint(ws):
    with serving() as (url, proc):
        r = kill_off(ws, {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "rehearsal"}, "--json")
        assert r.code == 0, r.stdout
        v = r.json()["verification"]
        assert v["passed"] is True and v["cause"] is None
        assert v["callCounter"] == "server" and v["openaiCalls"] == 2 and v["codes"]["COMPLETED"] == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.splitlines() == ["rehearsal endpoint stopped after 2 completion request(s)"]
    assert last_entry(ws)["action"] == "set" and last_entry(ws)["new"] == "false"


def test_a_non_loopback_host_is_refused_without_allow_remote():
    r = slotgen("endpoint", "serve", "--host", "0.0.0.0", "--port", "0")
    assert_one_line_error(r, 2)
    assert "--allow-remote" in r.stderr and "no authentication" in r.stderr and r.stdout == ""


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = slotgen("endpoint", "serve", "--port", str(port))
    assert_one_line_error(r, 2)
    assert f"port {port}" in r.stderr and "--port" in r.stderr and r.stdout == ""


def test_an_unknown_mode_is_refused():
    r = slotgen("endpoint", "serve", "--mode", "sometimes", "--port", "0")
    assert_one_line_error(r, 2)
    assert "ok, http500" in r.stderr
