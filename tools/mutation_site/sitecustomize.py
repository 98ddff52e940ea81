"""Loaded by every Python process `make mutation` starts (it is on their PYTHONPATH).

While mutmut measures which tests run which functions (MUTANT_UNDER_TEST=stats),
a `slotgen` child process started by a CLI test records the functions it ran
and appends their names to MUTMUT_SUBPROCESS_HITS when it exits; the pytest
plugin `slotgen_mutation_hits` hands them to mutmut, so CLI tests are run
against the mutants of the code they exercise. In every other mode this file
does nothing: the child imports the mutated package from `mutants/` (first on
PYTHONPATH) and inherits MUTANT_UNDER_TEST, so a mutant is live in it too.
"""

from __future__ import annotations

import os


def _record_hits() -> None:
    hits = os.environ.get("MUTMUT_SUBPROCESS_HITS")
    root = os.environ.get("MUTMUT_PROJECT_ROOT")
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or not hits or not root:
        return
    try:
        from mutmut.configuration import config
        from mutmut.state import state
    except ImportError:
        return
    here = os.getcwd()
    os.chdir(root)  # mutmut reads its configuration from the project root
    try:
        config()
    finally:
        os.chdir(here)

    import atexit

    def flush() -> None:
        names = state()._stats
        if names:
            with open(hits, "a", encoding="utf-8") as out:
                out.write("".join(f"{name}\n" for name in sorted(names)))

    atexit.register(flush)


_record_hits()
