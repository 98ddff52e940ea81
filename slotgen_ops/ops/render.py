"""`slotgen render`: the env-file a runtime host reads, from wherever the environment is kept (SPEC section 10).

The file is the environment's controls exactly as the controls file of the
file backend would hold them (KEY=VALUE lines for systemd's
`EnvironmentFile=` or docker's `--env-file`, and the `# slotgen-head` line
naming the audit entry they reflect), written atomically (a temp file beside
the target, fsync, rename; a symlink is written through), and only when it
changes. With `--watch` it is rewritten within a second of any change: on
PostgreSQL by LISTEN/NOTIFY, re-reading the environment on start-up and after
every reconnect (a notification missed while disconnected is never trusted
to have been sent); on files by watching the controls file. What is rendered
is what the environment holds, including a kill-switch engaged by a rollback
that is not recorded yet: the runtime must stop at once, not when the record
lands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BadInput, IntegrityFailure
from .atomic import atomic_write
from .controls_file import read_raw, target_of

Say = Callable[[str], None]

POLL_S = 0.2          # the file backend's watch: how often the controls file is looked at
HEARTBEAT_S = 5.0     # PostgreSQL: re-read this often even with no notification (belt and braces)
RECONNECT_S = 0.5     # PostgreSQL: how soon to try again after losing the server


def current(env: Any) -> bytes:
    """The env-file bytes for the environment as it stands (IntegrityFailure if it cannot be read).

    A rollback on this host that the environment's log does not hold yet (its break-glass journal, kept
    while the database could not be reached) keeps the kill-switch engaged in what is rendered, whatever
    the database says, until it is folded in."""
    from .breakglass import BreakGlassJournal
    from .controls_file import render_controls

    found = env.controls.read()
    head = env.log.head() if env.backend != "files" else None
    state = head.get("state") if isinstance(head, dict) and isinstance(head.get("state"), dict) else {}
    if env.backend != "files" and BreakGlassJournal(env).unfolded(state):
        return render_controls(env.name, {**found.values, "SLOTGEN_AI_KILL": "true"}, found.head_seq,
                               found.head_hash)
    return found.raw


def fold_here(env: Any, say: Say) -> None:
    """Fold this host's break-glass rollbacks into the environment's log (recorded as unidentified: no key
    is at hand), so that every host renders them."""
    from .authority import Actor
    from .breakglass import BreakGlassJournal
    from .changes import _settled
    from .locking import LockBusy

    head = env.log.head()
    state = head.get("state") if isinstance(head, dict) else None
    if not isinstance(state, dict) or not BreakGlassJournal(env).unfolded(state):
        return
    try:
        _, notes = _settled(env, Actor(None, None, identity="unidentified"), dry_run=False, timeout=2.0)
        for note in notes:
            say(note)
    except (LockBusy, IntegrityFailure, OSError) as exc:
        say(f"could not fold this host's break-glass rollback yet ({getattr(exc, 'message', exc)}); the file "
            "keeps the kill-switch engaged")


def check_output(env: Any, output: Path) -> Path:
    """Refuse to render over the environment's own files (BadInput, exit 2)."""
    output = Path(output)
    if env.backend == "files":
        own = {target_of(env.controls_path).resolve(), Path(env.log.path).resolve()}
        if target_of(output).resolve() in own:
            raise BadInput(f"--output {output}: that is the environment's own file; render to the file the "
                           "runtime host reads")
    if output.exists() and output.is_dir():
        raise BadInput(f"--output {output}: is a directory")
    return output


def render_once(env: Any, output: Path) -> tuple[bool, bytes]:
    """Write the env-file if it differs from what is there; (written, bytes). The file is remembered for
    this host's rollbacks (`hostfiles`)."""
    from .hostfiles import remember

    data = current(env)
    remember(env.workspace.root, env.name, output)
    if read_raw(target_of(output)) == data:
        return False, data
    try:
        atomic_write(target_of(output), data)
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write it ({exc.strerror})") from None
    return True, data


def watch(env: Any, output: Path, say: Say, *, stop: Callable[[], bool] = lambda: False) -> None:
    """Keep `output` equal to the environment's controls until `stop()` (or a signal)."""
    if env.backend == "files":
        _watch_files(env, output, say, stop)
    else:
        _watch_postgres(env, output, say, stop)


def _said_write(env: Any, output: Path, say: Say, why: str) -> None:
    try:
        written, data = render_once(env, output)
    except IntegrityFailure as exc:
        say(f"cannot read {env.name} ({exc.message}); {output} is left as it is")
        return
    if written:
        head = next((line for line in data.decode().splitlines() if line.startswith("# slotgen-head")), "")
        say(f"{output} rewritten ({why}; {head.removeprefix('# slotgen-head: ')})")


def _watch_files(env: Any, output: Path, say: Say, stop: Callable[[], bool]) -> None:
    def identity() -> Any:
        try:
            st = target_of(env.controls_path).stat()
            return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            return None

    seen: Any = None
    why = "start"
    while not stop():
        now = identity()
        if why == "start" or now != seen:
            _said_write(env, output, say, why)
            seen, why = now, "changed"
        time.sleep(POLL_S)


def _watch_postgres(env: Any, output: Path, say: Say, stop: Callable[[], bool]) -> None:
    import psycopg

    from ..store.postgres import connect

    url = env.store.url
    connected_once = False
    while not stop():
        try:
            conn = connect(url, autocommit=True)
        except IntegrityFailure as exc:
            say(f"{exc.message}; retrying (the file keeps its last controls)")
            _sleep(RECONNECT_S * (4 if connected_once else 1), stop)
            continue
        try:
            with conn:
                conn.execute("LISTEN slotgen_controls")
                env.store.use(conn)  # one connection per host: reads share the listening one
                # Re-read on every (re)connect: whatever changed while no one listened is in the row; and a
                # rollback made on this host while the database was away goes in first.
                fold_here(env, say)
                _said_write(env, output, say, "reconnected" if connected_once else "start")
                connected_once = True
                while not stop():
                    relevant = False
                    for note in conn.notifies(timeout=HEARTBEAT_S, stop_after=1):
                        relevant = note.payload.split(" ", 1)[0] == env.name
                    _said_write(env, output, say, "changed" if relevant else "heartbeat")
        except (psycopg.OperationalError, IntegrityFailure) as exc:
            say(f"lost the state database ({' '.join(str(exc).split())[:120]}); reconnecting")
            env.store.use(None)
            _sleep(RECONNECT_S, stop)


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop():
        time.sleep(0.05)
