"""The command line: parse, call, render. One error boundary maps every failure to its exit code; the
entry point engages a rollback's kill-switch before the CLI itself is imported."""

from ..lazy import exports

_WHERE = {
    "main": "entry",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
