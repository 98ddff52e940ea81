"""An edited entry anywhere in the log is seen by every changing command and by status (SPEC section 9),
at a cost that does not grow with the log once it is known sound (a cache that is never a trust anchor)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, walk  # noqa: E402

ENV = {"OPENAI_API_KEY": API_KEY}


def run(ws: Path, *args: str):
    return slotgen(*args, "--workspace", str(ws), env=ENV)


def edit_middle_entry(log: Path, seq: int, *, keep_times: bool) -> None:
    """Change who approved a middle entry in place, same length, and (optionally) put the times back."""
    st = os.stat(log)
    lines = log.read_bytes().split(b"\n")
    entry = json.loads(lines[seq - 1])
    assert entry["operator"] == "approver"
    lines[seq - 1] = lines[seq - 1].replace(b'"operator":"approver"', b'"operator":"APPROVER"')
    log.write_bytes(b"\n".join(lines))
    assert os.stat(log).st_size == st.st_size
    if keep_times:
        os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_times", [False, True])
def test_an_edited_middle_entry_is_seen_by_set_and_status(tmp_path, endpoint, keep_times):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    log = ws / "environments" / "staging.audit.jsonl"
    assert run(ws, "status", "--env", "staging").code == 0  # known sound: the cache now holds its identity
    approvals = [json.loads(line)["seq"] for line in log.read_text().splitlines()
                 if json.loads(line)["action"] == "approve" and json.loads(line)["operator"] == "approver"]
    edit_middle_entry(log, approvals[0], keep_times=keep_times)
    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4 and status.json()["audit"]["valid"] is False
    assert f"seq {approvals[0]}" in status.json()["audit"]["problem"]
    r = run(ws, "set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-9",
            "--operator", "oncall", "--yes", "--approval", "apv-0000000000")
    assert_one_line_error(r, 4)
    assert f"seq {approvals[0]}" in r.stderr
    # Rollback still works, recorded in the break-glass journal.
    rb = run(ws, "rollback", "--env", "staging", "--reason", "tampered log", "--operator", "oncall", "--json")
    assert rb.code == 0 and rb.json()["rollback"]["breakGlass"] is True


def test_appends_by_slotgen_keep_the_cache_warm_and_a_foreign_append_is_checked(tmp_path, endpoint):
    from slotgen_ops.changes import chain
    from slotgen_ops.workspace import Workspace

    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    env = Workspace(ws).environment("staging")
    log = env.log.path
    assert run(ws, "verify", "--env", "staging", "--decision-record", "DR-1", "--operator", "oncall").code == 0
    key = env.log.cache_key()
    assert chain._cached(key) == env.log.identity()  # the writer moved the cache forward with its append
    with open(log, "ab") as fh:  # a line appended by someone else: not an entry of the chain
        fh.write(b'{"seq":99}\n')
    assert chain._cached(key) != env.log.identity()
    r = run(ws, "verify", "--env", "staging", "--decision-record", "DR-1", "--operator", "oncall")
    assert r.code == 4


def test_a_poisoned_cache_cannot_hide_an_edit_made_after_it(tmp_path, endpoint):
    """The cache names a file identity, not a verdict to trust: any write to the log moves its ctime."""
    from slotgen_ops.changes import chain
    from slotgen_ops.workspace import Workspace

    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)
    env = Workspace(ws).environment("staging")
    log = env.log.path
    seq = [json.loads(line)["seq"] for line in log.read_text().splitlines()
           if json.loads(line)["action"] == "approve"][0]
    edit_middle_entry(log, seq, keep_times=True)
    # An attacker who can write the workspace but not this user's cache: the cache still names the old file.
    assert run(ws, "status", "--env", "staging").code == 4
    chain.remember(env.log.cache_key(), [0, 0, 0, 0, 0])  # garbage in the cache: only costs a full check
    assert run(ws, "status", "--env", "staging").code == 4
