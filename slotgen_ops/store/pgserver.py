"""A throwaway PostgreSQL server on 127.0.0.1, for tests, `slotgen demo --team` and benchmarks.

`LocalPostgres()` runs the real server binaries (`initdb`, `postgres`,
`pg_ctl`; PostgreSQL 15 from the OS packages): a fresh cluster in a
temporary directory, password (SCRAM) authentication over TCP on a free
loopback port, stopped and removed on exit. `initdb` refuses to run as root,
so as root the cluster belongs to an unprivileged account (`postgres` by
default) and the server runs as that account; otherwise as the current user.
Nothing here is a mock: a test that needs the database gets a real one, and a
machine without the binaries fails loudly (`PostgresUnavailable`), never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["LocalPostgres", "PostgresUnavailable", "find_binaries"]

ADMIN = "slotgen_admin"


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start (one line, says what to install)."""


def find_binaries() -> Path:
    """The folder holding initdb/postgres/pg_ctl: $SLOTGEN_PG_BIN, PATH, else the newest /usr/lib/postgresql/*/bin."""
    explicit = os.environ.get("SLOTGEN_PG_BIN")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                                           key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                                           else 0)]
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "postgres", "pg_ctl")):
            return folder
    raise PostgresUnavailable("PostgreSQL server binaries not found (initdb, postgres, pg_ctl): install them "
                              "(Debian: apt-get install postgresql-15) or set SLOTGEN_PG_BIN")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """A running throwaway cluster. `admin_url` is a superuser URL (with its password)."""

    def __init__(self, account: str = "postgres", port: int | None = None) -> None:
        self.bin = find_binaries()
        self.port = port or _free_port()
        self.password = secrets.token_urlsafe(18)
        self._root = Path(tempfile.mkdtemp(prefix="slotgen-pg-"))
        self.data = self._root / "data"
        self.sockets = self._root / "sock"
        self.log = self._root / "server.log"
        self._as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to an unprivileged account
            try:
                entry = pwd.getpwnam(account)
            except KeyError:
                raise PostgresUnavailable(f"running as root and there is no {account!r} account to own the "
                                          "cluster (initdb refuses root)") from None
            self._owner = (entry.pw_uid, entry.pw_gid)
            self._as = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]

    @property
    def admin_url(self) -> str:
        return self.url(ADMIN, self.password, "postgres")

    def url(self, user: str, password: str | None, database: str) -> str:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "LocalPostgres":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd="/")

    def start(self) -> None:
        for folder in (self._root, self.sockets):
            folder.mkdir(exist_ok=True)
        pwfile = self._root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._owner is not None:
            for path in (self._root, self.sockets, pwfile):
                os.chown(path, *self._owner)
        os.chmod(pwfile, 0o600)
        done = self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", ADMIN, f"--pwfile={pwfile}",
                          "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                          "--locale=C", "--no-sync"])
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {' '.join(done.stderr.split())[:300]}")
        self.boot()

    def boot(self) -> None:
        """Start (or restart) the server on the same port and data directory; wait until it accepts."""
        done = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                          "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} "
                          "-c fsync=off -c max_connections=300 -c shared_buffers=32MB", "start"])
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-400:] if self.log.exists() else done.stderr
            raise PostgresUnavailable(f"the PostgreSQL server did not start: {' '.join(tail.split())}")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash); `boot()` brings it back (it recovers from its WAL)."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
            # Its backends notice the postmaster is gone and exit; wait until the port is free.
            while time.monotonic() < deadline:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                        break
                time.sleep(0.02)

    def stop(self) -> None:
        if self.data.exists() and self.postmaster_pid() is not None:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(self._root, ignore_errors=True)
