"""A seeded fault campaign: real `slotgen` processes signalled at random moments (SPEC section 6).

Each run copies a workspace walked to a runbook position, runs one changing
command there in a real child process (through the test-only launcher
tests/faultwrap.py) and hits it with SIGKILL, SIGTERM, SIGHUP or SIGINT,
either at a named point of the write protocol (`--at POINT[#N] --do SIG`) or
after a random wall-clock delay (`--after-ms MS --signal SIG`). Then the
"next command" (`status`, in-process) runs and the promises of section 6 are
checked:

1. the next command closes anything left open, fail closed, recorded and said;
2. `audit verify` passes;
3. the log and the controls agree: nothing pending, no kill-switch engaged
   outside the log, the controls file holds the head entry's controls;
4. nothing is live unverified: with the kill-switch off (as the runtime reads
   the file) the head state's verification passes and so does the last `set`,
   and every `set` entry carries a passing verification;
5. no temp file of a dead writer is left in environments/;
6. a child stopped by a catchable signal printed no Python traceback;
7. a catchable signal inside the critical section is deferred to its end: it
   never separates the commit point from the controls write.

The plan is drawn from `random.Random(SEED)`: first a sweep of every command
at every one of its named points (SIGKILL, and a catchable signal), then
random commands, signals and moments, about half at a named point and half
after a random delay. A failing run is reproduced by its index; how far a
child got when a wall-clock signal landed is, by nature, up to the machine.
Two children run at a time, each with a fake endpoint of its own (the
verification counts the calls its endpoint received). `-s` prints the counts
per (command, signal, outcome).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
from cli.helpers import clean_env, command, demo_key  # noqa: E402
from walked import API_KEY, demo_actor, kill_as_runtime_reads, walk  # noqa: E402

SEED = 20261123
RUNS = 400
WORKERS = 2
CHILD_TIMEOUT_S = 90

# A torn last line, as an interrupted append leaves it (no newline).
TORN = b'{"seq": 9'

SIGNAL_WEIGHTS = {"kill": 30, "term": 30, "hup": 25, "int": 15}

WRITE_POINTS = ["writer-locked", "audit-before-write", "after-audit-append", "controls-after-temp-write",
                "controls-before-rename", "controls-after-rename"]
VERIFY_POINTS = ["before-verify", "after-verify"]
ROLLBACK_POINTS = ["rollback-after-first-write", "rollback-engaged"]
# atomic_write's own points (the cut line's evidence file in `audit repair`).
ATOMIC_POINTS = ["after-temp-write", "after-rename"]


@dataclass(frozen=True)
class Command:
    name: str
    positions: tuple[str, ...]  # template names it may start from
    args: tuple[str, ...]
    points: tuple[str, ...]
    window_ms: int              # --after-ms is drawn from 0..window_ms: a bit over the child's run time,
                                # measured from faultwrap's start on a 2-core machine, 2 children at a time
    torn: bool = False          # append a torn line to the log first (audit repair)


def _set(item: str, dr: str, operator: str = "owner", *extra: str) -> tuple[str, ...]:
    return ("set", "--env", "staging", item, "--decision-record", dr, "--operator", operator, "--yes", *extra)


APPROVAL_FILE = "approval-id"  # in the "6a" template: the approval for SLOTGEN_AI_ROLLOUT_PERCENT=5 under DR-6

COMMANDS = [
    Command("set-kill-on", ("0",), _set("SLOTGEN_AI_KILL=true", "DR-3"), (*VERIFY_POINTS, *WRITE_POINTS), 450),
    Command("set-feature", ("1",), _set("FEATURE_SLOTGEN_AI=true", "DR-3"), (*VERIFY_POINTS, *WRITE_POINTS), 450),
    Command("set-allowlist", ("2",), _set("SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
                                          "DR-3"), (*VERIFY_POINTS, *WRITE_POINTS), 450),
    Command("verify", ("4",), ("verify", "--env", "staging", "--operator", "owner", "--decision-record", "DR-5"),
            (*VERIFY_POINTS, *WRITE_POINTS), 450),
    Command("set-kill-off", ("5",), _set("SLOTGEN_AI_KILL=false", "DR-5"), (*VERIFY_POINTS, *WRITE_POINTS), 900),
    Command("approve-5", ("6",), ("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record",
                                  "DR-6", "--operator", "approver", "--yes"), tuple(WRITE_POINTS), 350),
    Command("set-rollout-5", ("6a",), _set("SLOTGEN_AI_ROLLOUT_PERCENT=5", "DR-6", "oncall"),
            (*VERIFY_POINTS, *WRITE_POINTS), 900),
    Command("step-down", ("7",), _set("SLOTGEN_AI_ROLLOUT_PERCENT=1", "DR-7"), (*VERIFY_POINTS, *WRITE_POINTS), 900),
    Command("rollback", ("0", "1", "2", "3", "4", "5", "6", "7"),
            ("rollback", "--env", "staging", "--reason", "x", "--operator", "oncall"),
            (*ROLLBACK_POINTS, *WRITE_POINTS), 450),
    Command("audit-repair", ("1", "3", "5", "6", "7"), ("audit", "repair", "--env", "staging", "--operator", "owner"),
            (*WRITE_POINTS, *ATOMIC_POINTS), 300, torn=True),
]


@dataclass(frozen=True)
class Plan:
    index: int
    command: Command
    position: str
    signal: str
    moment: str            # "point" or "time"
    point: str | None
    nth: int
    after_ms: int | None

    def fault(self) -> list[str]:
        if self.moment == "point":
            at = self.point if self.nth == 1 else f"{self.point}#{self.nth}"
            return ["--at", at, "--do", self.signal]
        return ["--after-ms", str(self.after_ms), "--signal", self.signal]

    def describe(self) -> str:
        moment = (f"--at {self.point}#{self.nth}" if self.moment == "point" else f"--after-ms {self.after_ms}")
        return f"run {self.index}: {self.command.name} from position {self.position}, SIG{self.signal.upper()} {moment}"


CATCHABLE = ("term", "hup", "int")


def make_plan(seed: int = SEED, runs: int = RUNS) -> list[Plan]:
    """The campaign, drawn from `seed`.

    First a sweep: every command at every one of its named points, once with
    SIGKILL (a crash there) and once with a catchable signal (deferred across
    the critical section); rollback and audit repair cycle through their
    positions. Then random runs to `runs` in all: a random command, signal
    (SIGKILL, SIGTERM, SIGHUP, some SIGINT) and moment, either a named point
    (sometimes its second occurrence) or a random delay, drawn so that with
    the sweep about half of all runs are at a named point.
    """
    rng = random.Random(seed)
    plans: list[Plan] = []
    for cmd in COMMANDS:
        for j, point in enumerate(cmd.points):
            position = cmd.positions[j % len(cmd.positions)]
            for sig in ("kill", CATCHABLE[(len(plans) // 2) % len(CATCHABLE)]):
                plans.append(Plan(len(plans), cmd, position, sig, "point", point, 1, None))
    names, weights = list(SIGNAL_WEIGHTS), list(SIGNAL_WEIGHTS.values())
    # The sweep is all named points: draw the rest so that points and delays come out about even.
    p_time = min(1.0, (runs / 2) / max(1, runs - len(plans)))
    while len(plans) < runs:
        cmd = rng.choice(COMMANDS)
        position = rng.choice(cmd.positions)
        sig = rng.choices(names, weights)[0]
        if rng.random() >= p_time:
            point = rng.choice(cmd.points)
            nth = 2 if rng.random() < 0.25 else 1
            plans.append(Plan(len(plans), cmd, position, sig, "point", point, nth, None))
        else:
            plans.append(Plan(len(plans), cmd, position, sig, "time", None, 1, rng.randrange(0, cmd.window_ms + 1)))
    return plans


@dataclass
class Outcome:
    plan: Plan
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str
    recovered: bool = False        # the next command recorded a fail-closed rollback
    torn_left: bool = False        # audit repair did not get to cut the torn line
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kept: Path | None = None

    @property
    def label(self) -> str:
        code = self.returncode
        if code is None:
            return "timeout"
        if code < 0:
            return f"signalled:{signal.Signals(-code).name}"
        return f"exit:{code}"


# -- templates -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The templates (positions 0..7, and 6a: 6 with an approval), and one fake endpoint per worker.

    Verification counts the calls the endpoint received, so two children
    verifying against one endpoint at once would fail each other's
    path-behavior check: each child gets an endpoint to itself for its run.
    """
    base = tmp_path_factory.mktemp("campaign")
    state_home = base / "xdg-state"  # break-glass fallbacks stay inside the test's directory
    state_home.mkdir()
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        servers = [stack.enter_context(FakeOpenAIServer("ok")) for _ in range(WORKERS)]
        mp.setenv("OPENAI_API_KEY", API_KEY)
        mp.setenv("XDG_STATE_HOME", str(state_home))
        templates = base / "templates"
        for position in range(8):
            walk(templates / str(position), position, servers[0].base_url)
        _with_approval(templates / "6", templates / "6a")
        endpoints: queue.Queue[str] = queue.Queue()
        for server in servers:
            endpoints.put(server.base_url)
        yield {"base": base, "templates": templates, "state_home": state_home, "endpoints": endpoints,
               "template_url": servers[0].base_url}


def _with_approval(source: Path, dest: Path) -> None:
    """Position 6 plus a recorded approval for SLOTGEN_AI_ROLLOUT_PERCENT=5 (DR-6), usable by oncall."""
    from slotgen_ops.changes.steps import approve
    from slotgen_ops.workspace import Workspace

    shutil.copytree(source, dest, symlinks=True)
    ws = Workspace(dest)
    result = approve(ws.environment("staging"), ["SLOTGEN_AI_ROLLOUT_PERCENT=5"],
                     actor=demo_actor(ws, "approver"), decision_record="DR-6", dry_run=False,
                     confirm=lambda preview: True)
    assert result.ok and result.approval_id
    (dest / APPROVAL_FILE).write_text(result.approval_id)


# -- one run ---------------------------------------------------------------------------------------------------------


def run_one(plan: Plan, campaign: dict, runs_dir: Path) -> Outcome:
    root = runs_dir / f"run{plan.index:03d}"
    shutil.copytree(campaign["templates"] / plan.position, root, symlinks=True)
    endpoints: queue.Queue[str] = campaign["endpoints"]
    url = endpoints.get()
    try:
        config = root / "slotgen.yaml"
        config.write_text(config.read_text().replace(campaign["template_url"], url))
        outcome = _run_child(plan, root, campaign["state_home"])
    finally:
        endpoints.put(url)
    try:
        check_invariants(root, outcome)
    except Exception as exc:  # noqa: BLE001 - a crash of a check is a finding, reported with its run
        outcome.problems.append(f"checking raised {exc.__class__.__name__}: {exc}")
    if outcome.problems:
        outcome.problems.append(f"left on disk: {_disk_summary(root)}")
        outcome.kept = root
    else:
        shutil.rmtree(root, ignore_errors=True)
    return outcome


def _run_child(plan: Plan, root: Path, state_home: Path) -> Outcome:
    log_path = root / "environments" / "staging.audit.jsonl"
    args = list(plan.command.args)
    if plan.position == "6a":
        args += ["--approval", (root / APPROVAL_FILE).read_text().strip()]
    if plan.command.torn:
        with open(log_path, "ab") as fh:
            fh.write(TORN)
    argv = command(*args, "--workspace", str(root), fault=plan.fault())
    env = clean_env({"OPENAI_API_KEY": API_KEY, "XDG_STATE_HOME": str(state_home), **demo_key(args, root, None)})
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=CHILD_TIMEOUT_S)
        outcome = Outcome(plan, proc.returncode, time.monotonic() - start, proc.stdout, proc.stderr)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        outcome = Outcome(plan, None, time.monotonic() - start, "", stderr)
        outcome.problems.append(f"the child did not end within {CHILD_TIMEOUT_S} s")
    return outcome


def _disk_summary(root: Path) -> str:
    """What a failed run left: the controls as the runtime reads them, and the log's last entries."""
    envdir = root / "environments"
    try:
        text = (envdir / "staging.env").read_text()
        head = next((line for line in text.splitlines() if line.startswith("# slotgen-head:")), "(no head line)")
        kill = kill_as_runtime_reads(envdir / "staging.env")
    except OSError as exc:
        head, kill = f"(unreadable: {exc})", None
    tail = [f"seq {e.get('seq')} {e.get('action')} {e.get('control') or ''}={e.get('new')} "
            f"({(e.get('details') or {}).get('trigger')})" for e in _entries(envdir / "staging.audit.jsonl")[-3:]]
    others = sorted(p.name for p in envdir.iterdir() if p.name.startswith(".") or ".cut-" in p.name
                    or "breakglass" in p.name)
    return (f"controls {head.replace('# slotgen-head: ', '')[:28]}, SLOTGEN_AI_KILL={kill} as the runtime reads it; "
            f"log ends {tail}; other files {others}")


def _clip(text: str, head: int = 700, tail: int = 900) -> str:
    return text if len(text) <= head + tail else f"{text[:head]}\n  [...]\n{text[-tail:]}"


def _entries(log_path: Path) -> list[dict]:
    out = []
    for line in log_path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a torn line: audit_verify reports it
    return out


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if re.match(r"^\..+\.tmp-\d+$", p.name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_invariants(root: Path, outcome: Outcome) -> None:
    from slotgen_ops.changes.breakglass import BreakGlassJournal
    from slotgen_ops.oversight.report import audit_verify, status_report
    from slotgen_ops.workspace import Workspace

    plan, problems, notes = outcome.plan, outcome.problems, outcome.notes
    if outcome.returncode == 1:
        said = [line.strip() for line in outcome.stdout.splitlines() if "fail" in line.lower()]
        notes.append(f"verification failed (exit 1): {' | '.join(said)[:300]}")
    envdir = root / "environments"
    log_path = envdir / "staging.audit.jsonl"

    # 6. A catchable signal ends the command with one line, never a traceback.
    code = outcome.returncode
    if code != -signal.SIGKILL and "Traceback" in outcome.stderr:
        ended = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
        problems.append(f"traceback on stderr ({ended}):\n" + _clip(outcome.stderr))

    # A repair that never got to cut the torn line leaves the damage it was asked to fix: status says the
    # log fails verification (it checks the whole log, SPEC section 9), and the next command for that is
    # another `audit repair`.
    if plan.command.torn and log_path.read_bytes().endswith(TORN):
        outcome.torn_left = True
        from slotgen_ops.changes.repair import repair_log

        torn_doc, torn_valid = status_report(Workspace(root).environment("staging"))
        if torn_valid or "torn" not in str(torn_doc["audit"]["problem"]):
            problems.append(f"status with a torn last line: valid={torn_valid}, {torn_doc['audit']['problem']}")
        repair_log(Workspace(root).environment("staging"), "owner", str(root / "demo-keys" / "owner"))

    # 1. The next command closes anything open: fail closed, recorded, said.
    before = _entries(log_path)
    doc, valid = status_report(Workspace(root).environment("staging"))
    after = _entries(log_path)
    added = after[len(before):]
    if added:
        outcome.recovered = True
        if any(e.get("action") != "rollback" for e in added):
            problems.append(f"status appended non-rollback entries: {[e.get('action') for e in added]}")
        if doc["controls"].get("SLOTGEN_AI_KILL") != "true":
            problems.append(f"status closed an interrupted change but reports controls {doc['controls']}")
        if not any("interrupted" in w or "engaged in the controls file" in w or "rollback" in w
                   for w in doc["warnings"]):
            problems.append(f"status closed something without saying so: warnings {doc['warnings']}")
        triggers = [(e.get("details") or {}).get("trigger") for e in added]
        notes.append(f"status recorded {triggers}")
        pending_seq = [(e.get("details") or {}).get("pendingSeq") for e in added]
        pending_actions = {e.get("action") for e in before if e.get("seq") in pending_seq}
        if code != -signal.SIGKILL and any(s is not None for s in pending_seq):
            # A catchable signal is deferred across the critical section (audit repair's cut included), so
            # it cannot separate the commit point from the controls write, whether raised at a named point
            # or after a delay (faultwrap's timer thread blocks the signals itself, so the kernel hands them
            # to the main thread, as it would a signal sent from outside).
            where = f"at {plan.point}#{plan.nth}" if plan.moment == "point" else f"after {plan.after_ms} ms"
            problems.append(f"SIG{plan.signal.upper()} {where} interrupted the critical section (exit {code}): the "
                            f"{pending_actions} entry at seq {pending_seq} was committed but its controls not written")
    if not valid:
        problems.append(f"status: audit integrity does not hold: {doc['audit']['problem']}")

    if plan.command.torn:
        evidence = sorted(p.name for p in envdir.iterdir() if ".cut-" in p.name and ".tmp-" not in p.name)
        cuts = [e for e in _entries(log_path) if e.get("action") == "audit-repair"]
        if evidence:
            notes.append(f"cut evidence left: {evidence}")
        if not cuts and not evidence:
            problems.append("the torn line was cut but neither an audit-repair entry nor the cut evidence remains")

    env = Workspace(root).environment("staging")

    # 2. The chain, the anchor, every state replays, the break-glass journals are whole.
    report = audit_verify(env)
    if report["valid"] is not True:
        problems.append(f"audit verify: invalid at seq {report['firstBad']}: {report['reason']}")

    # 3. Log and controls agree.
    snap = env.snapshot()
    unfolded = BreakGlassJournal(env).unfolded(snap.state)
    if unfolded:
        notes.append(f"unfolded break-glass entries after status: {len(unfolded)}")
    if snap.pending is not None:
        problems.append(f"after status the head entry seq {snap.pending['seq']} is still pending")
    if snap.engaged_outside and not unfolded:
        problems.append("after status the kill-switch is engaged outside the log, and no break-glass entry says why")
    if snap.controls.values != snap.state["controls"]:
        problems.append(f"controls file {snap.controls.values} != head state {snap.state['controls']}")

    # 4. Nothing live unverified.
    entries = _entries(log_path)
    sets = [e for e in entries if e.get("action") == "set"]
    for entry in sets:
        if (entry.get("verification") or {}).get("passed") is not True:
            problems.append(f"set entry seq {entry['seq']} ({entry.get('control')}={entry.get('new')}) carries no "
                            f"passing verification: {entry.get('verification')}")
    runtime_kill = kill_as_runtime_reads(env.controls_path)
    if runtime_kill != "true":
        if snap.state.get("verificationPassing") is not True:
            problems.append(f"the kill-switch is off ({runtime_kill!r}) but the head state's verificationPassing is "
                            f"{snap.state.get('verificationPassing')!r}")
        if not sets or (sets[-1].get("verification") or {}).get("passed") is not True:
            problems.append("the kill-switch is off but the last set has no passing verification")

    # 5. No temp file of a dead writer left behind.
    for name in _temps(envdir):
        pid = int(name.rsplit("-", 1)[1])
        if not _pid_alive(pid):
            problems.append(f"leftover temp file {name} of dead pid {pid}")


def _kind(outcome: Outcome) -> str:
    """A failed run's first problem, without its paths and numbers, and the command, for grouping."""
    first = re.sub(r"/\S+", "PATH", outcome.problems[0].splitlines()[0])
    return f"{outcome.plan.command.name}: " + re.sub(r"\d+", "N", first)[:110]


# -- the campaign ----------------------------------------------------------------------------------------------------


def test_fault_campaign(campaign):
    plans = make_plan()
    runs_dir = campaign["base"] / "runs"
    runs_dir.mkdir()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda plan: run_one(plan, campaign, runs_dir), plans))
    elapsed = time.monotonic() - started

    counts = Counter((o.plan.command.name, o.plan.signal.upper(), o.label) for o in outcomes)
    recovered = sum(o.recovered for o in outcomes)
    torn_left = sum(o.torn_left for o in outcomes)
    moments = Counter(o.plan.moment for o in outcomes)
    timed = Counter("ended first" if o.label in ("exit:0", "exit:1") else "signalled"
                    for o in outcomes if o.plan.moment == "time")
    print(f"\nfault campaign: {len(outcomes)} runs in {elapsed:.1f} s (seed {SEED}, {WORKERS} at a time; "
          f"{moments['point']} at a point, {moments['time']} after a delay, of which {timed['ended first']} ended "
          f"before the signal); closed by the next command: "
          f"{recovered}; repair interrupted before the cut: {torn_left}; counts: "
          + "; ".join(f"{c}/{s}/{lab}={n}" for (c, s, lab), n in sorted(counts.items())))
    noted = [o for o in outcomes if any(word in n for n in o.notes
                                        for word in ("critical section", "break-glass", "exit 1"))]
    for o in noted:
        print(f"  note: {o.plan.describe()} -> {o.label}: {'; '.join(o.notes)}")

    assert len(outcomes) >= 300
    failed = [o for o in outcomes if o.problems]
    kinds = Counter(_kind(o) for o in failed)
    detail = "by kind: " + "; ".join(f"{k} x{n}" for k, n in kinds.most_common()) + "\n\n" + "\n\n".join(
        f"{o.plan.describe()} -> {o.label} (kept at {o.kept}):\n  " + "\n  ".join(o.problems) for o in failed[:15])
    assert not failed, f"{len(failed)} of {len(outcomes)} runs broke a SPEC section 6 promise:\n{detail}"


# -- hostile files (SPEC section 14) ---------------------------------------------------------------------------------
#
# The same templates, the controls file or the break-glass journal replaced by something that is not what it seems,
# then a rollback, plain and interrupted at each of its named points. The promise: the child ends within its timeout
# with no traceback; exit 0 only where systemd, docker and slotgen all read the kill-switch engaged; exit 5 with
# KILL-SWITCH NOT ENGAGED otherwise; a non-regular file is never replaced, and a symlink's foreign target is never
# written. A second, plain rollback afterwards says the same.

from envfile_oracle import kill_engaged_everywhere  # noqa: E402


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _device(path: Path) -> None:
    path.unlink()
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's numbers


def _huge(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(2 << 30)  # sparse


def _symlink(path: Path) -> None:
    victim = path.parent.parent / "victim-authorized_keys"
    victim.write_bytes(b"ssh-ed25519 AAAA victim\n")
    path.unlink()
    path.symlink_to(victim)


def _carriage_return(path: Path) -> None:
    raw = path.read_bytes()
    line = next(l for l in raw.split(b"\n") if l.startswith(b"SLOTGEN_AI_ALLOWLIST_PATH="))
    path.write_bytes(raw.replace(line + b"\n", line + b"\rSLOTGEN_AI_KILL=false\n"))


def _backslash(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"SLOTGEN_AI_KILL=", b"# see ticket \\\nSLOTGEN_AI_KILL=", 1))


def _journal_fifo(path: Path) -> None:
    os.mkfifo(path.with_name("staging.breakglass.jsonl"))
    with open(path.with_name("staging.audit.jsonl"), "ab") as fh:
        fh.write(TORN)  # the log cannot take the entry: the journal must


# kind -> (what to do to environments/staging.env, whether a rollback can engage it)
HOSTILE = {"fifo": (_fifo, False), "device": (_device, False), "huge": (_huge, False), "symlink": (_symlink, False),
           "cr": (_carriage_return, True), "backslash": (_backslash, True), "journal-fifo": (_journal_fifo, True)}
HOSTILE_FAULTS = [None, ["--at", "rollback-after-first-write", "--do", "term"],
                  ["--at", "rollback-engaged", "--do", "kill"], ["--at", "rollback-after-first-write", "--do", "kill"]]


def _rollback_child(root: Path, state_home: Path, fault: list[str] | None) -> subprocess.CompletedProcess:
    args = ("rollback", "--env", "staging", "--reason", "hostile", "--operator", "oncall")
    env = clean_env({"OPENAI_API_KEY": API_KEY, "XDG_STATE_HOME": str(state_home), **demo_key(args, root, None)})
    return subprocess.run(command(*args, "--workspace", str(root), fault=fault), env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=CHILD_TIMEOUT_S)


def _hostile_run(kind: str, fault: list[str] | None, campaign: dict, runs_dir: Path) -> list[str]:
    damage, engageable = HOSTILE[kind]
    root = runs_dir / f"{kind}-{'plain' if fault is None else '-'.join(fault[1::2])}"
    shutil.copytree(campaign["templates"] / "7", root, symlinks=True)
    controls = root / "environments" / "staging.env"
    damage(controls)
    before = os.lstat(controls)
    problems: list[str] = []
    for attempt, f in (("first", fault), ("again", None)):
        try:
            proc = _rollback_child(root, campaign["state_home"], f)
        except subprocess.TimeoutExpired:
            return [f"{attempt}: the rollback did not end within {CHILD_TIMEOUT_S} s"]
        if "Traceback" in proc.stderr or "internal error" in proc.stderr:
            problems.append(f"{attempt}: traceback or internal error: {proc.stderr[-500:]}")
        if proc.returncode == 0 and not kill_engaged_everywhere(controls):
            problems.append(f"{attempt}: exit 0 but the file does not read engaged everywhere")
        if proc.returncode == 5 and "KILL-SWITCH NOT ENGAGED" not in proc.stderr:
            problems.append(f"{attempt}: exit 5 without KILL-SWITCH NOT ENGAGED")
        if f is None and proc.returncode != (0 if engageable else 5):
            problems.append(f"{attempt}: exit {proc.returncode}, expected {0 if engageable else 5}: {proc.stderr[-300:]}")
    if not engageable:
        after = os.lstat(controls)
        if (after.st_mode, after.st_ino, after.st_size) != (before.st_mode, before.st_ino, before.st_size):
            problems.append("a file that is not a controls file was replaced or written")
        victim = root / "victim-authorized_keys"
        if victim.exists() and victim.read_bytes() != b"ssh-ed25519 AAAA victim\n":
            problems.append("the symlink's foreign target was written")
    if not problems:
        shutil.rmtree(root, ignore_errors=True)
    return problems


def test_fault_campaign_hostile_files(campaign):
    runs_dir = campaign["base"] / "hostile"
    runs_dir.mkdir()
    plans = [(kind, fault) for kind in HOSTILE for fault in HOSTILE_FAULTS]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda plan: (plan, _hostile_run(*plan, campaign, runs_dir)), plans))
    failed = [f"{kind} {fault}: {'; '.join(problems)}" for (kind, fault), problems in results if problems]
    print(f"\nhostile files: {len(plans)} runs ({len(HOSTILE)} kinds x {len(HOSTILE_FAULTS)} faults), "
          f"{len(failed)} broke a promise")
    assert not failed, "\n".join(failed)
