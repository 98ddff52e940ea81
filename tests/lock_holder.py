"""A real second process holding an environment directory's writer lock (the `flock` every writer takes), for
tests of what happens while another operator's command is inside its critical section."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
sys.stdout.write("locked\\n")
sys.stdout.flush()
sys.stdin.read()
"""


@contextmanager
def lock_held(environments: Path):
    """Hold the writer lock of `environments` (a workspace's environments/ directory) in a child process until
    the block ends; returns once the child says it holds it."""
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(environments)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line == "locked\n", f"the lock holder did not take the lock ({child.poll()})"
        yield child.pid
    finally:
        child.stdin.close()  # the child ends, and the kernel releases its flock
        child.wait(timeout=30)
