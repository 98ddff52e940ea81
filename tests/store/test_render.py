"""`slotgen render [--watch]`: the env-file a runtime host reads, kept current from either backend
(SPEC section 10). Real processes, a real database restarted under the watcher."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slotgen_ops.changes.controls_file import runtime_values
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, clean_env, command, slotgen  # noqa: E402

DR = ["--decision-record", "DR-1"]


def as_(ws: Path, operator: str) -> list[str]:
    return ["--operator", operator, "--key", str(ws / "demo-keys" / operator)]


def _kill(path: Path) -> str | None:
    try:
        return runtime_values(path.read_bytes())["SLOTGEN_AI_KILL"]
    except OSError:
        return None


def _wait_for(predicate, proc: subprocess.Popen, limit_s: float = 60) -> None:
    """Wait on the thing itself (polling the file the runtime reads), failing if the watcher died."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        if time.monotonic() >= deadline:
            proc.send_signal(signal.SIGTERM)
            raise AssertionError(f"the rendered file never showed it; the watcher said: {proc.communicate()[1]}")
        time.sleep(0.01)


def _watcher(ws: Path, output: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command("render", "--env", "staging", "--output", str(output), "--watch",
                                    "--workspace", str(ws)),
                            env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def test_render_writes_what_the_runtime_reads_and_refuses_the_environments_own_file(tmp_path):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    out = tmp_path / "host" / "staging.env"
    out.parent.mkdir()
    first = slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(ws), "--json")
    assert first.code == 0 and first.json()["written"] is True
    assert out.read_bytes() == (ws / "environments" / "staging.env").read_bytes()
    again = slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(ws), "--json")
    assert again.json()["written"] is False
    own = slotgen("render", "--env", "staging", "--output", str(ws / "environments" / "staging.env"),
                  "--workspace", str(ws))
    assert_one_line_error(own, 2)


def test_watch_on_files_follows_a_rollback(tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAIServer("ok") as server:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}
        assert slotgen("init", str(ws)).code == 0
        out = tmp_path / "staging.env"
        proc = _watcher(ws, out, env)
        try:
            _wait_for(lambda: out.exists(), proc)
            assert slotgen("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, *as_(ws, "oncall"),
                           "--yes", "--workspace", str(ws), env=env).code == 3  # skips step 1: refused
            assert slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(ws, "owner"), "--yes",
                           "--workspace", str(ws), env=env).code == 0
            head = (ws / "environments" / "staging.env").read_bytes()
            _wait_for(lambda: out.read_bytes() == head, proc)
        finally:
            _stop(proc)


@pytest.fixture
def team(pg_team):
    a, b, env, _ = pg_team
    return a, b, env


def test_watch_on_postgres_picks_up_a_rollback_from_the_other_clone(team, tmp_path):
    a, b, env = team
    out = tmp_path / "host-a" / "staging.env"
    out.parent.mkdir()
    proc = _watcher(a, out, env)
    try:
        _wait_for(lambda: _kill(out) == "true", proc)
        for ws, item, who in ((a, "SLOTGEN_AI_KILL=true", "owner"), (b, "FEATURE_SLOTGEN_AI=true", "oncall")):
            assert slotgen("set", "--env", "staging", item, *DR, *as_(ws, who), "--yes", "--workspace", str(ws),
                           env=env).code == 0
        _wait_for(lambda: runtime_values(out.read_bytes())["FEATURE_SLOTGEN_AI"] == "true", proc)
        rb = slotgen("rollback", "--env", "staging", "--reason", "from b", *as_(b, "oncall"), "--workspace", str(b),
                     "--json", env=env)
        assert rb.code == 0, rb.stderr
        head = f"seq={rb.json()['auditSeq']} "  # the rollback and the verification after it, both committed
        _wait_for(lambda: head in out.read_text(), proc)
        assert _kill(out) == "true"
    finally:
        err = _stop(proc)
    assert "Traceback" not in err


def test_watch_survives_a_database_restart_and_rereads_what_changed_meanwhile(team, tmp_path, postgres):
    a, b, env = team
    out = tmp_path / "staging.env"
    proc = _watcher(a, out, env)
    try:
        _wait_for(lambda: out.exists(), proc)
        assert slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", *DR, *as_(a, "owner"), "--yes",
                       "--workspace", str(a), env=env).code == 0
        postgres.kill()  # SIGKILL the postmaster: the watcher loses its connection
        postgres.boot()
        # A change made right after the restart, perhaps before the watcher is listening again.
        r = slotgen("set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", *DR, *as_(b, "oncall"), "--yes",
                    "--workspace", str(b), env=env)
        assert r.code == 0, r.stderr
        _wait_for(lambda: runtime_values(out.read_bytes())["FEATURE_SLOTGEN_AI"] == "true", proc)
    finally:
        err = _stop(proc)
    assert "Traceback" not in err and "reconnect" in err


def test_a_rollback_on_a_host_cut_off_from_the_database_engages_its_rendered_file(tmp_path, pg_url, postgres,
                                                                                  monkeypatch):
    """SPEC section 10: the database is down; `rollback` on this host still stops this host's runtime at once
    (its rendered env-file), keeps the act in this host's break-glass journal, and folds it into the
    database log when the database is back, after which every host renders it."""
    from walked import walk

    with FakeOpenAIServer("ok") as server:
        monkeypatch.setenv("SLOTGEN_STATE_URL", pg_url)
        a = tmp_path / "a"
        walk(a, 6, server.base_url, state=pg_url)  # live: the kill-switch is off
        b = tmp_path / "b"
        shutil.copytree(a, b)
        env = {"SLOTGEN_STATE_URL": pg_url, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}
        out_a, out_b = tmp_path / "host-a.env", tmp_path / "host-b.env"
        watch_a, watch_b = _watcher(a, out_a, env), _watcher(b, out_b, env)
        try:
            _wait_for(lambda: _kill(out_a) == "false", watch_a)
            _wait_for(lambda: _kill(out_b) == "false", watch_b)
            postgres.kill()  # the database is gone
            rb = slotgen("rollback", "--env", "staging", "--reason", "db down", *as_(a, "oncall"), "--json",
                         "--workspace", str(a), env=env)
            assert rb.code == 0, rb.stderr
            assert _kill(out_a) == "true", "this host's runtime reads the kill-switch engaged when rollback returns"
            doc = rb.json()
            assert doc["rollback"]["breakGlass"] is True
            assert "could not be reached" in rb.stderr
            none_here = slotgen("rollback", "--env", "staging", "--reason", "db down", "--workspace", str(b),
                                env={**env, "XDG_STATE_HOME": str(tmp_path / "empty-state")})
            assert_one_line_error(none_here, 5)  # nothing rendered on that host, and no database: said plainly
            postgres.boot()

            def folds() -> int:
                import psycopg

                try:
                    with psycopg.connect(pg_url) as conn:
                        return conn.execute(
                            "SELECT count(*) FROM slotgen_log WHERE env = 'staging' AND convert_from(line, 'UTF8')"
                            "::jsonb->'details'->>'trigger' = 'break-glass-fold'").fetchone()[0]
                except psycopg.OperationalError:
                    return 0

            # Each host's watcher folds its own host's journal once it reaches the database again.
            _wait_for(lambda: folds() == 2, watch_a)
            _wait_for(lambda: _kill(out_b) == "true", watch_b)
        finally:
            err_a, err_b = _stop(watch_a), _stop(watch_b)
        assert "Traceback" not in err_a + err_b
        entries = [json.loads(line) for line in slotgen("audit", "export", "--env", "staging", "--workspace", str(b),
                                                         env=env).stdout.splitlines()]
        folded = [e for e in entries if (e.get("details") or {}).get("trigger") == "break-glass-fold"]
        # Host a's rollback, and host b's attempt (it engaged nothing, but it asked for the kill-switch: folding it
        # engages it, fail closed), each folded once by its own host's watcher.
        assert sorted(str(f["details"]["breakGlassOperator"]) for f in folded) == ["None", "oncall"]
        assert slotgen("audit", "verify", "--env", "staging", "--workspace", str(b), env=env).code == 0
