"""Independent readers of an env-file, to hold slotgen's controls files to (SPEC section 14).

Three readers, none of them slotgen's grammar:

- `systemd_read(path)`: systemd's own parser, `load_env_file` from the OS's libsystemd-shared, called
  through ctypes (what `EnvironmentFile=` loads). A machine without the library FAILS here, it never skips:
  `.ci/run` installs the `systemd` package when it is missing.
- `docker_read(data)`: docker's `--env-file` rules, written from docker's source, github.com/docker/cli
  `pkg/kvfile/kvfile.go` (`parseKeyValueFile`; before it moved there, `opts/file.go`).
- `slotgen_read(data)`: what slotgen says the runtime reads (`controls_file.runtime_values`).

`controls(reading)` narrows any reading to the four controls of SPEC section 1 (empty = unset = None, as the
gating engine treats them), so the three can be compared. `read_all(path)` gives each reader's four controls
(or the ReaderError it failed with), `agree(readings)` and `kill_engaged(readings)` judge them, and
`kill_engaged_everywhere(path)` is the rollback's promise: every reader reads SLOTGEN_AI_KILL engaged; a
reader that fails counts as not engaged.

systemd is called in-process: the library handle is loaded once per process (`systemd_library()`) and a read
costs under a millisecond, against some 200 ms for a read in a child process; 20,000 hostile inputs (random
bytes, and "\r", backslashes, quotes, NUL, invalid UTF-8) never crashed it. (PID 1 also drops assignments
whose name is not a valid variable name; that never touches the four controls, so it is left out.)
"""

from __future__ import annotations

import ctypes
import glob
import os
import stat
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from slotgen_ops.contract import CONTROL_VARS, KILL_VAR, kill_switch_engaged

LIBRARY_GLOBS = ("/usr/lib/*/systemd/libsystemd-shared-*.so", "/usr/lib/systemd/libsystemd-shared-*.so",
                 "/lib/*/systemd/libsystemd-shared-*.so", "/usr/lib64/systemd/libsystemd-shared-*.so")

READERS = ("systemd", "docker", "slotgen")


class ReaderError(Exception):
    """A reader refused the file (systemd's parser returned an error, docker would not start the container)."""

    reader = "?"


class SystemdReadError(ReaderError):
    reader = "systemd"

    def __init__(self, path: str, errno_: int) -> None:
        super().__init__(f"systemd load_env_file({path}) failed: {os.strerror(errno_)} (errno {errno_})")
        self.errno = errno_


class DockerReadError(ReaderError):
    reader = "docker"


class SlotgenReadError(ReaderError):
    reader = "slotgen"


class SystemdMissing(RuntimeError):
    """No libsystemd-shared on this machine: the oracle cannot run. A failure, not a skip."""


# --------------------------------------------------------------------------------------------- systemd

class _Systemd:
    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        # systemd 252, src/basic/env-file.h: int load_env_file(FILE *f, const char *fname, char ***ret);
        # f = NULL: the library opens fname itself. *ret is a NULL-terminated strv of "NAME=VALUE", later
        # assignments replacing earlier ones (strv_env_replace_consume); freed with the library's strv_free.
        self.load_env_file = lib.load_env_file
        self.load_env_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                       ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p))]
        self.load_env_file.restype = ctypes.c_int
        self.strv_free = lib.strv_free
        self.strv_free.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        self.strv_free.restype = ctypes.c_void_p
        self.lib = lib


def find_systemd_library() -> str | None:
    """The path of the OS's libsystemd-shared-*.so (any architecture), or None."""
    for pattern in LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    return None


@cache
def systemd_library() -> _Systemd:
    """The loaded library, once per process; SystemdMissing (a failure) when the OS has none."""
    path = find_systemd_library()
    if path is None:
        raise SystemdMissing(
            "systemd's env-file parser is the oracle for controls files (SPEC section 14), and no "
            f"libsystemd-shared-*.so was found ({', '.join(LIBRARY_GLOBS)}): install the OS package "
            "`systemd` (.ci/run does: apt-get install systemd)")
    try:
        return _Systemd(path)
    except (OSError, AttributeError) as exc:
        raise SystemdMissing(f"{path} cannot be used as the env-file oracle: {exc}") from None


def systemd_read(path: str | os.PathLike[str]) -> dict[str, str]:
    """Every assignment systemd's `load_env_file` reads from the file at `path` (later ones win).

    SystemdReadError when the parser refuses the file (invalid UTF-8: EINVAL; a NUL byte: EBADMSG; ...).
    """
    sd = systemd_library()
    ret = ctypes.POINTER(ctypes.c_char_p)()
    fname = os.fsencode(path)
    r = sd.load_env_file(None, fname, ctypes.byref(ret))
    if r < 0:
        raise SystemdReadError(os.fsdecode(fname), -r)
    out: dict[str, str] = {}
    if not ret:
        return out
    try:
        index = 0
        while ret[index] is not None:
            # The library has checked every key and value is UTF-8 (check_utf8ness_and_warn).
            name, _, value = ret[index].decode("utf-8").partition("=")
            out[name] = value
            index += 1
    finally:
        sd.strv_free(ret)
    return out


def systemd_read_bytes(data: bytes, directory: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """`systemd_read` of these bytes, written to a temporary file (in `directory`, if given)."""
    fd, name = tempfile.mkstemp(prefix="envfile-oracle-", suffix=".env", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return systemd_read(name)
    finally:
        os.unlink(name)


# ---------------------------------------------------------------------------------------------- docker

#: bufio.MaxScanTokenSize: a longer line ends the scan with bufio.ErrTooLong, and docker refuses the file.
_GO_MAX_TOKEN = 64 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"
#: Go's unicode.IsSpace: the Latin-1 spaces, then Unicode's White_Space property.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                      "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _go_scan_lines(data: bytes) -> list[bytes]:
    """bufio.Scanner with bufio.ScanLines: split on "\\n" only, drop ONE "\\r" before it (dropCR), the last
    line needs no "\\n", and no empty token at the end."""
    lines = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        line = data[start:] if end < 0 else data[start:end]
        if len(line) >= _GO_MAX_TOKEN:
            raise DockerReadError(f"line {len(lines) + 1}: bufio.Scanner: token too long")
        if line.endswith(b"\r"):
            line = line[:-1]
        lines.append(line)
        if end < 0:
            break
        start = end + 1
    return lines


def docker_read(data: bytes, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every assignment `docker run --env-file` passes to the container, by docker's own rules.

    From github.com/docker/cli pkg/kvfile/kvfile.go, parseKeyValueFile (opts.ReadKVEnvStrings calls it with
    os.LookupEnv), read at docker/cli main:
    - lines from bufio.Scanner/ScanLines: split on "\\n"; a "\\r" right before the "\\n" is dropped, any
      other "\\r" is part of the line (and of the value);
    - a line that is not valid UTF-8 is an error (the whole file is refused);
    - on line 1 a UTF-8 BOM is removed;
    - leading whitespace (unicode.IsSpace) is trimmed; an empty line or one starting with '#' is skipped;
    - NAME=VALUE splits at the first '='; VALUE is taken verbatim: no quotes, escapes, "$" or trimming;
    - an empty NAME, or a NAME holding a blank or a tab, is an error;
    - a line without '=' takes NAME's value from the environment (`environ`, default os.environ), and is
      left out when the variable is not set there;
    - (beyond the CLI) a NUL byte is an error: no container can be started with it in its environment.
    Later assignments win here. (Docker hands the daemon the whole list; the grammar allows no duplicate,
    so which copy a process finally sees never matters for a file the grammar accepts.)
    DockerReadError where docker refuses the file.
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for number, raw in enumerate(_go_scan_lines(bytes(data)), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DockerReadError(f"invalid utf8 bytes at line {number}: {raw!r}") from None
        if number == 1 and text.startswith(_UTF8_BOM.decode("utf-8")):
            text = text[1:]
        index = 0
        while index < len(text) and text[index] in _GO_SPACE:
            index += 1
        line = text[index:]
        if not line or line[0] == "#":
            continue
        key, eq, value = line.partition("=")
        if not key:
            raise DockerReadError(f"no variable name on line {line!r}")
        if " " in key or "\t" in key:
            raise DockerReadError(f"variable {key!r} contains whitespaces")
        if "\0" in line:
            # Not in the CLI's parser: no process can be given a NUL in its environment (Go's exec, and so
            # runc, refuses such an entry with EINVAL), so such a file starts no container.
            raise DockerReadError(f"line {number}: a NUL byte cannot be passed in an environment")
        if eq:
            out[key] = value
        elif line in env:
            out[key] = env[line]
    return out


# --------------------------------------------------------------------------------------------- slotgen

def slotgen_read(data: bytes) -> dict[str, str | None]:
    """What slotgen says the runtime reads from these bytes: the four controls, None for unset."""
    from slotgen_ops.changes.controls_file import runtime_values

    try:
        return runtime_values(bytes(data))
    except Exception as exc:  # counted as "not read", so never as engaged
        raise SlotgenReadError(f"runtime_values failed: {exc.__class__.__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------- comparing

def controls(reading: Mapping[str, str | None]) -> dict[str, str | None]:
    """The four controls of SPEC section 1 in a reading; unset or empty is None (the engine's 'unset')."""
    return {name: (reading.get(name) or None) for name in CONTROL_VARS}


#: Beyond this the oracle reads nothing (a huge or sparse file is no controls file).
ORACLE_BOUND = 16 << 20


class NotReadable(ReaderError):
    """The file is not one a reader can take: missing, not a regular file (a FIFO would block every reader),
    or over ORACLE_BOUND."""

    def __init__(self, reader: str, message: str) -> None:
        super().__init__(f"{reader}: {message}")
        self.reader = reader


def read_all(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) \
        -> dict[str, dict[str, str | None] | ReaderError]:
    """The four controls each reader reads from the file at `path`, or the ReaderError it failed with:
    {"systemd": ..., "docker": ..., "slotgen": ...}. `environ`: docker's, for a line without '='.
    A path that is missing, not a regular file, or over ORACLE_BOUND: NotReadable for each reader."""
    try:
        st = os.stat(path)
        problem = None if stat.S_ISREG(st.st_mode) else "not a regular file"
        if problem is None and st.st_size > ORACLE_BOUND:
            problem = f"{st.st_size} bytes, over the oracle's bound"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem is not None:
        return {reader: NotReadable(reader, f"{os.fspath(path)}: {problem}") for reader in READERS}
    data = Path(path).read_bytes()
    out: dict[str, dict[str, str | None] | ReaderError] = {}
    for reader, read in (("systemd", lambda: systemd_read(path)), ("docker", lambda: docker_read(data, environ)),
                         ("slotgen", lambda: slotgen_read(data))):
        try:
            out[reader] = controls(read())
        except ReaderError as exc:
            out[reader] = exc
    return out


def read_all_bytes(data: bytes, directory: str | os.PathLike[str] | None = None,
                   environ: Mapping[str, str] | None = None) -> dict[str, dict[str, str | None] | ReaderError]:
    """`read_all` of these bytes, written to a temporary file (in `directory`, if given)."""
    fd, name = tempfile.mkstemp(prefix="envfile-oracle-", suffix=".env", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return read_all(name, environ)
    finally:
        os.unlink(name)


def agree(readings: Mapping[str, dict[str, str | None] | ReaderError]) -> bool:
    """Whether every reader read the file, and read the same four controls."""
    values = list(readings.values())
    return all(not isinstance(v, ReaderError) for v in values) and all(v == values[0] for v in values)


def kill_engaged(readings: Mapping[str, dict[str, str | None] | ReaderError]) -> dict[str, bool]:
    """Per reader: SLOTGEN_AI_KILL engaged (SPEC section 1)? A reader that failed: False."""
    return {reader: (not isinstance(v, ReaderError)) and kill_switch_engaged(v[KILL_VAR])
            for reader, v in readings.items()}


def kill_engaged_everywhere(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> bool:
    """True only if systemd, docker and slotgen all read SLOTGEN_AI_KILL engaged from the file at `path`
    (a reader that errors counts as not engaged). What a rollback may call engaged."""
    return all(kill_engaged(read_all(path, environ)).values())
