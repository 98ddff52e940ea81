"""No rewind, and a cache that is never a way around the check (SPEC section 14).

A log cut back to an older head, with its controls regenerated to match, verifies entry by entry and
agrees with its controls: only a memory kept outside the workspace can see it. Each machine remembers
the highest head it has seen of each environment (`changes.heads`), and a log that no longer extends it is
an integrity failure naming both heads. The verified-log cache lives only in a directory of this user's
and is trusted only while it is bound to the log as it is now.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from slotgen_ops.errors import IntegrityFailure
from slotgen_ops.changes import chain, heads
from slotgen_ops.changes.controls_file import render_controls
from slotgen_ops.policy.paths import private_dir
from slotgen_ops.workspace import Workspace
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from cli.helpers import assert_one_line_error, slotgen  # noqa: E402
from walked import API_KEY, kill_as_runtime_reads, walk  # noqa: E402

LOG = Path("environments") / "staging.audit.jsonl"
CONTROLS = Path("environments") / "staging.env"
CHANGE = ("set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", "DR-9",
          "--approval", "apv-0000000000", "--operator", "oncall", "--yes")


def run(ws: Path, *args: str, env: dict[str, str] | None = None):
    return slotgen(*args, "--workspace", str(ws), env={"OPENAI_API_KEY": API_KEY, **(env or {})}, cwd=ws)


def lines(ws: Path) -> list[bytes]:
    return (ws / LOG).read_bytes().splitlines(keepends=True)


def rewind(ws: Path, keep: int) -> dict:
    """Keep the log's first `keep` lines and regenerate the controls file to match that head."""
    kept = lines(ws)[:keep]
    (ws / LOG).write_bytes(b"".join(kept))
    head = json.loads(kept[-1])
    (ws / CONTROLS).write_bytes(render_controls("staging", head["state"]["controls"], head["seq"], head["hash"]))
    return head


def remembered(ws: Path) -> dict:
    env = Workspace(ws).environment("staging")
    memory = heads.recall(env)[0]  # the workspace's (on PostgreSQL the database's too, the same head)
    return {"seq": memory.seq, "hash": memory.hash, "first": memory.first, "path": memory.path}


# -- the rewind of the issue -------------------------------------------------------------------------------------


def test_a_log_rewound_to_an_older_head_with_matching_controls_is_an_integrity_failure(tmp_path, endpoint,
                                                                                       state_home):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)  # live at 5
    assert run(ws, "status", "--env", "staging").code == 0
    top = json.loads(lines(ws)[-1])
    older = rewind(ws, len(lines(ws)) - 3)  # back to before the last rung
    assert older["state"]["controls"]["SLOTGEN_AI_ROLLOUT_PERCENT"] != top["state"]["controls"][
        "SLOTGEN_AI_ROLLOUT_PERCENT"] or older["seq"] < top["seq"]

    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4, status.stdout
    problem = status.json()["audit"]["problem"]
    assert status.json()["audit"]["valid"] is False
    assert f"seq {top['seq']} (hash {top['hash'][:12]}" in problem and f"seq {older['seq']}" in problem
    assert "rewound" in problem

    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4
    doc = verify.json()
    assert doc["valid"] is False and doc["firstBad"] == older["seq"] + 1 and "rewound" in doc["reason"]

    change = run(ws, *CHANGE)
    assert_one_line_error(change, 4)
    assert "rewound" in change.stderr

    repair = run(ws, "audit", "repair", "--env", "staging", "--operator", "owner")
    assert repair.code == 4 and "rewound" in repair.stderr, "repair never restores from a rewound log"

    rb = run(ws, "rollback", "--env", "staging", "--reason", "rewound log", "--operator", "oncall", "--json")
    assert rb.code == 0 and rb.json()["rollback"]["engaged"] is True
    assert kill_as_runtime_reads(ws / CONTROLS) == "true"


def test_a_rewind_then_another_entry_at_the_same_seq_is_a_rewrite(tmp_path, endpoint, state_home):
    """Cut back one entry, and a machine that never saw the workspace appends another in its place: the
    log is as long as before, every entry verifies, but its entry at the remembered seq is another."""
    ws = tmp_path / "ws"
    walk(ws, 4, endpoint.base_url)
    assert run(ws, "status", "--env", "staging").code == 0
    seen = remembered(ws)
    rewind(ws, seen["seq"] - 1)
    other = {"XDG_STATE_HOME": str(tmp_path / "another-machine")}
    refused = run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-3",
                  "--operator", "owner", "--yes", env=other)
    assert refused.code == 3  # recorded as a refusal: one entry, in the seq this machine remembers
    assert json.loads(lines(ws)[-1])["seq"] == seen["seq"]
    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4 and "rewritten" in status.json()["audit"]["problem"]
    verify = run(ws, "audit", "verify", "--env", "staging", "--json")
    assert verify.code == 4 and verify.json()["firstBad"] == 1


def test_a_log_replaced_by_another_chain_names_the_memory_to_remove_if_on_purpose(tmp_path, endpoint, state_home):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws), cwd=tmp_path).code == 0
    assert run(ws, "status", "--env", "staging").code == 0
    memory = remembered(ws)["path"]
    shutil.rmtree(ws)
    assert slotgen("init", str(ws), cwd=tmp_path).code == 0  # the same path, a new chain
    status = run(ws, "status", "--env", "staging", "--json")
    assert status.code == 4
    problem = status.json()["audit"]["problem"]
    assert "replaced by another chain" in problem and str(memory) in problem
    memory.unlink()  # the operator re-created it on purpose, and says so
    assert run(ws, "status", "--env", "staging").code == 0


# -- what moves the memory, and what does not trip it ----------------------------------------------------------


def test_every_sound_read_and_every_append_moves_the_memory_forward_never_back(tmp_path, endpoint, state_home):
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    assert run(ws, "status", "--env", "staging").code == 0
    head = json.loads(lines(ws)[-1])
    assert remembered(ws)["seq"] == head["seq"] and remembered(ws)["hash"] == head["hash"]
    assert remembered(ws)["first"] == json.loads(lines(ws)[0])["hash"]
    assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
               "--decision-record", "DR-3", "--operator", "owner", "--yes").code == 0
    assert remembered(ws)["seq"] == json.loads(lines(ws)[-1])["seq"], "the writer's own append"
    env = Workspace(ws).environment("staging")
    heads.record(env, 1, json.loads(lines(ws)[0])["hash"], remembered(ws)["first"])  # a slower reader
    assert remembered(ws)["seq"] == json.loads(lines(ws)[-1])["seq"]
    mode = os.stat(remembered(ws)["path"]).st_mode & 0o777
    assert mode == 0o600 and os.stat(remembered(ws)["path"].parent).st_mode & 0o077 == 0


def test_repairing_a_torn_tail_is_no_rewind(tmp_path, endpoint, state_home):
    ws = tmp_path / "ws"
    walk(ws, 2, endpoint.base_url)
    assert run(ws, "status", "--env", "staging").code == 0
    with open(ws / LOG, "ab") as fh:
        fh.write(b'{"seq": 4, "act')
    repair = run(ws, "audit", "repair", "--env", "staging", "--operator", "owner")
    assert repair.code == 0, repair.stderr
    assert run(ws, "status", "--env", "staging").code == 0
    assert run(ws, "audit", "verify", "--env", "staging").code == 0


def test_the_memory_is_kept_only_where_nobody_else_can_write(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # what /tmp is
    monkeypatch.setenv("XDG_STATE_HOME", str(shared))
    assert heads.directory() is None and not (shared / "slotgen").exists()
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # not absolute: ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "no-such-home"))
    assert heads.directory() is None and not (tmp_path / "no-such-home").exists()
    group = tmp_path / "group"
    group.mkdir(mode=0o700)
    (group / "slotgen").mkdir(mode=0o770)
    os.chmod(group / "slotgen", 0o770)
    assert private_dir(str(group), "slotgen", "heads") is None
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(own))
    assert heads.directory() == own / "slotgen" / "heads"
    link = tmp_path / "link"
    link.symlink_to(own)
    assert private_dir(str(link), "slotgen", "heads") == own / "slotgen" / "heads"


# -- the verified-log cache --------------------------------------------------------------------------------------


def _edit_an_approval(ws: Path) -> None:
    log = ws / LOG
    raw = log.read_bytes()
    assert b'"operator":"approver"' in raw
    log.write_bytes(raw.replace(b'"operator":"approver"', b'"operator":"APPROVER"', 1))


def _identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def test_with_no_home_a_forged_cache_in_the_shared_temp_dir_is_never_read(tmp_path, endpoint):
    """Issue 18: with no usable home, the cache fell back to $TMPDIR/slotgen-cache-<uid>, where anyone can
    put a record naming a tampered log as sound. There is no such fallback: no private place, no cache."""
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    _edit_an_approval(ws)
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    key = os.path.realpath(ws / LOG)
    forged = shared / f"slotgen-cache-{os.getuid()}" / "slotgen" / "verified"
    forged.mkdir(parents=True)
    (forged / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json").write_text(
        json.dumps({"log": key, "identity": _identity(ws / LOG)}))
    env = {"HOME": str(tmp_path / "no-such-home"), "XDG_CACHE_HOME": "", "TMPDIR": str(shared)}
    status = run(ws, "status", "--env", "staging", "--json", env=env)
    assert status.code == 4 and status.json()["audit"]["valid"] is False
    change = run(ws, *CHANGE, env=env)
    assert_one_line_error(change, 4)


def test_a_cache_record_not_bound_to_the_log_as_it_is_is_ignored(tmp_path, endpoint, state_home):
    ws = tmp_path / "ws"
    walk(ws, 5, endpoint.base_url)
    env = Workspace(ws).environment("staging")
    chain.require_sound(env)
    record = chain._cached_record(env.log.cache_key())
    assert record["identity"] == env.log.identity() and record["head"] == [json.loads(lines(ws)[-1])["seq"],
                                                                           json.loads(lines(ws)[-1])["hash"]]
    _edit_an_approval(ws)
    for forged in ({"identity": env.log.identity()},  # no head: binds nothing
                   {"identity": env.log.identity(), "head": [record["head"][0], "0" * 64], "first": record["first"]},
                   {"identity": env.log.identity(), "head": record["head"], "first": "f" * 64}):
        chain.remember(env.log.cache_key(), forged["identity"], forged.get("head"), forged.get("first"))
        with pytest.raises(IntegrityFailure, match="fails verification"):
            chain.require_sound(env)


def test_the_cache_is_not_trusted_once_this_machine_has_seen_a_newer_head(tmp_path, endpoint, state_home):
    """A cached verdict on a file this machine later saw grow is not a verdict on the file as it is now."""
    ws = tmp_path / "ws"
    walk(ws, 3, endpoint.base_url)
    env = Workspace(ws).environment("staging")
    chain.require_sound(env)
    memory = remembered(ws)
    heads.record(env, memory["seq"] + 1, "a" * 64, memory["first"])  # seen further elsewhere (a newer clone)
    with pytest.raises(IntegrityFailure, match="rewound"):
        chain.require_sound(env)


def test_on_postgresql_an_append_that_rolls_back_is_never_remembered(tmp_path, endpoint, state_home, pg_url,
                                                                      monkeypatch):
    """An append is not a commit: a section that dies after its append leaves nothing in the database, and
    this machine must not remember a head that was never there (it would read as a rewind ever after)."""
    from slotgen_ops.files import hooks
    from slotgen_ops.changes.steps import set_control
    from slotgen_ops.verification.samples import run_verification
    from walked import demo_actor

    monkeypatch.setenv("SLOTGEN_STATE_URL", pg_url)
    ws = tmp_path / "ws"
    walk(ws, 1, endpoint.base_url, state=pg_url)
    workspace = Workspace(ws)
    env = workspace.environment("staging")
    chain.require_sound(env)
    before = remembered(ws)

    def crash(point: str) -> None:
        if point == "after-audit-append":
            import psycopg

            raise psycopg.OperationalError("server closed the connection")  # between the append and COMMIT

    hooks.install(crash)
    try:
        with pytest.raises(IntegrityFailure, match="nothing of this change was committed"):
            set_control(Workspace(ws).environment("staging"), ["FEATURE_SLOTGEN_AI=true"],
                        actor=demo_actor(workspace, "oncall"), decision_record="DR-2", approval_id=None, expect=None,
                        dry_run=False, confirm=lambda p: True, verifier=run_verification)
    finally:
        hooks.install(None)
    assert remembered(ws)["seq"] == before["seq"]
    fresh = Workspace(ws).environment("staging")
    chain.require_sound(fresh)  # no rewind: nothing was committed, nothing was believed
    assert fresh.log.head()["seq"] == before["seq"]
    keys = heads.keys(fresh)
    assert keys[0].startswith("workspace:") and keys[1].startswith("postgresql:") and "staging" in keys[1]
    assert psycopg_password(pg_url) not in keys[1]


def psycopg_password(url: str) -> str:
    import psycopg

    return psycopg.conninfo.conninfo_to_dict(url)["password"]


def test_nothing_is_created_below_a_directory_others_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # world-writable, not even sticky
    assert private_dir(str(shared / "cache"), "slotgen", "verified") is None
    assert not (shared / "cache").exists()
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    assert private_dir(str(own / "not" / "yet"), "slotgen") == own / "not" / "yet" / "slotgen"


@pytest.mark.parametrize("entries, head, first, at_seen, expected", [
    (5, "h5", "h1", {5: "h5"}, None),                # the head it saw
    (7, "h7", "h1", {5: "h5"}, None),                # extends it
    (4, "h4", "h1", {}, (5, "truncated or rewound (entries 5..5 are gone)")),
    (0, None, None, {}, (1, "truncated or rewound (entries 1..5 are gone)")),
    (5, "x5", "h1", {5: "x5"}, (1, "its entry 5 now has hash x5")),
    (9, "h9", "h1", {5: "x5"}, (1, "rewritten")),
    (9, "h9", "g1", {5: "h5"}, (1, "replaced by another chain")),
])
def test_what_extends_what_this_machine_saw(tmp_path, entries, head, first, at_seen, expected):
    class Env:
        name = "staging"

    seen = [heads.Seen("k", tmp_path / "memory.json", 5, "h5", "h1")]
    found = heads.problem(Env(), seen, entries, head, first, at_seen)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == expected[0] and expected[1] in found[1], found
        assert "seq 5 (hash h5" in found[1] and str(tmp_path / "memory.json") in found[1]
