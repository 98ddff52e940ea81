"""Test-only launcher: the real `slotgen` CLI with a fault hook installed. Never shipped.

The package's write protocol calls `hooks.point(NAME)` at named points; the
installed CLI registers no hook, so nothing can switch faults on there (SPEC
section 6). Tests run this file instead of `python -m slotgen_ops`:

    python tests/faultwrap.py [--at POINT[#N] --do ACTION]... [--after-ms MS --signal SIG] -- ARGS...

ACTION: kill | stop | term | hup | int (a signal to this process), sleep:SECONDS,
touch:PATH (a marker file, so a test waits on the thing itself, not a sleep),
or a comma-separated list of them. `POINT#N` fires on the N-th time the point
is reached (default 1). `--after-ms` sends SIG to this process after MS ms of
wall time, wherever it is (the fault campaign's random moments).
`--no-lock` replaces the directory lock with nothing (to prove the race tests
can see a race), `--widen-race` sleeps between reading the log head and
writing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "term": signal.SIGTERM, "hup": signal.SIGHUP,
           "int": signal.SIGINT}


def _act(action: str) -> None:
    for part in action.split(","):
        name, _, arg = part.partition(":")
        if name in SIGNALS:
            os.kill(os.getpid(), SIGNALS[name])
        elif name == "sleep":
            time.sleep(float(arg))
        elif name == "touch":
            marker = Path(arg)  # whole or absent: a waiter may read it the moment it exists
            partial = marker.with_name(marker.name + ".partial")
            partial.write_text(str(os.getpid()))
            os.replace(partial, marker)
        else:
            raise SystemExit(f"faultwrap: unknown action {name!r}")


def install(rules: list[tuple[str, int, str]], widen_race: bool = False) -> None:
    from slotgen_ops.files import hooks

    seen: dict[str, int] = {}

    def hook(name: str) -> None:
        seen[name] = seen.get(name, 0) + 1
        if widen_race and name == "audit-before-write":
            time.sleep(0.002)
        for point, nth, action in rules:
            if point == name and seen[name] == nth:
                _act(action)

    hooks.install(hook)


def disable_lock() -> None:
    from slotgen_ops.files import locking

    @contextlib.contextmanager
    def nothing(self, *args, **kwargs):
        self._exclusive += 1
        try:
            yield
        finally:
            self._exclusive -= 1

    locking.EnvLock.exclusive = nothing  # type: ignore[method-assign]
    locking.EnvLock.shared = contextlib.contextmanager(lambda self: (yield))  # type: ignore[method-assign]
    # Taking turns at signing is fairness, not exclusion: without the lock, writers do not take turns either.
    locking.signing_turn = contextlib.contextmanager(lambda *args, **kwargs: (yield False))  # type: ignore


def main(argv: list[str]) -> None:
    rules: list[tuple[str, int, str]] = []
    after_ms: float | None = None
    sig = "term"
    widen = False
    i = 0
    while i < len(argv) and argv[i] != "--":
        arg = argv[i]
        if arg == "--at":
            point, _, nth = argv[i + 1].partition("#")
            if argv[i + 2] != "--do":
                raise SystemExit("faultwrap: --at POINT must be followed by --do ACTION")
            rules.append((point, int(nth or 1), argv[i + 3]))
            i += 4
        elif arg == "--after-ms":
            after_ms = float(argv[i + 1])
            i += 2
        elif arg == "--signal":
            sig = argv[i + 1]
            i += 2
        elif arg == "--no-lock":
            disable_lock()
            i += 1
        elif arg == "--widen-race":
            widen = True
            i += 1
        else:
            raise SystemExit(f"faultwrap: unknown option {arg!r}")
    args = argv[i + 1:]
    install(rules, widen)
    if after_ms is not None:
        def fire() -> None:
            # This thread blocks the signals, so the kernel delivers them to the main thread, which defers
            # them inside a critical section exactly as it would a signal sent from outside.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            time.sleep(after_ms / 1000)
            os.kill(os.getpid(), SIGNALS[sig])

        threading.Thread(target=fire, daemon=True).start()
    sys.argv = ["slotgen", *args]
    from slotgen_ops.cli.entry import main as slotgen_main

    slotgen_main()


if __name__ == "__main__":
    main(sys.argv[1:])
