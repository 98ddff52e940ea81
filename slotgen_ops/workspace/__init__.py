"""The composition root: a workspace opened, each environment on its store (files or PostgreSQL).
Also what spans the store: creating a workspace, moving it to a database, rendering hosts' controls."""

from ..lazy import exports

_WHERE = {
    "Workspace": "wiring",
    "init_workspace": "init",
    "open_store": "wiring",
    "render_once": "render",
    "watch": "render",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
