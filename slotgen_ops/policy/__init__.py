"""The workspace's files and who may act: slotgen.yaml and its fields, operators (roster, authority,
signing), allowlists, sample jobs, paths, and the pinned policy (what is accepted, what drifted)."""

from ..lazy import exports

_WHERE = {
    "Actor": "authority",
    "EnvironmentConfig": "config",
    "Operator": "roster",
    "Roster": "roster",
    "Session": "signing",
    "WorkspaceConfig": "config",
    "WorkspaceFiles": "config",
    "default_allowlist": "allowlists",
    "drift": "pins",
    "load_sample_jobs": "samples",
    "require_role": "authority",
    "resolve_actor": "authority",
    "snapshot": "pins",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
