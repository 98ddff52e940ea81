"""An interrupt that lands where Python cannot raise it is not lost and prints no traceback.

SIGTERM, SIGHUP and SIGINT become KeyboardInterrupt wherever the main thread is. When that is a weakref
callback (importlib uses them for its module locks) or a __del__, Python prints "Exception ignored in ...
KeyboardInterrupt" with a traceback and carries on. The fault campaign caught one, mid-import. The CLI's
hook delivers the interrupt again, as SIGINT, where it can be raised; inside a critical section (signals
blocked) it waits for the section's end like any other signal.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import signal, sys, time, weakref
from slotgen_ops.cli.app import _interrupt
from slotgen_ops.cli.boundary import keep_interrupts
from slotgen_ops.files.signals import signals_deferred

if sys.argv[1] == "hooked":
    keep_interrupts()
signal.signal(signal.SIGTERM, _interrupt)
events = []

def callback(ref):
    if sys.argv[2] == "deferred":
        raise KeyboardInterrupt  # as the SIGTERM handler raises it, here while a section holds the signals
    signal.raise_signal(signal.SIGTERM)  # the signal arrives while Python runs the callback
    for _ in range(1000):
        pass

class Thing:
    pass

def drop():
    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing  # runs the callback

try:
    if sys.argv[2] == "deferred":
        with signals_deferred():
            drop()
            if sys.argv[1] == "hooked":
                while signal.SIGINT not in signal.sigpending():  # delivered again, and held by the section
                    pass
            events.append("section finished")
    else:
        drop()
    time.sleep(30)  # the rest of a command: what the interrupt must stop
    events.append("not interrupted")
except KeyboardInterrupt:
    events.append("interrupted")
print(" / ".join(events))
"""


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The script's outcome; a script still sleeping at `timeout` was not interrupted."""
    try:
        return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(exc.cmd, -1, "still running: not interrupted", err)


def test_without_the_hook_the_interrupt_is_lost_with_a_traceback():
    """The failure the hook exists for, shown for real (so the test below can fail)."""
    done = run("bare", "plain", timeout=5)
    assert done.stdout.strip() == "still running: not interrupted"
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr


def test_with_the_hook_it_is_raised_where_it_can_be_and_nothing_is_printed():
    done = run("hooked", "plain")
    assert (done.stdout.strip(), done.stderr) == ("interrupted", "")


def test_inside_a_critical_section_it_waits_for_the_section_to_end():
    """Delivered again while a critical section blocks the stop signals, it waits (pending) for its end."""
    done = run("hooked", "deferred")
    assert (done.stdout.strip(), done.stderr) == ("section finished / interrupted", "")
