"""Where a workspace and its environments live: names and paths only (stdlib, imported by the fast path)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

WORKSPACE_FILE = "slotgen.yaml"
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")  # \Z: "$" would also match before a final newline


def workspace_root(explicit: Path | None = None) -> Path | None:
    """--workspace DIR, else $SLOTGEN_WORKSPACE, else the nearest parent holding slotgen.yaml (None: none)."""
    if explicit is None and os.environ.get("SLOTGEN_WORKSPACE"):
        explicit = Path(os.environ["SLOTGEN_WORKSPACE"])
    if explicit is not None:
        return explicit if (explicit / WORKSPACE_FILE).is_file() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    return None


#: In environments/: the database a workspace's environments were moved to by `slotgen state migrate`.
STATE_MARKER = "STATE-URL"
MARKER_BOUND = 4096  # a URL; anything longer is not one


def marker_url(environments_dir: Path) -> str | None:
    """The database a migrated workspace's environments moved to (None if they did not)."""
    import stat

    try:  # non-blocking and bounded: a FIFO or a device in its place is no URL, never a hang (SPEC section 14)
        fd = os.open(Path(environments_dir) / STATE_MARKER, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, MARKER_BOUND + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(text) > MARKER_BOUND:
        return None
    url = text.decode("utf-8", errors="replace").strip()
    return url if url.startswith(("postgresql://", "postgres://")) else None


def state_url_in_files(root: Path) -> str | None:
    """Where a workspace keeps its environments, read from its files without validating anything (for the
    rollback, which must work when slotgen.yaml does not): slotgen.yaml's `state:` URL, else the marker
    `slotgen state migrate` leaves; None for files."""
    try:
        text = (Path(root) / WORKSPACE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    match = re.search(r"^state:\s*['\"]?(postgres(?:ql)?://[^'\"\s#]+)", text, re.MULTILINE)
    return match.group(1) if match else marker_url(Path(root) / "environments")


def _home() -> str | None:
    """$HOME, else the account's home directory from the password database (None: neither)."""
    home = os.environ.get("HOME")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir or None
    except (ImportError, KeyError):
        return None


def user_dir(xdg_var: str, fallback: tuple[str, ...]) -> str | None:
    """$XDG_… when it is an absolute path (the XDG rule: a relative one is ignored), else ~/<fallback>;
    None when there is no home. Never a temporary directory: there is no such fallback."""
    value = os.environ.get(xdg_var)
    if value and os.path.isabs(value):
        return value
    home = _home()  # never created here: a home that is not there is no place to keep anything
    return os.path.join(home, *fallback) if home and os.path.isabs(home) and os.path.isdir(home) else None


def _safe_chain(path: str, uid: int) -> bool:
    """Every directory from / down to `path` (which exists) is one no other user can change what it holds:
    owned by root or this user, and writable by nobody else, or, if others may write in it (a sticky shared
    directory like /tmp), only with the sticky bit and the next directory down owned by this user (others
    cannot rename or replace it there)."""
    import stat

    parts = [p for p in path.split(os.sep) if p]
    here = os.sep
    for i in range(len(parts) + 1):
        try:
            st = os.lstat(here)
        except OSError:
            return False
        if st.st_uid not in (0, uid):
            return False
        if stat.S_ISLNK(st.st_mode):  # a link of root's or ours, in a safe directory: its target's chain is checked
            pass
        elif not stat.S_ISDIR(st.st_mode):
            return False
        elif st.st_mode & 0o022:
            if not st.st_mode & stat.S_ISVTX or i == len(parts):
                return False
            try:
                below = os.lstat(os.path.join(here, parts[i]))
            except OSError:
                return False
            if below.st_uid != uid:
                return False
        if i < len(parts):
            here = os.path.join(here, parts[i])
    return True


def private_dir(base: str | None, *parts: str) -> Path | None:
    """`base/parts…`, created (mode 0700) if need be, if it is a directory of this user's that nobody else
    can write to or swap: the directory itself owned by this user and not group- or world-writable, every
    directory above it as `_safe_chain` says (both the path as given and as resolved), and no symlink among
    the parts. None otherwise, and then nothing is created below `base`: the caller keeps nothing (a cache)
    or remembers nothing (SPEC section 14: never a shared temporary directory)."""
    import stat

    if not base or not os.path.isabs(base):
        return None
    uid = os.getuid()
    given = os.path.normpath(base)
    try:
        if not os.path.isdir(given):
            above = os.path.dirname(given)
            while not os.path.isdir(above):  # never create anything below a directory others can change
                above = os.path.dirname(above)
            if not (_safe_chain(above, uid) and _safe_chain(os.path.realpath(above), uid)):
                return None
            os.makedirs(given, mode=0o700, exist_ok=True)
        real = os.path.realpath(given)
        if not (_safe_chain(given, uid) and _safe_chain(real, uid)):
            return None
        here = real
        for part in parts:
            here = os.path.join(here, part)
            try:
                os.mkdir(here, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(here)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
                return None
    except OSError:
        return None
    return Path(here)


def read_private_json(path: Path, limit: int = 4096) -> dict[str, Any] | None:
    """The JSON object in `path` if it is a regular file of this user's of at most `limit` bytes, opened
    without following a symlink and without blocking; None otherwise (a memory or a cache that is not ours,
    or not what it should be, is no memory and no cache)."""
    import json
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > limit:
            return None
        doc = json.loads(os.read(fd, limit + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return doc if isinstance(doc, dict) else None


def write_private_json(path: Path, doc: dict[str, Any], *, durable: bool = False) -> None:
    """Replace `path` with `doc` (mode 0600) through a temp file created exclusively, never through a
    symlink; fsynced first when `durable`. OSError if it cannot be written."""
    import json

    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(doc).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def env_name_for_controls(path: str | os.PathLike[str], env: str | None) -> str:
    """The environment `rollback --controls FILE` names in the file's header: --env if it is a name, else
    the file's name before its first dot (`staging.env` -> staging), else `controls`."""
    if env and ENV_NAME_RE.match(env):
        return env
    stem = Path(path).name.split(".")[0]
    return stem if ENV_NAME_RE.match(stem) else "controls"
