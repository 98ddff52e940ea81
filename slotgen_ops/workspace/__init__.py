"""The composition root: a workspace opened, each environment on its store (files or PostgreSQL).
Also what spans the store: creating a workspace, moving it to a database, rendering hosts' controls."""

from .wiring import Workspace, open_store

__all__ = ["Workspace", "open_store"]
