"""slotgen: switch on the AI path of slot generation in Beta, safely.

The library core is useful without the CLI: `decide` answers, for one job under
given controls, STUB or OpenAI and why.
"""

import time as _time

#: When the package was first imported: what a rollback's "engaged in N ms" counts from.
STARTED = _time.perf_counter()

from .contract import (  # noqa: E402
    Allowlist,
    AllowlistUnavailable,
    Controls,
    Decision,
    bucket,
    decide,
    parse_allowlist,
)

__version__ = "0.1.0"

__all__ = [
    "Allowlist",
    "AllowlistUnavailable",
    "Controls",
    "Decision",
    "__version__",
    "bucket",
    "decide",
    "parse_allowlist",
]
