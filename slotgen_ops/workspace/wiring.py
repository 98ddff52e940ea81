"""The composition root: a workspace opened, each environment on the store slotgen.yaml names.

`policy.config.WorkspaceFiles` reads the files; this adds the runbook (a layer
above policy) and `environment()`, which picks the store (`store.files`, the
embedded default, or `store.pg_env` for a `state:` database) and hands it to
the write protocol (`changes.environment.Environment`) behind `changes.seam`.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..policy.config import ENV_NAME_RE, WorkspaceFiles

if TYPE_CHECKING:
    from ..changes.environment import Environment
    from ..runbook.runbook import Runbook

__all__ = ["Workspace", "open_store"]


def open_store(workspace: WorkspaceFiles, name: str, url: str | None) -> Any:
    """Where environment `name` is kept: a team's database (SPEC section 10) or the workspace's files."""
    if url:
        from ..store.pg_env import PgEnvironmentStore

        return PgEnvironmentStore(url, name)
    from ..store.files import FileEnvironmentStore

    return FileEnvironmentStore(workspace.environments_dir, name)


class Workspace(WorkspaceFiles):
    """A workspace opened: its files, its runbook, and its environments on their store."""

    @cached_property
    def runbook(self) -> Runbook:
        from ..runbook.runbook import Runbook

        return Runbook.load(self.root / self.config.runbook)

    def environment(self, name: str) -> Environment:
        from ..changes.environment import Environment

        if name not in self.config.environments:
            known = ", ".join(sorted(self.config.environments))
            raise BadInput(f"unknown environment {name!r} (this workspace has: {known})")
        return Environment(self, name, self.config.environments[name], open_store(self, name, self.state_url))

    def environment_for_rollback(self, name: str) -> Environment:
        """The environment even when slotgen.yaml cannot be read: rollback must work regardless.

        The name must be a well-formed environment name whose files exist (or that
        slotgen.yaml lists); its configuration is None when it cannot be read.
        """
        from ..changes.environment import Environment

        try:
            return self.environment(name)
        except BadInput as exc:
            problem = exc.message
        if not ENV_NAME_RE.match(name):
            raise BadInput(f"{name!r} is not an environment name")
        present = [p for p in (self.environments_dir / f"{name}.env", self.environments_dir / f"{name}.audit.jsonl")
                   if p.exists() or p.is_symlink()]
        if not present:
            raise BadInput(f"unknown environment {name!r}: no environments/{name}.env here, and {problem}")
        return Environment(self, name, None, open_store(self, name, self.state_url_leniently()))
