"""slotgen: switch on the AI path of slot generation in Beta, safely.

The library core is useful without the CLI: `decide` answers, for one job under
given controls, STUB or OpenAI and why.
"""

from .contract import (
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
