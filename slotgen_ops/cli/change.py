"""The commands that change an environment: set, approve, verify, rollback."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import BadInput, Refused, SlotgenError
from .common import JsonOpt, WorkspaceOpt, emit_json
from .options import (
    DecisionRecordOpt,
    DryRunOpt,
    KeyOpt,
    OperatorOpt,
    RequiredEnvOpt,
    YesOpt,
    make_confirm,
    verifier_with_progress,
)

ItemsArg = Annotated[list[str] | None, typer.Argument(metavar="KEY=VALUE", help="One control and its new value.", show_default=False)]


def _env(workspace, env):
    from ..workspace import Workspace

    return Workspace.locate(workspace).environment(env)


def _actor(environment, operator, key):
    from ..policy.authority import resolve_actor

    ws = environment.workspace
    return resolve_actor(ws.roster, operator, key, identity=ws.config.identity, base=ws.root)


def _finish(result, json_out: bool) -> int:
    from .common import warn
    from .render import render_result

    for warning in getattr(result, "warnings", []):
        warn(warning)
    if json_out:
        emit_json(result.to_json())
    else:
        render_result(result)
    return result.exit_code


def _refused(exc: Refused, json_out: bool):
    if json_out:
        emit_json({"ok": False, "refused": exc.message, "next": exc.next_step,
                   "auditSeq": getattr(exc, "audit_seq", None)})
    return exc


def set_(
    items: ItemsArg = None,
    env: RequiredEnvOpt = ...,
    decision_record: DecisionRecordOpt = None,
    approval: Annotated[str | None, typer.Option("--approval", help="Approval id from 'slotgen approve' (rollout increases).")] = None,
    expect: Annotated[str | None, typer.Option("--expect", help="Compare-and-set: the value you expect to replace ('' = unset).")] = None,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Take one runbook step: set one control, then verify (rolls back on any failed check).

    Refused (exit 3) when the change skips, reorders or combines steps, jumps
    the ladder, lacks a decision record or approval, or comes from someone not
    allowed; the refusal is recorded and names the next allowed step.

    Example: slotgen set --env staging FEATURE_SLOTGEN_AI=true --decision-record DR-123 --operator oncall
    """
    from ..changes.steps import set_control

    environment = _env(workspace, env)
    actor = _actor(environment, operator, key)
    try:
        result = set_control(environment, list(items or []), actor=actor, decision_record=decision_record,
                             approval_id=approval, expect=expect, dry_run=dry_run, confirm=make_confirm(yes),
                             verifier=verifier_with_progress(json_out))
    except Refused as exc:
        raise _refused(exc, json_out) from None
    return _finish(result, json_out)


def approve(
    items: ItemsArg = None,
    env: RequiredEnvOpt = ...,
    decision_record: DecisionRecordOpt = None,
    config: Annotated[bool, typer.Option("--config", help="Approve the policy files as they now stand (for 'slotgen config accept').")] = False,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Record an approval for one exact change; prints its id for 'set --approval ID'.

    A rollout increase, SLOTGEN_AI_KILL=false after a rollback, or with
    --config the policy files as they now stand. Only an approver may approve;
    the approval is single-use, expires (24 h by default) and cannot be used by
    the approver.

    Example: slotgen approve --env staging SLOTGEN_AI_ROLLOUT_PERCENT=1 --decision-record DR-123 --operator approver
    """
    from ..changes.steps import approve as approve_change

    environment = _env(workspace, env)
    actor = _actor(environment, operator, key)
    try:
        if config:
            from ..changes.config_change import approve_config

            if items:
                raise BadInput("approve --config takes no KEY=VALUE: it approves the policy files as they stand")
            result = approve_config(environment, actor=actor, decision_record=decision_record, dry_run=dry_run,
                                    confirm=make_confirm(yes))
        else:
            result = approve_change(environment, list(items or []), actor=actor, decision_record=decision_record,
                                    dry_run=dry_run, confirm=make_confirm(yes))
    except Refused as exc:
        raise _refused(exc, json_out) from None
    return _finish(result, json_out)


def verify(
    env: RequiredEnvOpt = ...,
    observed: Annotated[bool, typer.Option("--observed", help="Judge what the runtime hosts' telemetry shows since the last change, instead of sample jobs (exit 3: inconclusive).")] = False,
    decision_record: DecisionRecordOpt = None,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Run the sample jobs through the real runtime and check schemas, paths, codes and latency.

    With an operator and a decision record the result is recorded, completes
    step 5 when the runbook stands there, and a failed check engages the
    kill-switch (exit 1). Without them it only reports.

    With --observed it judges the hosts' telemetry instead (SPEC section 12).

    Example: slotgen verify --env staging --decision-record DR-123 --operator owner
    """
    from ..changes.steps import verify_environment

    environment = _env(workspace, env)
    if observed:
        from .observed_cmd import verify_observed

        return verify_observed(environment, decision_record, json_out)
    actor = _actor(environment, operator, key) if (operator or decision_record) else _actor_unrecorded()
    try:
        result = verify_environment(environment, actor=actor, decision_record=decision_record,
                                    verifier=verifier_with_progress(json_out))
    except Refused as exc:
        raise _refused(exc, json_out) from None
    if json_out:
        doc = dict(result.verification or {})
        doc.update({"ok": result.ok, "step": result.step, "auditSeq": result.audit_seq, "rollback": result.rollback,
                    "message": result.message})
        emit_json(doc)
        return result.exit_code
    return _finish(result, json_out)


def _actor_unrecorded():
    from ..policy.authority import Actor

    return Actor(claimed=None, operator=None)


def rollback(
    env: Annotated[str | None, typer.Option("--env", "-e", help="The environment (or --controls FILE).", show_default=False)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded; '(none given)' if omitted).", show_default=False)] = None,
    decision_record: DecisionRecordOpt = None,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    controls: Annotated[str | None, typer.Option("--controls", metavar="FILE", help="Engage this env-file directly, with no workspace at all; the act is journalled beside it.", show_default=False)] = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Engage the kill-switch at once, from any state, and record it.

    Never refused and never asks: it writes SLOTGEN_AI_KILL=true first, without
    waiting for any lock, reads it back, then records who and why in the audit
    log, or in the break-glass journal when the log cannot take it. Works with
    a broken workspace, log or disk. Its first line names the workspace and the
    controls file it engaged. Exit 5 (KILL-SWITCH NOT ENGAGED) whenever the
    kill-switch does not read engaged: the controls cannot be written, or no
    workspace or environment was found (point it with --workspace DIR, or
    --controls FILE to engage an env-file with no workspace).

    Example: slotgen rollback --env production --reason "error rate up after 5%" --operator oncall
    """
    from ..errors import KillSwitchNotEngagedError
    from ..policy.authority import Actor, resolve_actor
    from ..changes.rollback import rollback as do_rollback
    from .. import STARTED
    from ..workspace import Workspace
    from . import early

    def not_engaged(exc: KillSwitchNotEngagedError, where: dict[str, str | None]) -> KillSwitchNotEngagedError:
        if json_out:  # automation reads the verdict on stdout too; the one line stays on stderr
            emit_json({"ok": False, "engaged": False, "error": str(exc), **where})
        return exc

    if controls is not None:
        from ..changes.rollback import rollback_controls_file

        try:
            result = rollback_controls_file(controls, env=env, actor=resolve_actor(None, operator, None),
                                            reason=reason, decision_record=decision_record, dry_run=dry_run,
                                            start=STARTED, early=early.EARLY)
        except KillSwitchNotEngagedError as exc:
            raise not_engaged(exc, {"workspace": None, "controlsFile": controls}) from None
        return _finish(result, json_out)
    if not env:
        raise not_engaged(KillSwitchNotEngagedError(
            "KILL-SWITCH NOT ENGAGED: no environment named: give --env E (with --workspace DIR if not run from inside "
            "the workspace), or --controls FILE to engage an env-file directly"), {"workspace": None, "controlsFile": None})
    try:
        environment = Workspace.locate(workspace).environment_for_rollback(env)
    except BadInput as exc:
        raise not_engaged(KillSwitchNotEngagedError(
            f"KILL-SWITCH NOT ENGAGED: {exc.message}; point the rollback with --workspace DIR (or SLOTGEN_WORKSPACE), "
            "or engage the runtime's env-file directly: slotgen rollback --controls FILE --reason TEXT"),
            {"workspace": None, "controlsFile": None}) from None
    try:
        identity = environment.workspace.config.identity
    except SlotgenError:  # slotgen.yaml unreadable: a signed identity, as init writes
        identity = "signed"
    try:
        actor = resolve_actor(environment.workspace.roster, operator, key, identity=identity,
                              base=environment.workspace.root)
    except SlotgenError:  # operators.yaml unreadable: the claim is still recorded
        actor = resolve_actor(None, operator, key, identity=identity, base=environment.workspace.root)
        actor = Actor(claimed=actor.claimed, operator=None)
    try:
        result = do_rollback(environment, actor=actor, reason=reason, decision_record=decision_record,
                             dry_run=dry_run, verifier=verifier_with_progress(json_out), start=STARTED,
                             early=early.EARLY)
    except KillSwitchNotEngagedError as exc:
        raise not_engaged(exc, {"workspace": str(environment.workspace.root),
                                "controlsFile": str(environment.controls_path) if environment.backend == "files"
                                else None}) from None
    return _finish(result, json_out)


config_app = typer.Typer(help="The environment's pinned policy files: what differs, and accepting a change.",
                         no_args_is_help=True)


@config_app.command("status")
def config_status(env: Annotated[str | None, typer.Option("--env", "-e", help="One environment (default: every one).")] = None,
                  workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> int:
    """Show which policy files differ from the digests accepted in each environment's audit log.

    Example: slotgen config status --env production
    """
    from ..changes.config_change import config_status as status_of
    from ..workspace import Workspace
    from .common import console, escape

    ws = Workspace.locate(workspace)
    names = [env] if env else sorted(ws.config.environments)
    docs = [status_of(ws.environment(name)) for name in names]
    if json_out:
        emit_json({"environments": docs})
        return 0
    out = console()
    for doc in docs:
        if doc["problem"]:
            out.print(f"{escape(doc['env'])}: {escape(doc['problem'])}")
        elif not doc["drift"]:
            out.print(f"{doc['env']}: every policy file matches its accepted digest")
        else:
            out.print(f"{doc['env']}: {len(doc['drift'])} policy file(s) differ from what was accepted "
                      "(changes are refused until accepted):")
            for item in doc["drift"]:
                out.print(f"  {item['change']:8} {escape(item['file'])}")
            out.print(f"  accept: slotgen approve --env {doc['env']} --config --decision-record <REF> --operator "
                      f"<APPROVER>, then slotgen config accept --env {doc['env']} --decision-record <REF> "
                      "--approval <ID> --operator <OWNER>", soft_wrap=True)
    return 0


@config_app.command("accept")
def config_accept(
    env: RequiredEnvOpt = ...,
    decision_record: DecisionRecordOpt = None,
    approval: Annotated[str | None, typer.Option("--approval", help="Approval id from 'slotgen approve --config'.")] = None,
    operator: OperatorOpt = None,
    key: KeyOpt = None,
    dry_run: DryRunOpt = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Accept the policy files as they now stand: verified first, then recorded (an engineering-owner,
    with an approval from 'slotgen approve --config' by someone else).

    Example: slotgen config accept --env staging --decision-record DR-124 --approval AP-... --operator owner
    """
    from ..changes.config_change import accept_config

    environment = _env(workspace, env)
    actor = _actor(environment, operator, key)
    try:
        result = accept_config(environment, actor=actor, decision_record=decision_record, approval_id=approval,
                               dry_run=dry_run, verifier=verifier_with_progress(json_out))
    except Refused as exc:
        raise _refused(exc, json_out) from None
    return _finish(result, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.command("set")(set_)
    app.command("approve")(approve)
    app.command("verify")(verify)
    app.command("rollback")(rollback)
