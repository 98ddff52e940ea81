"""What people read of an environment, never writing it: the plan ahead (`plan`), the facts of
`status` and the audit report, and signed checkpoints of the log."""

from ..lazy import exports

_WHERE = {
    "audit_verify": "report",
    "check_checkpoint": "checkpoints",
    "make_checkpoint": "checkpoints",
    "plan_environment": "plan",
    "read_checkpoint": "checkpoints",
    "recent_entries": "report",
    "status_report": "report",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
