"""`slotgen rollback` when everything else is broken (SPEC section 6, "In an incident: rollback always wins").

Real CLI child processes against a workspace walked live (`tests/walked.py`,
position 7: live at rollout 5, kill-switch OFF), then broken in every way
section 6 lists: the paperwork (operator, reason, decision record), the
workspace files, the audit log, the controls file behind a symlink, a
read-only log directory (a read-only bind mount) and a full disk (a small
tmpfs). Each time:

- the exit code is 0 (5 only when the controls themselves cannot be written,
  with `KILL-SWITCH NOT ENGAGED` on stderr), and no traceback;
- the file the runtime reads (through a symlink) holds SLOTGEN_AI_KILL=true;
- the act is recorded: in the audit log, or in a break-glass journal (beside the
  log, or `$XDG_STATE_HOME/slotgen/<12 hex>/staging.breakglass.jsonl`);
- what the product promises afterwards: `status --json` and `audit verify --json`
  include an unfolded break-glass entry, and where the log itself is sound
  `audit repair` folds it so that `audit verify` is valid.

The mounts need root (this suite runs as root); a mount that fails fails the
test with the reason, it never skips.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from slotgen_ops.changes.controls_file import runtime_values
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

from .helpers import Run, assert_one_line_error, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, kill_as_runtime_reads, walk  # noqa: E402

ENV = "staging"
WALKED_HEAD = 12  # the audit log's last seq at position 7 (init, the endpoint accepted as policy: 2, the walk: 9)
BALLAST = ".slotgen-reserve"  # the reserve a rollback frees on a full disk (controls_file.BALLAST_NAME)


@pytest.fixture(scope="module")
def endpoint():
    with FakeOpenAIServer("ok") as server:
        yield server


# -- the workspace under test --------------------------------------------------------------------------------------


@dataclass
class Ws:
    root: Path
    state: Path  # XDG_STATE_HOME of every child

    @property
    def env_dir(self) -> Path:
        return self.root / "environments"

    @property
    def controls(self) -> Path:
        return self.env_dir / f"{ENV}.env"

    @property
    def log(self) -> Path:
        return self.env_dir / f"{ENV}.audit.jsonl"

    @property
    def journal(self) -> Path:
        return self.env_dir / f"{ENV}.breakglass.jsonl"

    @property
    def fallback_journal(self) -> Path:
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        return self.state / "slotgen" / digest / f"{ENV}.breakglass.jsonl"

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"OPENAI_API_KEY": API_KEY, "XDG_STATE_HOME": str(self.state), **(extra or {})}

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return slotgen(*args, "--workspace", str(self.root), env=self.child_env(env), cwd=self.root)

    def rollback(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return self.run("rollback", "--env", ENV, "--json", *args, env=env)

    def kill(self) -> str | None:
        return kill_as_runtime_reads(self.controls)

    def runtime(self) -> dict[str, str | None]:
        return runtime_values(self.controls.read_bytes())


def make_ws(root: Path, state: Path, base_url: str, upto: int = 7) -> Ws:
    walk(root, upto, base_url)
    ws = Ws(root, state)
    assert ws.kill() == "false", "the walk must leave the kill-switch OFF"
    assert json_lines(ws.log)[-1]["seq"] == WALKED_HEAD
    return ws


@pytest.fixture
def live(tmp_path, endpoint) -> Ws:
    return make_ws(tmp_path / "ws", tmp_path / "state", endpoint.base_url)


# -- reading what was recorded ---------------------------------------------------------------------------------------


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON-object lines of a file, skipping damage (a log under test may be broken on purpose)."""
    if not path.is_file():
        return []
    out = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n") or len(raw) > 1 << 20:
                continue
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def log_rollback(ws: Ws) -> dict[str, Any] | None:
    """The operator's rollback, if it is the audit log's last act.

    The last entry is the rollback itself, or the verification after it (details.trigger
    'after-rollback', afterSeq naming the rollback, which is then the entry before).
    """
    entries = json_lines(ws.log)
    if not entries or entries[-1].get("seq", 0) <= WALKED_HEAD:
        return None
    last = entries[-1]
    if last.get("action") == "verify" and (last.get("details") or {}).get("trigger") == "after-rollback":
        if len(entries) < 2 or entries[-2].get("seq") != last["details"].get("afterSeq"):
            return None
        last = entries[-2]
    if last.get("action") == "rollback" and (last.get("details") or {}).get("trigger") == "operator":
        return last
    return None


def journal_rollbacks(ws: Ws) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, entry) for path in (ws.journal, ws.fallback_journal) for entry in json_lines(path)
            if entry.get("action") == "rollback"]


def recorded(ws: Ws) -> tuple[str, dict[str, Any]]:
    """Where the rollback was recorded ('log' or the journal's path) and its entry; fails if nowhere."""
    entry = log_rollback(ws)
    if entry is not None:
        return "log", entry
    found = journal_rollbacks(ws)
    assert found, (f"the rollback is recorded nowhere: not the last act of {ws.log}, not in {ws.journal} nor "
                   f"{ws.fallback_journal}")
    path, entry = found[-1]
    return str(path), entry


# -- the assertions every case makes ---------------------------------------------------------------------------------


class Soft:
    """Checks that are collected, not raised at once, so one broken promise does not hide the next.

    The kill-switch as the runtime reads it, tracebacks and where the act is recorded stay hard
    assertions; `done()` fails the test with every collected failure.
    """

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return ok

    def json(self, run: Run, what: str) -> Any:
        try:
            return run.json()
        except ValueError:
            self.failures.append(f"{what}: no JSON document on stdout (exit {run.code}); stderr: "
                                 f"{run.stderr.strip()[:600]}")
            return None

    def done(self) -> None:
        if self.failures:
            pytest.fail("\n".join(f"- {f}" for f in self.failures), pytrace=False)


@pytest.fixture
def soft() -> Soft:
    return Soft()


def _brief(run: Run) -> str:
    return f"exit {run.code}; stderr: {run.stderr.strip()[:800]}"


def _only_telemetry_out_of_space(doc: dict[str, Any]) -> bool:
    """The verification after the rollback failed only because telemetry could not be written (full disk)."""
    failed = [c for c in ((doc.get("verification") or {}).get("checks") or []) if not c.get("passed")]
    return bool(failed) and all(c["name"] == "telemetry-schema" and "No space left" in c["detail"] for c in failed)


def assert_engaged(ws: Ws, run: Run, soft: Soft, disk_full: bool = False) -> dict[str, Any]:
    """No traceback and the runtime reads SLOTGEN_AI_KILL=true (hard); exit 0 and the JSON saying so (soft).

    On a full disk the verification after the rollback may fail its telemetry check (the telemetry file
    cannot grow): that is a check that ran and failed, so exit 1 (SPEC section 2), the kill-switch engaged.
    """
    assert "Traceback" not in run.stderr, run.stderr
    assert ws.kill() == "true", (run.code, run.stderr, ws.controls.read_text())
    doc = soft.json(run, "rollback --json") or {}
    telemetry_only = disk_full and run.code == 1 and _only_telemetry_out_of_space(doc)
    soft.check(run.code == 0 or telemetry_only, f"rollback: expected exit 0, got {run.code} "
               f"({(run.stdout and _message(run)) or run.stderr.strip()[:800]})")
    soft.check(doc.get("ok") is True or telemetry_only,
               f"rollback --json: ok is {doc.get('ok')!r}, message {doc.get('message')!r}")
    info = doc.get("rollback") or {}
    soft.check(info.get("engaged") is True and info.get("new") == "true", f"rollback --json: rollback is {info}")
    return doc


def _message(run: Run) -> str:
    try:
        doc = run.json()
    except ValueError:
        return ""
    failed = [c for c in ((doc.get("verification") or {}).get("checks") or []) if not c.get("passed")]
    return f"message {doc.get('message')!r}; failed checks {failed}"


def warnings_of(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("warning:")]


def assert_break_glass_reported(ws: Ws, where: str, entry: dict[str, Any], soft: Soft) -> None:
    """`status --json` and `audit verify --json` include the unfolded break-glass rollback (from journal `where`)."""
    status = ws.run("status", "--env", ENV, "--json")
    assert "Traceback" not in status.stderr, status.stderr
    soft.check(status.code in (0, 4), f"status --json after a break-glass rollback: {_brief(status)}")
    doc = soft.json(status, "status --json after a break-glass rollback")
    if doc is not None:
        soft.check(doc["controls"]["SLOTGEN_AI_KILL"] == "true", f"status --json: controls {doc['controls']}")
        glass = [g for g in doc.get("breakGlass", []) if g.get("seq") == entry["seq"] and g.get("ts") == entry["ts"]
                 and g.get("log") == where]
        soft.check(bool(glass) and glass[0]["folded"] is False,
                   f"status --json: breakGlass does not list the unfolded entry of {where}: {doc.get('breakGlass')}")
        soft.check(any("break-glass" in w for w in doc["warnings"]),
                   f"status --json: no warning about the break-glass entry: {doc['warnings']}")

    verify = ws.run("audit", "verify", "--env", ENV, "--json")
    assert "Traceback" not in verify.stderr, verify.stderr
    soft.check(verify.code in (0, 4), f"audit verify --json after a break-glass rollback: {_brief(verify)}")
    vdoc = soft.json(verify, "audit verify --json after a break-glass rollback")
    if vdoc is not None:
        glass = vdoc.get("breakGlass") or {}
        listed = [j for j in glass.get("journals", []) if j.get("path") == where]
        soft.check(bool(listed) and listed[0]["entries"] >= 1,
                   f"audit verify --json: breakGlass.journals does not list {where} with its entry: {glass}")
        soft.check(glass.get("unfolded", 0) >= 1,
                   f"audit verify --json: breakGlass.unfolded is {glass.get('unfolded')!r} although {where} holds "
                   f"an unfolded rollback (valid={vdoc.get('valid')}, reason={vdoc.get('reason')!r})")


def assert_repaired(ws: Ws, entry: dict[str, Any] | None, soft: Soft) -> None:
    """`audit repair` folds the break-glass rollback; `audit verify` is then valid; the kill-switch stays engaged."""
    repair = ws.run("audit", "repair", "--env", ENV, "--operator", "owner", "--json")
    assert "Traceback" not in repair.stderr, repair.stderr
    assert ws.kill() == "true", "audit repair lowered safety"
    if soft.check(repair.code == 0, f"audit repair on a sound chain: {_brief(repair)}"):
        assert_valid(ws, soft, entry)


def assert_valid(ws: Ws, soft: Soft, entry: dict[str, Any] | None = None) -> None:
    """`audit verify` valid with nothing unfolded (and the journal entry folded, named by its hash); status agrees."""
    verify = ws.run("audit", "verify", "--env", ENV, "--json")
    assert "Traceback" not in verify.stderr, verify.stderr
    assert ws.kill() == "true"
    soft.check(verify.code == 0, f"audit verify: {_brief(verify)}")
    doc = soft.json(verify, "audit verify --json")
    if doc is not None:
        soft.check(doc["valid"] is True and doc["firstBad"] is None and doc["breakGlass"]["unfolded"] == 0,
                   f"audit verify --json: {doc}")
    if entry is not None:
        folds = [e for e in json_lines(ws.log) if e.get("action") == "rollback"
                 and (e.get("details") or {}).get("trigger") == "break-glass-fold"]
        soft.check(any(e["details"].get("breakGlassHash") == entry["hash"] for e in folds),
                   f"the break-glass entry (hash {entry['hash'][:12]}) is not folded into the log: {folds}")
    status = ws.run("status", "--env", ENV, "--json")
    assert "Traceback" not in status.stderr, status.stderr
    soft.check(status.code == 0, f"status: {_brief(status)}")
    sdoc = soft.json(status, "status --json")
    if sdoc is not None:
        soft.check(sdoc["audit"]["valid"] is True and sdoc["controls"]["SLOTGEN_AI_KILL"] == "true",
                   f"status --json: audit {sdoc['audit']}, controls {sdoc['controls']}")
        soft.check(all(g["folded"] for g in sdoc["breakGlass"]), f"status --json: breakGlass {sdoc['breakGlass']}")


def assert_no_temp_files(*directories: Path) -> None:
    for directory in directories:
        stray = [p.name for p in directory.iterdir() if ".tmp-" in p.name]
        assert not stray, (directory, stray)


# -- 1. the paperwork --------------------------------------------------------------------------------------------------

UNIDENTIFIED = "recorded as unidentified"

PAPERWORK = {
    # id: (arguments, child env, {entry field: expected}, warning fragment)
    "no-operator": (["--reason", "incident"], {},
                    {"operator": None, "identity": "unidentified", "reason": "incident"}, UNIDENTIFIED),
    "unknown-operator": (["--operator", "mallory", "--reason", "incident"], {},
                         {"operator": "mallory", "identity": "unidentified"}, UNIDENTIFIED),
    "unknown-operator-from-env": (["--reason", "incident"], {"SLOTGEN_OPERATOR": "mallory"},
                                  {"operator": "mallory", "identity": "unidentified"}, UNIDENTIFIED),
    "wrong-role": (["--operator", "approver", "--reason", "incident"], {},
                   {"operator": "approver", "identity": "unidentified"}, UNIDENTIFIED),
    "empty-operator": (["--operator", "", "--reason", "incident"], {},
                       {"operator": None, "identity": "unidentified"}, UNIDENTIFIED),
    # SPEC section 7: no valid signing key still engages the kill-switch, recorded as unidentified (unsigned).
    "no-key": (["--operator", "oncall", "--reason", "incident"], {"SLOTGEN_SIGNING_KEY": ""},
               {"operator": "oncall", "identity": "unidentified"}, UNIDENTIFIED),
    "another-operators-key": (["--operator", "oncall", "--reason", "incident", "--key", "demo-keys/approver"], {},
                              {"operator": "oncall", "identity": "unidentified"}, UNIDENTIFIED),
    "missing-key-file": (["--operator", "oncall", "--reason", "incident"], {"SLOTGEN_SIGNING_KEY": "/nonexistent/key"},
                         {"operator": "oncall", "identity": "unidentified"}, UNIDENTIFIED),
    "no-reason": (["--operator", "oncall"], {},
                  {"operator": "oncall", "identity": "signed", "reason": "(none given)"}, "(none given)"),
    "blank-reason": (["--operator", "oncall", "--reason", "   "], {},
                     {"operator": "oncall", "identity": "signed", "reason": "(none given)"}, "(none given)"),
    "malformed-decision-record": (["--operator", "oncall", "--reason", "incident", "--decision-record", "nope"], {},
                                  {"operator": "oncall", "identity": "signed", "decisionRecord": "nope"},
                                  "recorded as given"),
}


@pytest.mark.parametrize("case", list(PAPERWORK))
def test_rollback_with_bad_paperwork_is_never_refused(live, soft, case):
    args, child_env, expected, warning = PAPERWORK[case]
    run = live.rollback(*args, env=child_env)
    assert_engaged(live, run, soft)
    where, entry = recorded(live)
    assert where == "log", f"the log is sound: the rollback belongs in it, not in {where}"
    got = {"operator": entry["operator"], "identity": entry["actor"]["identity"], "reason": entry["reason"],
           "decisionRecord": entry["decisionRecord"]}
    soft.check({k: got[k] for k in expected} == expected, f"entry: expected {expected}, got {got}")
    soft.check(entry["actor"]["os"]["uid"] == os.getuid(), f"OS account not recorded: {entry['actor']}")
    soft.check(any(warning in w for w in warnings_of(run)), f"no warning containing {warning!r}: {run.stderr}")
    assert_valid(live, soft)
    soft.done()


# -- 2. broken workspace files ----------------------------------------------------------------------------------------


def _append(relative: str, text: str) -> Callable[[Path], None]:
    def breaker(root: Path) -> None:
        path = root / relative
        path.write_text(path.read_text() + text)
    return breaker


def _replace(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def breaker(root: Path) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1))
    return breaker


def _overwrite(relative: str, text: str) -> Callable[[Path], None]:
    def breaker(root: Path) -> None:
        (root / relative).write_text(text)
    return breaker


BROKEN_FILES = {
    # id: (file, breaker, the operator is identified despite it)
    "slotgen-yaml-syntax": ("slotgen.yaml", _append("slotgen.yaml", "\nbroken: [unclosed, {\n"), True),
    "operators-yaml-syntax": ("operators.yaml", _append("operators.yaml", "\n  - id: [unclosed\n"), False),
    "operator-empty-name": ("operators.yaml",
                            _replace("operators.yaml", "name: On-call Operator (demo)", 'name: ""'), False),
    "runbook-broken": ("runbooks/beta-enable.yaml",
                       _overwrite("runbooks/beta-enable.yaml", "schemaVersion: 1\nsteps: [\n  - id: {\n"), True),
    "allowlist-broken-json": ("allowlists/slot-generation-allowlist.v1.json",
                              _overwrite("allowlists/slot-generation-allowlist.v1.json", '{"version": 1, "rules": [\n'),
                              True),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_rollback_with_a_broken_workspace_file(live, soft, case):
    relative, breaker, identified = BROKEN_FILES[case]
    original = (live.root / relative).read_bytes()
    breaker(live.root)
    run = live.rollback("--operator", "oncall", "--reason", f"incident: {case}")
    assert_engaged(live, run, soft)
    where, entry = recorded(live)
    soft.check(entry["operator"] == "oncall" and entry["reason"] == f"incident: {case}", f"entry: {entry}")
    soft.check(entry["actor"]["identity"] == ("signed" if identified else "unidentified"),
               f"actor: {entry['actor']}")
    if not identified:
        soft.check(any(UNIDENTIFIED in w for w in warnings_of(run)), f"no 'unidentified' warning: {run.stderr}")
    # While the file is broken, the other commands answer with a report or one clear line naming it.
    readable = True
    for args in (("status", "--env", ENV, "--json"), ("audit", "verify", "--env", ENV, "--json")):
        other = live.run(*args)
        assert "Traceback" not in other.stderr, (args, other.stderr)
        if other.code == 2:
            assert_one_line_error(other, 2)
            soft.check(relative.split("/")[-1] in other.stderr, f"{args}: the error does not name {relative}: "
                       f"{other.stderr}")
            readable = False
        else:
            soft.check(other.code in (0, 4), f"{args} with a broken {relative}: {_brief(other)}")
    if where != "log" and readable:
        assert_break_glass_reported(live, where, entry, soft)
    # The operator fixes the file: the log is whole and agrees with the controls (after folding, if needed).
    (live.root / relative).write_bytes(original)
    if where == "log":
        assert_valid(live, soft)
    else:
        assert_repaired(live, entry, soft)
    soft.done()


# -- 3. a broken audit log --------------------------------------------------------------------------------------------


def _append_bytes(data: bytes) -> Callable[[Ws], None]:
    def breaker(ws: Ws) -> None:
        with open(ws.log, "ab") as fh:
            fh.write(data)
    return breaker


def _enormous_line(ws: Ws) -> None:
    with open(ws.log, "ab") as fh:
        chunk = b"x" * (1 << 20)
        for _ in range(20):
            fh.write(chunk)
        fh.write(b"\n")


def _delete_log(ws: Ws) -> None:
    ws.log.unlink()


def _log_is_a_directory(ws: Ws) -> None:
    ws.log.unlink()
    ws.log.mkdir()


BROKEN_LOGS = {
    # id: (breaker, the chain before the damage is intact, so `audit repair` can fold the journal into it)
    "torn-last-line": (_append_bytes(b'{"seq": 11, "action": "set", "control": "SLOTGEN_AI_K'), True),
    "nested-line": (_append_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n"), True),
    "enormous-line": (_enormous_line, True),
    "log-deleted": (_delete_log, False),
    "log-is-a-directory": (_log_is_a_directory, False),
}


@pytest.mark.parametrize("case", list(BROKEN_LOGS))
def test_rollback_with_a_broken_audit_log(live, soft, case):
    breaker, sound = BROKEN_LOGS[case]
    breaker(live)
    run = live.rollback("--operator", "oncall", "--reason", f"incident: {case}")
    doc = assert_engaged(live, run, soft)
    where, entry = recorded(live)
    assert where == str(live.journal), f"the log cannot take it: expected the journal beside it, got {where}"
    soft.check(entry["operator"] == "oncall" and entry["reason"] == f"incident: {case}", f"entry: {entry}")
    info = doc.get("rollback") or {}
    soft.check(info.get("breakGlass") is True and info.get("breakGlassSeq") == entry["seq"], f"rollback: {info}")
    soft.check(any("break-glass" in w for w in warnings_of(run)), f"no break-glass warning: {run.stderr}")
    assert_break_glass_reported(live, where, entry, soft)
    if sound:
        assert_repaired(live, entry, soft)
    else:  # nothing to fold into: repair says so in one line (or does what it safely can), never lowering safety
        repair = live.run("audit", "repair", "--env", ENV, "--operator", "owner")
        assert "Traceback" not in repair.stderr, repair.stderr
        if repair.code != 0:
            assert_one_line_error(repair, 4)
        assert live.kill() == "true"
    soft.done()


# -- 4. the controls file is a symlink (a service reading /etc/slotgen/staging.env) ------------------------------------


def symlink_controls(ws: Ws, outside: Path) -> Path:
    """Move the controls file to `outside` and symlink it back; the target."""
    outside.mkdir(parents=True, exist_ok=True)
    target = outside / f"{ENV}.env"
    os.replace(ws.controls, target)
    ws.controls.symlink_to(target)
    return target


def assert_still_linked(ws: Ws, target: Path) -> None:
    assert ws.controls.is_symlink(), "the symlink was replaced by a regular file"
    assert Path(os.readlink(ws.controls)) == target
    assert target.is_file() and not target.is_symlink()


def test_rollback_writes_through_a_symlinked_controls_file(live, soft, tmp_path):
    target = symlink_controls(live, tmp_path / "etc-slotgen")
    run = live.rollback("--operator", "oncall", "--reason", "incident")
    assert_engaged(live, run, soft)
    assert_still_linked(live, target)
    assert kill_as_runtime_reads(target) == "true"
    assert recorded(live)[0] == "log"
    assert_no_temp_files(live.env_dir, target.parent)
    assert_valid(live, soft)
    assert_still_linked(live, target)
    soft.done()


def test_set_keeps_a_symlinked_controls_file(live, soft, tmp_path):
    target = symlink_controls(live, tmp_path / "etc-slotgen")
    run = live.run("set", "--env", ENV, "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-9",
                   "--operator", "owner", "--yes")
    assert run.code == 0, (run.code, run.stdout, run.stderr)
    assert_still_linked(live, target)
    assert runtime_values(target.read_bytes())["SLOTGEN_AI_ROLLOUT_PERCENT"] == "1"
    assert kill_as_runtime_reads(target) == "false"
    assert_no_temp_files(live.env_dir, target.parent)
    run = live.rollback("--operator", "oncall", "--reason", "incident after the step down")
    assert_engaged(live, run, soft)
    assert_still_linked(live, target)
    assert kill_as_runtime_reads(target) == "true"
    assert_valid(live, soft)
    soft.done()


# -- 5. a read-only log directory --------------------------------------------------------------------------------------


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()} -- these tests need "
                    "root and permission to mount (a read-only bind mount, a small tmpfs); they never skip")


def _mounted(path: Path) -> bool:
    """Is something mounted at `path`? (os.path.ismount misses a bind mount of a directory onto itself.)"""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return any(line.split()[4].replace("\\040", " ") == wanted for line in fh)


def _umount(path: Path) -> None:
    while _mounted(path):
        proc = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            proc = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise AssertionError(f"cannot unmount {path}: {proc.stderr.strip()}")


@pytest.fixture
def mounts():
    """Mount helpers; every mount is undone, innermost first, when the test ends (pass or fail)."""
    done: list[Path] = []

    class Mounts:
        def read_only(self, directory: Path) -> None:
            _mount("--bind", str(directory), str(directory))
            done.append(directory)
            _mount("-o", "remount,ro,bind", str(directory), str(directory))
            with pytest.raises(OSError) as caught:
                (directory / ".probe").write_text("x")
            assert caught.value.errno == errno.EROFS

        def tmpfs(self, directory: Path, size: str) -> None:
            directory.mkdir(parents=True, exist_ok=True)
            _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
            done.append(directory)

        def undo(self, directory: Path) -> None:
            _umount(directory)
            done.remove(directory)

    yield Mounts()
    for directory in reversed(done):
        _umount(directory)


def test_rollback_with_a_read_only_log_directory_and_controls_outside(live, soft, tmp_path, mounts):
    target = symlink_controls(live, tmp_path / "etc-slotgen")
    log_before = live.log.read_bytes()
    mounts.read_only(live.env_dir)
    run = live.rollback("--operator", "oncall", "--reason", "incident: read-only log")
    doc = assert_engaged(live, run, soft)
    assert_still_linked(live, target)
    assert kill_as_runtime_reads(target) == "true"
    where, entry = recorded(live)
    assert where == str(live.fallback_journal), where
    assert not live.journal.exists()
    soft.check((doc.get("rollback") or {}).get("breakGlassLog") == where, f"rollback: {doc.get('rollback')}")
    assert live.log.read_bytes() == log_before
    assert_break_glass_reported(live, where, entry, soft)
    # The directory is writable again: the journal is folded into the (sound) log.
    mounts.undo(live.env_dir)
    assert_repaired(live, entry, soft)
    assert_still_linked(live, target)
    soft.done()


def test_rollback_cannot_write_controls_in_a_read_only_directory(live, mounts):
    controls_before, log_before = live.controls.read_bytes(), live.log.read_bytes()
    mounts.read_only(live.env_dir)
    run = live.rollback("--operator", "oncall", "--reason", "incident: read-only controls")
    assert_one_line_error(run, 5)
    assert "KILL-SWITCH NOT ENGAGED" in run.stderr
    # --json: the verdict as one document on stdout too, never anything that reads as engaged
    doc = run.json()
    assert doc["ok"] is False and doc["engaged"] is False and "KILL-SWITCH NOT ENGAGED" in doc["error"], doc
    assert doc["controlsFile"] == str(live.controls) and "auditSeq" not in doc
    # Nothing else changed: the controls and the log are as they were (and the runtime still reads OFF).
    assert live.controls.read_bytes() == controls_before
    assert live.log.read_bytes() == log_before
    assert live.kill() == "false"
    assert_no_temp_files(live.env_dir)
    # The failed attempt may be kept in the fallback journal, but never as if the kill-switch were engaged.
    for _, entry in journal_rollbacks(live):
        assert "KILL-SWITCH NOT ENGAGED" in ((entry.get("details") or {}).get("problem") or ""), entry


# -- 6. a full disk ------------------------------------------------------------------------------------------------------


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem has no block left (ENOSPC at every size)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    probe = directory / "environments" / ".probe"
    with pytest.raises(OSError) as caught:
        probe.write_bytes(b"x" * 8192)
    assert caught.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)
    return filler


@pytest.fixture
def full_disk(tmp_path, endpoint, mounts) -> Ws:
    """A workspace walked live on a 4 MB tmpfs (XDG_STATE_HOME outside it), not yet filled."""
    disk = tmp_path / "disk"
    mounts.tmpfs(disk, "4m")
    ws = make_ws(disk / "ws", tmp_path / "state", endpoint.base_url)
    assert (ws.env_dir / BALLAST).is_file(), "the walk should leave the ballast in environments/"
    return ws


def test_rollback_on_a_full_disk_releases_the_ballast(full_disk, soft):
    ws = full_disk
    log_before = ws.log.read_bytes()
    filler = fill(ws.root)
    run = ws.rollback("--operator", "oncall", "--reason", "incident: disk full")
    doc = assert_engaged(ws, run, soft, disk_full=True)
    soft.check((doc.get("rollback") or {}).get("written") == "replaced", f"rollback: {doc.get('rollback')}")
    where, entry = recorded(ws)
    assert entry["reason"] == "incident: disk full"
    # The ballast exists so that the rollback can record itself on the full disk: in the log, or beside it.
    soft.check(where in ("log", str(ws.journal)),
               f"the released ballast did not make room for the record: it went to {where} "
               f"({(doc.get('rollback') or {}).get('problem')}); ballast present after the rollback: "
               f"{(ws.env_dir / BALLAST).exists()}")
    tail = ws.log.read_bytes()[len(log_before):]
    soft.check(tail == b"" or tail.endswith(b"\n"),
               f"the rollback left a torn line of {len(tail)} bytes in the audit log")
    if where != "log":
        assert_break_glass_reported(ws, where, entry, soft)
    filler.unlink()  # the operator frees space
    if where == "log":
        assert_valid(ws, soft)
    else:
        assert_repaired(ws, entry, soft)
    soft.done()


def test_rollback_on_a_full_disk_without_ballast_writes_in_place(full_disk, soft):
    ws = full_disk
    (ws.env_dir / BALLAST).unlink()
    filler = fill(ws.root)
    run = ws.rollback("--operator", "oncall", "--reason", "incident: disk full, no reserve")
    doc = assert_engaged(ws, run, soft, disk_full=True)
    soft.check((doc.get("rollback") or {}).get("written") == "in place", f"rollback: {doc.get('rollback')}")
    where, entry = recorded(ws)
    assert where == str(ws.fallback_journal), where
    assert entry["reason"] == "incident: disk full, no reserve"
    assert_break_glass_reported(ws, where, entry, soft)
    filler.unlink()
    assert_repaired(ws, entry, soft)
    soft.done()


def test_set_on_a_full_disk_is_one_clear_line_and_changes_nothing(full_disk):
    ws = full_disk
    fill(ws.root)
    before = ws.runtime()
    log_before = ws.log.read_bytes()
    run = ws.run("set", "--env", ENV, "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-9",
                 "--operator", "owner", "--yes")
    assert "Traceback" not in run.stderr, run.stderr
    assert run.code in (2, 4), (run.code, run.stdout, run.stderr)
    assert_one_line_error(run, run.code)
    assert ws.runtime() == before
    assert ws.kill() == "false"
    # No entry was added (a failed append may leave a torn fragment, which the error line says how to cut).
    assert ws.log.read_bytes().startswith(log_before), "the audit log was rewritten"
    assert json_lines(ws.log)[-1]["seq"] == WALKED_HEAD
