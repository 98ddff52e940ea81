"""An environment's lock, log and controls in PostgreSQL keep the file backend's contracts (SPEC section 10):
compare-and-append under one lock, log and controls committed together or not at all, a lock that dies
with its holder and says who holds it, and the same lines, so the same verification and Merkle tree."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from slotgen_ops.audit import checkpoint, merkle
from slotgen_ops.audit.append import StaleHead
from slotgen_ops.audit.log import AuditLog
from slotgen_ops.errors import IntegrityFailure
from slotgen_ops.changes.chain import replay_checker
from slotgen_ops.changes.controls_file import ControlsChanged
from slotgen_ops.files.locking import LockBusy
from slotgen_ops.runbook.state import INIT, REFUSED, SAFE_CONTROLS, apply
from slotgen_ops.store import postgres
from slotgen_ops.store.pg_env import PgEnvironmentStore

ENV = "staging"
UNPROVEN = {"identity": "unidentified"}


def _init_fields() -> dict:
    fields = {"env": ENV, "action": INIT, "new": dict(SAFE_CONTROLS), "actor": UNPROVEN, "details": {"policy": None}}
    fields["state"] = apply(None, fields)
    return fields


def _refusal(state: dict, n: int) -> dict:
    fields = {"env": ENV, "action": REFUSED, "operator": "mallory", "actor": UNPROVEN, "reason": f"r{n}"}
    fields["state"] = apply(state, fields)
    return fields


def _create(url: str) -> PgEnvironmentStore:
    postgres.upgrade(url)
    store = PgEnvironmentStore(url, ENV)
    with store.lock.exclusive():
        entry = store.log.append(_init_fields(), after=(0, "0" * 64))
        store.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=None)
    return store


def test_log_and_controls_commit_together_and_verify(pg_url):
    store = _create(pg_url)
    with store.lock.exclusive():
        head = store.log.head()
        found = store.controls.read()
        entry = store.log.append(_refusal(head["state"], 1), after=(head["seq"], head["hash"]))
        store.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=found)
    other = PgEnvironmentStore(pg_url, ENV)  # another operator's connection sees the commit whole
    assert other.log.count() == 2 and other.controls.read().head_seq == 2
    report = other.log.verify(anchor=(2, entry["hash"]), env=ENV, check=replay_checker())
    assert report.valid and report.entries == 2


def test_a_section_that_raises_keeps_what_it_recorded_as_files_do(pg_url):
    """On files every append is durable at once; so here: what a critical section recorded before a refusal
    or a stale head was raised is committed, and the exception goes on (a database failure keeps nothing:
    test_pg_faults)."""
    store = _create(pg_url)
    head = store.log.head()
    with pytest.raises(StaleHead):
        with store.lock.exclusive():
            store.log.append(_refusal(head["state"], 1), after=(head["seq"], head["hash"]))
            store.log.append(_refusal(head["state"], 2), after=(head["seq"], head["hash"]))  # stale: seq 2 exists
    assert store.log.count() == 2, "the first append was committed, the stale one refused"
    found = store.controls.read()
    with pytest.raises(ControlsChanged):
        with store.lock.exclusive():
            entry = store.log.append(_refusal(store.log.head()["state"], 3), after=(2, store.log.head()["hash"]))
            stale = found.__class__(found.values, found.head_seq, "f" * 64, found.raw)
            store.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=stale)
    assert store.log.count() == 3 and store.controls.read().head_seq == 1, \
        "the controls were not written: the log is ahead of them, which the next writer closes fail closed"


def _hold_and_wait(url: str, ready, go) -> None:
    store = PgEnvironmentStore(url, ENV)
    with store.lock.exclusive():
        head = store.log.head()
        store.log.append(_refusal(head["state"], 99), after=(head["seq"], head["hash"]))
        ready.set()
        go.wait(60)  # killed here: never committed


def test_a_holder_killed_mid_section_leaves_nothing_and_frees_the_lock_at_once(pg_url):
    _create(pg_url)
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_and_wait, args=(pg_url, ready, go))
    holder.start()
    assert ready.wait(60)
    store = PgEnvironmentStore(pg_url, ENV)
    notices: list[str] = []
    from slotgen_ops.files import locking

    locking.set_wait_notice(notices.append)
    try:
        with pytest.raises(LockBusy) as busy:
            with store.lock.exclusive(timeout=0.3, what="a test"):
                pass
        assert "slotgen" in busy.value.holder and "pid" in busy.value.holder
        assert notices and "waiting for the lock" in notices[0]
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        started = time.monotonic()
        with store.lock.exclusive(timeout=10):
            waited = time.monotonic() - started
        assert store.log.count() == 1, "the killed holder's append was never committed"
        assert waited < 10
    finally:
        locking.set_wait_notice(None)


def _contend(url: str, n: int, queue) -> None:
    store = PgEnvironmentStore(url, ENV)
    won = lost = 0
    for i in range(n):
        head = store.log.head()  # judged outside the lock, as a change is
        try:
            with store.lock.exclusive(timeout=30):
                found = store.controls.read()
                entry = store.log.append(_refusal(head["state"], i), after=(head["seq"], head["hash"]))
                store.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=found)
            won += 1
        except StaleHead:
            lost += 1
    queue.put((won, lost))


def test_contending_processes_get_exactly_one_winner_per_head(pg_url):
    _create(pg_url)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(pg_url, 25, queue)) for _ in range(6)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(60)
    won = sum(w for w, _ in results)
    store = PgEnvironmentStore(pg_url, ENV)
    assert store.log.count() == 1 + won, "every win is one entry, no loss, no duplicate"
    assert sum(lost for _, lost in results) > 0, "the test made them contend"
    head = store.log.head()
    assert store.controls.read().head_seq == head["seq"]
    assert store.log.verify(anchor=(head["seq"], head["hash"]), env=ENV, check=replay_checker()).valid


def test_the_same_lines_as_a_file_log_give_the_same_verdict_and_merkle_root(pg_url, tmp_path):
    from slotgen_ops.files.locking import EnvLock

    log = AuditLog(tmp_path / "staging.audit.jsonl", lock=EnvLock.for_directory(tmp_path))
    with log.locked():
        entry = log.append(_init_fields())
        for n in range(5):
            entry = log.append(_refusal(entry["state"], n))
    postgres.upgrade(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for line in (tmp_path / "staging.audit.jsonl").read_bytes().splitlines():
            import json

            doc = json.loads(line)
            conn.execute("INSERT INTO slotgen_log (env, seq, hash, line) VALUES (%s, %s, %s, %s)",
                         (ENV, doc["seq"], doc["hash"], line))
    store = PgEnvironmentStore(pg_url, ENV)
    assert b"".join(store.log.lines()) == (tmp_path / "staging.audit.jsonl").read_bytes()
    assert store.log.verify(env=ENV, check=replay_checker()).valid
    file_root = merkle.root(list(checkpoint.leaves(tmp_path / "staging.audit.jsonl")))
    pg_root = merkle.root([merkle.leaf_hash(line[:-1]) for line in store.log.lines()])
    assert pg_root == file_root


def test_an_environment_that_is_not_there_is_an_integrity_failure(pg_url):
    postgres.upgrade(pg_url)
    with pytest.raises(IntegrityFailure, match="no such environment"):
        PgEnvironmentStore(pg_url, "production").controls.read()


def test_the_rollback_head_start_engages_the_row_through_libpq_alone(pg_url):
    from slotgen_ops.store import pgfast

    store = _create(pg_url)
    with store.lock.exclusive():  # the kill-switch off in the row, as when live (with an entry that leads there)
        found = store.controls.read()
        head = store.log.head()
        fields = _refusal(head["state"], 1)
        fields["state"] = {**fields["state"], "controls": {**found.values, "SLOTGEN_AI_KILL": "false"}}
        entry = store.log.append(fields, after=(head["seq"], head["hash"]))
        store.controls.write(entry["state"]["controls"], entry["seq"], entry["hash"], expect=found)
    assert pgfast.engage(pg_url, ENV) == (True, "false")
    assert store.controls.read().values["SLOTGEN_AI_KILL"] == "true"
    assert pgfast.engage(pg_url, ENV) == (True, "true")
    assert pgfast.engage(pg_url, "production") is None, "no such row: the rollback proper says so"
    assert pgfast.engage(pg_url, "Bad'; DROP TABLE slotgen_log; --") is None
    refused = pg_url.rsplit(":", 1)[0] + ":1/x"
    assert pgfast.engage(refused, ENV) is None
    assert store.log.count() == 2, "a head start records nothing: the rollback proper does"


def test_a_cli_rollback_on_the_database_engages_before_the_cli_loads(tmp_path, pg_url):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cli.helpers import slotgen

    ws = tmp_path / "ws"
    assert slotgen("init", str(ws), "--state", pg_url).code == 0
    rb = slotgen("rollback", "--env", "staging", "--reason", "r", "--operator", "oncall", "--key",
                 str(ws / "demo-keys" / "oncall"), "--workspace", str(ws), "--json", env={"SLOTGEN_STATE_URL": pg_url})
    assert rb.code == 0, rb.stderr
    assert rb.json()["rollback"]["written"].startswith("the database")
