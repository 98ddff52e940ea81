"""`slotgen state migrate --to URL`: a file workspace's environments moved into PostgreSQL (SPEC section 10).

Every environment's log goes over line for line (the same canonical bytes, so
the same hashes, signatures and Merkle tree: a checkpoint taken before the
move verifies after it), with its controls, in one transaction for all of
them, while the workspace's lock keeps every file writer out. Only a sound,
settled environment moves: its whole log verifies, its controls agree with
its head, and no break-glass rollback waits to be folded (run any change, or
`audit repair`, first). The file environments are then set aside under
`environments/migrated-<time>/` (kept, never deleted) and
`environments/STATE-URL` names the database (without a password), so this
workspace and its clones use the database from then on; `state:` in
`slotgen.yaml` can say so too, accepted like any policy change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import BadInput, IntegrityFailure
from ..files.atomic import atomic_write, fsync_directory
from ..clock import now_utc, utc_compact
from ..policy.paths import STATE_MARKER as MARKER

def migrate(workspace: Any, url: str) -> dict[str, Any]:
    from ..store.pg_env import PgEnvironmentStore
    from ..store.postgres import connect, describe_url
    from ..changes.breakglass import BreakGlassJournal
    from ..changes.chain import chain_report
    from .init import _ensure_schema, _state_line, public_url

    if workspace.state_url is not None:
        raise BadInput(f"this workspace's environments are already in {describe_url(workspace.state_url)}")
    _ensure_schema(url)
    names = sorted(workspace.config.environments)
    envs = [workspace.environment(name) for name in names]
    moved: list[dict[str, Any]] = []
    first = envs[0]
    with first.lock.exclusive(what="state migrate"):  # one lock for the whole environments/ directory
        plan = []
        for env in envs:
            if not env.log.exists():
                continue
            report = chain_report(env)
            if not report["valid"]:
                raise IntegrityFailure(f"{env.name}: the audit log fails verification at seq {report['firstBad']} "
                                       f"({report['reason']}); not moving a log that does not verify")
            snap = env.snapshot()
            if snap.needs_reconcile or BreakGlassJournal(env).unfolded(snap.state):
                raise IntegrityFailure(f"{env.name}: an interrupted change or an unfolded break-glass rollback is "
                                       f"open; close it first ('slotgen audit repair --env {env.name}')")
            plan.append((env, list(env.log.lines()), snap.controls))
        conn = connect(url)
        try:
            with conn.transaction():
                for env, lines, controls in plan:
                    taken = conn.execute("SELECT 1 FROM slotgen_environments WHERE name = %s UNION ALL "
                                         "SELECT 1 FROM slotgen_log WHERE env = %s LIMIT 1",
                                         (env.name, env.name)).fetchone()
                    if taken:
                        raise BadInput(f"{describe_url(url)} already holds an environment {env.name!r}; nothing "
                                       "was moved")
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO slotgen_log (env, seq, hash, line) VALUES (%s, %s, %s, %s)",
                                        [(env.name, *_seq_hash(line), line[:-1]) for line in lines])
                    conn.execute("INSERT INTO slotgen_environments (name, head_seq, head_hash, controls) "
                                 "VALUES (%s, %s, %s, %s)", (env.name, controls.head_seq, controls.head_hash,
                                                             json.dumps(controls.values)))
                    moved.append({"env": env.name, "entries": len(lines), "headSeq": controls.head_seq})
        finally:
            conn.close()
        # Moved: the database now has them; check them there before setting the files aside.
        for item in moved:
            store = PgEnvironmentStore(url, item["env"])
            head = store.log.head()
            report = store.log.verify(anchor=(head["seq"], head["hash"]), env=item["env"])
            store.close()
            if not report.valid:  # pragma: no cover - the same bytes cannot verify differently
                raise IntegrityFailure(f"{item['env']}: the moved log does not verify in the database "
                                       f"({report.reason}); the files are left in place")
        aside = first.dir / f"migrated-{utc_compact(now_utc())}"
        aside.mkdir()
        for env in envs:
            for path in (env.controls_path, Path(env.log.path), first.dir / f"{env.name}.breakglass.jsonl"):
                if path.exists() or path.is_symlink():
                    os.replace(path, aside / path.name)
        atomic_write(first.dir / MARKER, (public_url(url) + "\n").encode("utf-8"))
        fsync_directory(first.dir)
    return {"to": describe_url(url), "environments": moved, "setAside": str(aside), "stateLine": _state_line(url)}


def _seq_hash(line: bytes) -> tuple[int, str]:
    entry = json.loads(line)
    return int(entry["seq"]), str(entry["hash"])
