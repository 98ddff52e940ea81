"""`slotgen state upgrade`: create or migrate the PostgreSQL schema a team keeps its environments in."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..errors import BadInput
from .common import JsonOpt, WorkspaceOpt, console, emit_json, escape

state_app = typer.Typer(help="Where environments are kept: the PostgreSQL schema (SPEC section 10).",
                        no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option(
    "--url", metavar="URL", show_default=False,
    help="postgresql://user@host:port/db (else $SLOTGEN_STATE_URL); the password from the URL, PGPASSWORD or "
         "~/.pgpass, never printed.")]


def _url(url: str | None) -> str:
    found = url or os.environ.get("SLOTGEN_STATE_URL")
    if not found:
        raise BadInput("no state database given: pass --url postgresql://... or set SLOTGEN_STATE_URL")
    return found


@state_app.command("upgrade")
def upgrade(url: UrlOpt = None, json_out: JsonOpt = False) -> int:
    """Create the slotgen schema in the database, or migrate it to this version (idempotent; run as the
    database's owner). Grants role slotgen_writer the rights operators need: read, and append to the log.

    Example: slotgen state upgrade --url postgresql://postgres@db.internal/slotgen
    """
    from ..store.postgres import describe_url
    from ..store.postgres import upgrade as do_upgrade

    target = _url(url)
    done = do_upgrade(target)
    if json_out:
        emit_json({"ok": True, "database": describe_url(target), **done})
    elif done["applied"]:
        console().print(f"{escape(describe_url(target))}: schema migrated from version {done['from']} to {done['to']} "
                        f"(applied {', '.join(map(str, done['applied']))})")
    else:
        console().print(f"{escape(describe_url(target))}: schema already at version {done['to']}; nothing to do")
    return 0


@state_app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", metavar="URL", show_default=False,
                                    help="The postgresql:// database to move this workspace's environments into.")] = ...,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Move this file workspace's environments into PostgreSQL, chains, signatures and checkpoints intact.

    Only sound, settled environments move; the files are set aside under environments/migrated-<time>/,
    and environments/STATE-URL makes this workspace (and its clones) use the database from then on.

    Example: slotgen state migrate --to postgresql://slotgen@db.internal/slotgen
    """
    from ..workspace.migrate import migrate as do_migrate
    from ..workspace import Workspace

    done = do_migrate(Workspace.locate(workspace), to)
    if json_out:
        emit_json({"ok": True, **done})
        return 0
    out = console()
    for item in done["environments"]:
        out.print(f"{item['env']}: {item['entries']} entries moved to {escape(done['to'])} (head seq {item['headSeq']})")
    out.print(f"the files are kept in {escape(str(done['setAside']))}; this workspace now uses the database. "
              "environments/STATE-URL is pinned policy: until it is accepted every change but rollback is refused "
              "(slotgen approve --config, then slotgen config accept, for each environment; then verify again "
              f"before going live). To say so in slotgen.yaml too, set {done['stateLine']} before accepting.",
              soft_wrap=True)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")
