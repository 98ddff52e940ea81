"""Files that are not what they seem, and a rollback that says what it engaged (SPEC sections 14 and 15).

Real CLI child processes against a workspace walked live (kill-switch OFF, rollout 5), then attacked the
way a white-box review did: the controls file replaced by a FIFO, a device, a directory, a 2 GiB sparse
file, a symlink onto a file that holds no controls; "\\r" and a backslash smuggled into the file; a FIFO as
the break-glass journal. Each time the rollback ends within seconds, never with a traceback, and its exit
code tells the truth: 0 only where the file reads engaged (held to the byte grammar, under which systemd,
docker and slotgen read the same), 5 with KILL-SWITCH NOT ENGAGED naming what it found otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from slotgen_ops.files import envgrammar
from slotgen_ops.changes.controls_file import engage_kill_switch, runtime_values

from .helpers import Run, clean_env, command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from envfile_oracle import agree, kill_engaged_everywhere, read_all  # noqa: E402
from walked import API_KEY, walk  # noqa: E402

ENV = "staging"
TIMEOUT_S = 30  # a hang is a failure, not a slow test


class Live:
    def __init__(self, root: Path, state: Path) -> None:
        self.root, self.state = root, state
        self.controls = root / "environments" / f"{ENV}.env"
        self.log = root / "environments" / f"{ENV}.audit.jsonl"

    def run(self, *args: str, cwd: Path | None = None, workspace: bool = True) -> Run:
        argv = [*args, "--workspace", str(self.root)] if workspace else list(args)
        env = clean_env({"OPENAI_API_KEY": API_KEY, "XDG_STATE_HOME": str(self.state),
                         "SLOTGEN_SIGNING_KEY": str(self.root / "demo-keys" / "oncall")})
        proc = subprocess.run(command(*argv), cwd=cwd or self.root, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def rollback(self, *extra: str, **kw) -> Run:
        return self.run("rollback", "--env", ENV, "--reason", "attack drill", "--operator", "oncall", *extra, **kw)


@pytest.fixture
def live(tmp_path, endpoint) -> Live:
    walk(tmp_path / "ws", 7, endpoint.base_url)
    ws = Live(tmp_path / "ws", tmp_path / "state")
    assert runtime_values(ws.controls.read_bytes())["SLOTGEN_AI_KILL"] == "false"
    readings = read_all(ws.controls)  # the file slotgen wrote, live: every reader reads the same controls
    assert agree(readings) and readings["systemd"]["SLOTGEN_AI_ROLLOUT_PERCENT"] == "5", readings
    return ws


def assert_not_engaged(run: Run, *words: str) -> None:
    assert run.code == 5, (run.code, run.stdout, run.stderr)
    assert "KILL-SWITCH NOT ENGAGED" in run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def assert_engaged_cleanly(path: Path) -> None:
    raw = path.read_bytes()
    parsed = envgrammar.parse(raw)  # the grammar: no reader can read it another way
    assert parsed.values["SLOTGEN_AI_KILL"] == "true"
    assert b"\r" not in raw and b"\\" not in raw
    # The oracles: systemd's own parser (libsystemd-shared), docker's --env-file rules and slotgen's view.
    assert kill_engaged_everywhere(path), read_all(path)


# -- what sits at the controls file's name -----------------------------------------------------------------


def test_a_fifo_as_the_controls_file_is_named_not_waited_on(live):
    live.controls.unlink()
    os.mkfifo(live.controls)
    run = live.rollback()
    assert_not_engaged(run, str(live.controls), "FIFO")
    assert stat.S_ISFIFO(os.lstat(live.controls).st_mode)  # never replaced blindly
    status = live.run("status", "--env", ENV, "--json")  # does not hang either
    assert "Traceback" not in status.stderr


def test_json_says_not_engaged_too(live):
    live.controls.unlink()
    os.mkfifo(live.controls)
    run = live.rollback("--json")
    assert_not_engaged(run, "FIFO")
    doc = run.json()
    assert doc["ok"] is False and doc["engaged"] is False and "KILL-SWITCH NOT ENGAGED" in doc["error"]
    assert doc["workspace"] == str(live.root) and doc["controlsFile"] == str(live.controls)


def test_a_symlink_to_a_device_is_not_written_through(live):
    live.controls.unlink()
    live.controls.symlink_to("/dev/zero")
    run = live.rollback()
    assert_not_engaged(run, "/dev/zero", "character device")
    assert os.readlink(live.controls) == "/dev/zero"


def test_a_fifo_as_the_audit_log_is_named_by_status_and_a_change(live):
    live.log.unlink()
    os.mkfifo(live.log)
    status = live.run("status", "--env", ENV, "--json")  # a report of an integrity failure, not a hang
    assert status.code == 4 and "is a FIFO, not a regular file" in json.dumps(status.json())
    change = live.run("set", "--env", ENV, "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-9",
                      "--operator", "oncall", "--yes")
    assert change.code == 4 and "FIFO" in change.stderr and "Traceback" not in change.stderr
    assert live.rollback().code == 0  # the kill-switch is engaged; the act goes to the break-glass journal
    assert_engaged_cleanly(live.controls)


def test_a_directory_at_the_controls_name(live):
    live.controls.unlink()
    live.controls.mkdir()
    assert_not_engaged(live.rollback(), "directory")


def test_a_huge_sparse_controls_file_is_not_read_into_memory(live):
    with open(live.controls, "r+b") as fh:
        fh.truncate(2 << 30)  # 2 GiB, sparse: no blocks
    run = live.rollback()
    assert_not_engaged(run, "over its bound")
    assert "MemoryError" not in run.stderr


def test_a_symlink_onto_a_file_that_holds_no_controls_is_never_written(live, tmp_path):
    victim = tmp_path / "home" / ".ssh" / "authorized_keys"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB victim@host\n")
    victim.chmod(0o600)
    live.controls.unlink()
    live.controls.symlink_to(victim)
    run = live.rollback()
    assert_not_engaged(run, "holds no runtime controls")
    assert victim.read_bytes() == b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB victim@host\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_a_symlink_onto_a_controls_file_is_still_written_through(live, tmp_path):
    outside = tmp_path / "etc" / "slotgen.env"
    outside.parent.mkdir()
    outside.write_bytes(live.controls.read_bytes())
    live.controls.unlink()
    live.controls.symlink_to(outside)
    run = live.rollback("--json")
    assert run.code == 0, run.stderr
    assert_engaged_cleanly(outside)
    assert live.controls.is_symlink()
    assert str(outside) in run.json()["controlsFile"]


def test_planted_temp_symlinks_are_never_followed(tmp_path):
    controls = tmp_path / f"{ENV}.env"
    from slotgen_ops.changes.controls_file import render_controls
    from slotgen_ops.runbook.state import SAFE_CONTROLS

    controls.write_bytes(render_controls(ENV, {**SAFE_CONTROLS, "SLOTGEN_AI_KILL": "false"}, 3, "a" * 64))
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o600)
    (tmp_path / f".{ENV}.env.tmp-{os.getpid()}").symlink_to(victim)  # the name this process writes through
    values, _, old = engage_kill_switch(controls, ENV)
    assert old == "false" and values["SLOTGEN_AI_KILL"] == "true"
    assert victim.read_bytes() == b"precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert_engaged_cleanly(controls)


# -- bytes that one reader reads one way and another another -------------------------------------------------


def _edit(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    assert old in raw
    path.write_bytes(raw.replace(old, new))


def test_a_carriage_return_in_a_value_does_not_survive_a_rollback(live):
    # systemd splits lines on "\r" too: the allowlist line below would end with SLOTGEN_AI_KILL=false for it.
    _edit(live.controls, b"SLOTGEN_AI_KILL=false\n", b"SLOTGEN_AI_KILL=true\n")  # slotgen alone will read engaged
    line = next(l for l in live.controls.read_bytes().split(b"\n") if l.startswith(b"SLOTGEN_AI_ALLOWLIST_PATH="))
    _edit(live.controls, line, line + b"\rSLOTGEN_AI_KILL=false")
    assert not kill_engaged_everywhere(live.controls)  # the attack as systemd reads it
    run = live.rollback("--json")
    assert run.code == 0, run.stderr
    assert_engaged_cleanly(live.controls)
    # The allowlist value could not be kept as it was: the safe value (unset) is written instead.
    assert envgrammar.parse(live.controls.read_bytes()).values["SLOTGEN_AI_ALLOWLIST_PATH"] is None


def test_a_comment_ending_in_a_backslash_is_a_hand_edit_named_by_line_and_byte(live):
    # systemd 252 joins a comment ending in "\" with the next line: the kill-switch line would vanish for it.
    _edit(live.controls, b"SLOTGEN_AI_KILL=", b"# note \\\nSLOTGEN_AI_KILL=")
    run = live.run("set", "--env", ENV, "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", "DR-9",
                   "--operator", "oncall", "--yes")
    assert run.code == 4, run.stderr
    assert "a comment slotgen did not write" in run.stderr and "at byte" in run.stderr
    status = live.run("status", "--env", ENV, "--json")
    assert "at byte" in json.dumps(status.json())
    assert live.rollback().code == 0
    assert_engaged_cleanly(live.controls)


# -- the break-glass journal ---------------------------------------------------------------------------------


def test_a_fifo_as_the_break_glass_journal_hangs_nothing(live):
    journal = live.root / "environments" / f"{ENV}.breakglass.jsonl"
    os.mkfifo(journal)
    with open(live.log, "ab") as fh:
        fh.write(b'{"torn')  # the log cannot take the rollback's entry: the journal must
    run = live.rollback("--json")
    assert run.code == 0, run.stderr
    assert_engaged_cleanly(live.controls)
    assert run.json()["rollback"]["breakGlassLog"] != str(journal)  # kept in the operator's state directory
    for args in (("status", "--env", ENV, "--json"), ("audit", "verify", "--env", ENV, "--json")):
        done = live.run(*args)
        assert "Traceback" not in done.stderr
        assert "FIFO" in done.stdout + done.stderr, args
    assert stat.S_ISFIFO(os.lstat(journal).st_mode)


# -- rollback says what it engaged ---------------------------------------------------------------------------


def test_rollback_names_the_workspace_and_the_controls_file_first(live):
    run = live.rollback()
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"rollback engaged: {live.controls} (workspace {live.root})"
    doc = live.rollback("--json").json()
    assert doc["workspace"] == str(live.root) and doc["controlsFile"] == str(live.controls)


def test_rollback_with_no_workspace_says_nothing_was_engaged(tmp_path):
    lost = tmp_path / "elsewhere"
    lost.mkdir()
    env = clean_env({"XDG_STATE_HOME": str(tmp_path / "state")})
    proc = subprocess.run(command("rollback", "--env", ENV, "--reason", "x"), cwd=lost, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert_not_engaged(run, "no slotgen workspace", "--workspace", "--controls FILE")


def test_rollback_of_an_environment_the_workspace_does_not_have(live):
    assert_not_engaged(live.run("rollback", "--env", "prod", "--reason", "typo"), "KILL-SWITCH NOT ENGAGED")


def test_rollback_controls_engages_an_env_file_with_no_workspace(tmp_path):
    from slotgen_ops.changes.controls_file import render_controls
    from slotgen_ops.runbook.state import SAFE_CONTROLS

    host = tmp_path / "host"
    host.mkdir()
    controls = host / "slotgen.env"
    controls.write_bytes(render_controls("production", {**SAFE_CONTROLS, "SLOTGEN_AI_KILL": "false",
                                                        "FEATURE_SLOTGEN_AI": "true"}, 9, "b" * 64))
    env = clean_env({"XDG_STATE_HOME": str(tmp_path / "state"), "SLOTGEN_OPERATOR": "oncall"})
    proc = subprocess.run(command("rollback", "--controls", str(controls), "--reason", "host drill", "--json"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["workspace"] is None and doc["controlsFile"] == str(controls)
    assert_engaged_cleanly(controls)
    assert envgrammar.parse(controls.read_bytes()).values["FEATURE_SLOTGEN_AI"] == "true"  # only the kill-switch
    journal = host / "slotgen.env.breakglass.jsonl"
    entry = json.loads(journal.read_text().splitlines()[-1])
    assert entry["action"] == "rollback" and entry["reason"] == "host drill" and entry["old"] == "false"
    assert entry["actor"]["identity"] == "unidentified" and entry["operator"] == "oncall"


def test_rollback_controls_onto_a_fifo_says_not_engaged(tmp_path):
    fifo = tmp_path / "slotgen.env"
    os.mkfifo(fifo)
    proc = subprocess.run(command("rollback", "--controls", str(fifo), "--reason", "x"), cwd=tmp_path,
                          env=clean_env({"XDG_STATE_HOME": str(tmp_path / "state")}), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
    assert_not_engaged(Run(proc.returncode, proc.stdout, proc.stderr), "FIFO")


def test_an_unreachable_state_url_still_says_engaged_where_the_file_reads_engaged(live):
    config = live.root / "slotgen.yaml"
    text = config.read_text()
    config.write_text(text.replace("state: files", "state: postgresql://u:pw@127.0.0.1:1/db")
                      if "state: files" in text else text + "state: postgresql://u:pw@127.0.0.1:1/db\n")
    run = live.rollback("--json")
    assert run.code == 0, run.stderr
    assert_engaged_cleanly(live.controls)
    assert str(live.controls) in run.json()["controlsFile"]
    assert "pw@" not in run.stdout + run.stderr
