"""The database failing under a change (SPEC section 10): the postmaster killed, the connection dropped
mid-transaction, the database read-only. Each ends with log and controls agreeing, nothing lost or half
applied, one line and exit 4 for the change that could not commit, and rollback working (break-glass on
this host's rendered file when it must)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.changes.controls_file import runtime_values
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import assert_one_line_error, clean_env, command, slotgen  # noqa: E402

DR = ["--decision-record", "DR-1"]


def as_(ws: Path, operator: str) -> list[str]:
    return ["--operator", operator, "--key", str(ws / "demo-keys" / operator)]


def _walked(tmp_path, pg_url, monkeypatch, position):
    from walked import walk

    with FakeOpenAIServer("ok") as server:
        monkeypatch.setenv("SLOTGEN_STATE_URL", pg_url)
        ws = tmp_path / "ws"
        walk(ws, position, server.base_url, state=pg_url)
        yield ws, {"SLOTGEN_STATE_URL": pg_url, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}


@pytest.fixture
def verified(tmp_path, pg_url, monkeypatch):
    """A database-backed workspace at step 6: verified, the kill-switch still on (turning it off is next)."""
    yield from _walked(tmp_path, pg_url, monkeypatch, 5)


@pytest.fixture
def live(tmp_path, pg_url, monkeypatch):
    """A database-backed workspace live at 1% (kill-switch off)."""
    yield from _walked(tmp_path, pg_url, monkeypatch, 6)


def _rows(url: str) -> tuple[int, dict]:
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM slotgen_log WHERE env = 'staging'").fetchone()[0]
        controls = conn.execute("SELECT controls FROM slotgen_environments WHERE name = 'staging'").fetchone()[0]
    return count, controls


def _stopped_in_the_transaction(ws: Path, env: dict, marker: Path) -> subprocess.Popen:
    """`set SLOTGEN_AI_KILL=false` (step 6, verified) stopped after its log row is inserted, before COMMIT."""
    proc = subprocess.Popen(command("set", "--env", "staging", "SLOTGEN_AI_KILL=false", *DR, *as_(ws, "owner"),
                                    "--yes", "--workspace", str(ws),
                                    fault=["--at", "after-audit-append", "--do", f"touch:{marker},stop"]),
                            env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=ws)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def _assert_agree_and_roll_back(ws: Path, env: dict, url: str) -> None:
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(ws), env=env)
    assert status.code == 0 and status.json()["audit"]["valid"] is True, status.stdout + status.stderr
    rb = slotgen("rollback", "--env", "staging", "--reason", "after the fault", *as_(ws, "oncall"), "--json",
                 "--workspace", str(ws), env=env)
    assert rb.code == 0, rb.stderr
    assert _rows(url)[1]["SLOTGEN_AI_KILL"] == "true"
    assert slotgen("audit", "verify", "--env", "staging", "--workspace", str(ws), env=env).code == 0


def test_a_connection_dropped_mid_transaction_leaves_nothing(verified, pg_url, postgres, tmp_path):
    ws, env = verified
    before = _rows(pg_url)
    proc = _stopped_in_the_transaction(ws, env, tmp_path / "in-tx")
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                               "'slotgen' AND state LIKE 'idle in transaction%'").fetchall()
    assert killed and all(row[0] for row in killed)
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, (proc.returncode, err)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: state database") and "Traceback" not in err
    assert _rows(pg_url) == before, "nothing of the change was committed"
    assert before[1]["SLOTGEN_AI_KILL"] == "true"
    _assert_agree_and_roll_back(ws, env, pg_url)


def test_the_postmaster_killed_mid_transaction_and_restarted(verified, pg_url, postgres, tmp_path):
    ws, env = verified
    before = _rows(pg_url)
    proc = _stopped_in_the_transaction(ws, env, tmp_path / "in-tx")
    postgres.kill()
    postgres.boot()
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4 and "Traceback" not in err, (proc.returncode, err)
    assert _rows(pg_url) == before
    _assert_agree_and_roll_back(ws, env, pg_url)


def test_a_read_only_database_refuses_the_change_and_rollback_breaks_glass_on_this_host(live, pg_url, postgres,
                                                                                        tmp_path):
    ws, env = live
    out = tmp_path / "host.env"
    assert slotgen("render", "--env", "staging", "--output", str(out), "--workspace", str(ws), env=env).code == 0
    assert runtime_values(out.read_bytes())["SLOTGEN_AI_KILL"] == "false"
    db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {db} SET default_transaction_read_only = on")
    try:
        before = _rows(pg_url)
        r = slotgen("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", *DR, *as_(ws, "approver"), "--yes",
                    "--workspace", str(ws), env=env)
        assert_one_line_error(r, 4)
        assert "read-only" in r.stderr
        assert _rows(pg_url) == before
        rb = slotgen("rollback", "--env", "staging", "--reason", "db read-only", *as_(ws, "oncall"), "--json",
                     "--workspace", str(ws), env=env)
        assert rb.code == 0, rb.stderr
        assert runtime_values(out.read_bytes())["SLOTGEN_AI_KILL"] == "true", "this host's runtime is stopped"
        assert rb.json()["rollback"]["breakGlass"] is True
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {db} RESET default_transaction_read_only")
    # Writable again: the next command here folds the rollback in; every host then renders it.
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(ws), env=env)
    assert status.code == 0 and status.json()["controls"]["SLOTGEN_AI_KILL"] == "true"
    assert _rows(pg_url)[1]["SLOTGEN_AI_KILL"] == "true"
    assert slotgen("audit", "verify", "--env", "staging", "--workspace", str(ws), env=env).code == 0


def test_a_full_disk_under_the_log_refuses_the_change_and_rollback_still_engages(live, pg_url, postgres, tmp_path):
    """The log's table on a tablespace whose tmpfs is full: the change cannot append (exit 4, nothing kept);
    rollback engages the kill-switch in the environment's row (another tablespace), keeps its record in the
    break-glass journal, and the record is folded in once there is room again."""
    ws, env = live
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="slotgen-tiny-"))  # the server's account must reach it: not under tmp_path
    base.chmod(0o755)
    tiny = base / "ts"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], capture_output=True,
                             text=True)
    assert mounted.returncode == 0, f"this test mounts a tmpfs (root): {mounted.stderr}"
    try:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(tiny, owner.pw_uid, owner.pw_gid)
        db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE tiny_{db} LOCATION '{tiny}'")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE slotgen_log SET TABLESPACE tiny_{db}")
            conn.execute(f"CREATE TABLE filler (pad text) TABLESPACE tiny_{db}")
            with pytest.raises(psycopg.errors.DiskFull):
                while True:
                    conn.execute("INSERT INTO filler SELECT repeat('x', 2000) FROM generate_series(1, 50)")
        before = _rows(pg_url)
        r = slotgen("approve", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", *DR, *as_(ws, "approver"),
                    "--yes", "--workspace", str(ws), env=env)
        assert_one_line_error(r, 4)
        assert _rows(pg_url) == before
        rb = slotgen("rollback", "--env", "staging", "--reason", "disk full", *as_(ws, "oncall"), "--json",
                     "--workspace", str(ws), env=env)
        assert rb.code == 0, rb.stderr
        assert _rows(pg_url)[1]["SLOTGEN_AI_KILL"] == "true", "the row took the kill-switch"
        assert rb.json()["rollback"]["breakGlass"] is True, "its record waits in this host's journal"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE filler")
        status = slotgen("status", "--env", "staging", "--json", "--workspace", str(ws), env=env)
        assert status.code == 0 and any("folded" in w for w in status.json()["warnings"]), status.stdout
        assert slotgen("audit", "verify", "--env", "staging", "--workspace", str(ws), env=env).code == 0
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE slotgen_log SET TABLESPACE pg_default")
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP TABLESPACE tiny_{db}")
    finally:
        subprocess.run(["umount", "-l", str(tiny)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
