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

On PostgreSQL a row is not an authority (SPEC section 14): what is rendered is
the verified log head's controls (`PgEnvironmentStore.authority`), held to
the controls byte grammar (`envgrammar`) and read back through it before a
byte is written. When the database holds something that is not that (a
controls row that disagrees with the head, a log row that is not an entry, a
log that fails verification, a value outside the grammar), the file is
written with the kill-switch engaged (fail closed: the other values as the
file had them, if it held controls, else every control safe) and the failure
is said: `render` exits 4, `render --watch` says it and keeps watching. A
database that cannot be reached is not that: the file keeps its last
controls, and a rollback on this host engages it directly (`hostfiles`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BadInput, IntegrityFailure
from ..files.atomic import atomic_write, identity
from ..changes.controls_file import read_raw, target_of


class FailedClosed(IntegrityFailure):
    """The environment could not be rendered as its verified log says: the file was written with the
    kill-switch engaged instead (exit 4). `written`: whether the file's bytes changed."""

    def __init__(self, message: str, written: bool) -> None:
        super().__init__(message)
        self.written = written

Say = Callable[[str], None]

POLL_S = 0.2          # the file backend's watch: how often the controls file is looked at
HEARTBEAT_S = 5.0     # PostgreSQL: re-read this often even with no notification (belt and braces)
RECONNECT_S = 0.5     # PostgreSQL: how soon to try again after losing the server


def current(env: Any) -> bytes:
    """The env-file bytes for the environment as it stands (IntegrityFailure if it cannot be read).

    A rollback on this host that the environment's log does not hold yet (its break-glass journal, kept
    while the database could not be reached) keeps the kill-switch engaged in what is rendered, whatever
    the database says, until it is folded in."""
    if env.backend == "files":
        return env.controls.read().raw
    return _from_log_head(env)


def _from_log_head(env: Any) -> bytes:
    """The env-file for a database-backed environment: its verified log head's controls (NotAuthoritative
    if the database holds anything else), the kill-switch engaged if the row engaged it ahead of the log or
    this host holds a rollback the log does not."""
    from ..contract import KILL_VAR
    from ..store.pg_log import NotAuthoritative
    from ..files import envgrammar
    from ..changes.breakglass import BreakGlassJournal
    from ..changes.controls_file import render_controls

    values, head, _ = env.store.authority(env)
    if BreakGlassJournal(env).unfolded(head["state"]):
        values = {**values, KILL_VAR: "true"}
    try:  # read back through the grammar before a byte is written: it must say exactly these values
        data = render_controls(env.name, values, int(head["seq"]), str(head["hash"]))
        parsed = envgrammar.parse(data)
    except (envgrammar.GrammarError, IntegrityFailure) as exc:
        raise NotAuthoritative(f"{env.store.describe()}: the controls of seq {head['seq']} do not render within "
                               f"the controls grammar ({exc})") from None
    if parsed.values != values or parsed.head != (int(head["seq"]), str(head["hash"])):
        raise NotAuthoritative(f"{env.store.describe()}: the controls of seq {head['seq']} do not read back as "
                               "themselves once rendered")
    return data


def engaged(env: Any, output: Path) -> bytes:
    """Fail-closed bytes for `output`: SLOTGEN_AI_KILL=true, the other values and head line as the file held
    them if it holds controls (within the grammar), else every control safe."""
    from ..contract import KILL_VAR
    from ..files import envgrammar
    from ..changes.controls_file import NO_HEAD, render_controls
    from ..runbook.state import SAFE_CONTROLS

    values: dict[str, str | None] = dict(SAFE_CONTROLS)
    head = NO_HEAD
    try:
        raw = read_raw(target_of(output))
        parsed = envgrammar.parse(raw) if raw is not None else None
    except (OSError, IntegrityFailure, BadInput, envgrammar.GrammarError):
        parsed = None
    if parsed is not None:
        values.update(parsed.values)
        head = parsed.head or NO_HEAD
    values[KILL_VAR] = "true"
    try:
        data = render_controls(env.name, values, *head)
        envgrammar.parse(data)
    except (IntegrityFailure, envgrammar.GrammarError):
        data = render_controls(env.name, {**SAFE_CONTROLS, KILL_VAR: "true"}, *NO_HEAD)
    return data


def fold_here(env: Any, say: Say) -> None:
    """Fold this host's break-glass rollbacks into the environment's log (recorded as unidentified: no key
    is at hand), so that every host renders them."""
    from ..policy.authority import Actor
    from ..changes.breakglass import BreakGlassJournal
    from ..changes.settling import _settled
    from ..files.locking import LockBusy

    from ..store.pg_log import NotAuthoritative

    try:
        head = env.log.head()
    except NotAuthoritative:  # nothing to fold into: rendering says why, and engages the file
        return
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
    from ..changes.hostfiles import remember

    from ..store.pg_log import NotAuthoritative

    remember(env.workspace.root, env.name, output)
    try:
        data = current(env)
    except NotAuthoritative as exc:
        data = engaged(env, output)
        written = _write(output, data)
        raise FailedClosed(f"integrity failure: {exc.message}; {output} has the kill-switch engaged "
                           "(SLOTGEN_AI_KILL=true, fail closed)", written) from None
    return _write(output, data), data


def _write(output: Path, data: bytes) -> bool:
    """Write `data` to the file `output` is (through a symlink onto controls), only if it differs."""
    try:
        target = target_of(output)
        if read_raw(target) == data:
            return False
        atomic_write(target, data)
    except OSError as exc:  # a FIFO, a device, a symlink onto anything but controls, a read-only directory
        raise BadInput(f"--output {output}: cannot write it ({exc.strerror or exc})") from None
    return True


def watch(env: Any, output: Path, say: Say, *, stop: Callable[[], bool] = lambda: False) -> None:
    """Keep `output` equal to the environment's controls until `stop()` (or a signal)."""
    if env.backend == "files":
        _watch_files(env, output, say, stop)
    else:
        _watch_postgres(env, output, say, stop)


def _said_write(env: Any, output: Path, say: Say, why: str, said: dict[str, Any] | None = None) -> None:
    """Render once and say what changed; an integrity failure is said when it starts or changes (not at every
    heartbeat), and when it ends."""
    said = {} if said is None else said
    try:
        written, data = render_once(env, output)
    except FailedClosed as exc:
        if exc.written or said.get("problem") != exc.message:
            say(exc.message)
        said["problem"] = exc.message
        return
    except IntegrityFailure as exc:
        say(f"cannot read {env.name} ({exc.message}); {output} is left as it is")
        return
    if said.pop("problem", None) is not None:
        say(f"{env.name} verifies again; {output} follows its log's head")
    if written:
        head = next((line for line in data.decode().splitlines() if line.startswith("# slotgen-head")), "")
        say(f"{output} rewritten ({why}; {head.removeprefix('# slotgen-head: ')})")


def _watch_files(env: Any, output: Path, say: Say, stop: Callable[[], bool]) -> None:
    def current_identity() -> list[int] | None:
        try:
            return identity(target_of(env.controls_path))
        except OSError:  # nothing there, or an unsafe symlink (UnsafeFile is an OSError)
            return None

    seen: Any = None
    why = "start"
    while not stop():
        now = current_identity()
        if why == "start" or now != seen:
            _said_write(env, output, say, why)
            seen, why = now, "changed"
        time.sleep(POLL_S)


def _watch_postgres(env: Any, output: Path, say: Say, stop: Callable[[], bool]) -> None:
    import psycopg

    from ..store.postgres import connect

    url = env.store.url
    connected_once = False
    said: dict[str, Any] = {}
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
                _said_write(env, output, say, "reconnected" if connected_once else "start", said)
                connected_once = True
                while not stop():
                    relevant = False
                    for note in conn.notifies(timeout=HEARTBEAT_S, stop_after=1):
                        relevant = note.payload.split(" ", 1)[0] == env.name
                    _said_write(env, output, say, "changed" if relevant else "heartbeat", said)
        except (psycopg.OperationalError, IntegrityFailure) as exc:
            from ..store.postgres import _one_line

            say(f"lost the state database ({_one_line(exc, url)[:120]}); reconnecting")
            env.store.use(None)
            _sleep(RECONNECT_S, stop)


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop():
        time.sleep(0.05)
