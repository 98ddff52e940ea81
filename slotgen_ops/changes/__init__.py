"""The write protocol, the one package that changes an environment: snapshot and writer, set, approve,
verify, rollback, repair, break-glass, config accept, host files; and the store's seam (seam.py)."""

from ..lazy import exports

_WHERE = {
    "BreakGlassJournal": "breakglass",
    "ControlsWriter": "writer",
    "Environment": "environment",
    "EnvironmentStore": "seam",
    "Snapshot": "snapshot",
    "Superseded": "writer",
    "approve": "steps",
    "approve_config": "config_change",
    "chain_report": "chain",
    "repair_log": "repair",
    "require_sound": "chain",
    "rollback_controls_file": "rollback",
    "set_control": "steps",
    "verify_environment": "steps",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
