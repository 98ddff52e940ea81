"""`slotgen traffic`: a rehearsal runtime host sending real telemetry for observed verification (SPEC section 12)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput
from .common import WorkspaceOpt
from .options import RequiredEnvOpt

__all__ = ["register", "traffic"]


def traffic(
    env: RequiredEnvOpt = ...,
    host: Annotated[str, typer.Option("--host", help="This host's name: its events go to <telemetry dir>/<NAME>.jsonl.", show_default=False)] = ...,
    rate: Annotated[float, typer.Option("--rate", min=0.1, max=10000.0, help="Jobs per second.")] = 20.0,
    duration: Annotated[float | None, typer.Option("--duration", min=0.0, help="Seconds to run (default: until Ctrl-C or SIGTERM).", show_default=False)] = None,
    jobs: Annotated[Path | None, typer.Option("--jobs", metavar="FILE", help="Jobs to run, one JSON object a line, as given (default: the sample jobs with fresh jobIds).", show_default=False)] = None,
    controls: Annotated[Path | None, typer.Option("--controls", metavar="FILE", help="The env-file to read controls from (default: the environment's controls file; or the file 'slotgen render' writes).", show_default=False)] = None,
    stale: Annotated[bool, typer.Option("--stale", help="Read the controls once and never again: a host that misses changes.")] = False,
    workspace: WorkspaceOpt = None,
) -> int:
    """Run jobs as a runtime host would and write their telemetry; never writes the environment.

    It reads its controls from an env-file and re-reads them within a second
    of a change, decides each job with the engine, runs the OpenAI path
    through the SDK against the environment's endpoint, and appends one event
    per job to the environment's telemetry directory.

    Example: slotgen traffic --env staging --host host-a --rate 50 --duration 60
    """
    from ..policy.samples import load_sample_jobs
    from ..runtime.traffic import TrafficHost
    from ..verification.observe import telemetry_directory
    from ..verification.samples import executor_config_for
    from ..workspace import Workspace
    from .common import console, escape

    import re

    from ..verification.events import HOST

    if not re.fullmatch(HOST, host):
        raise BadInput(f"--host {host!r}: a host name is letters, digits, '.', '_' and '-', at most 128 "
                       "(it names the host's file)")
    environment = Workspace.locate(workspace).environment(env)
    directory = telemetry_directory(environment)
    source = jobs if jobs is not None else environment.workspace.runbook.sample_jobs_path
    try:
        config = executor_config_for(environment)
    except ValueError as exc:
        raise BadInput(f"slotgen.yaml environments.{env}.openai: {' '.join(str(exc).split())[:200]}") from None
    runner = TrafficHost(env=env, host=host, controls_path=controls or environment.controls_path,
                         telemetry_dir=directory, jobs=load_sample_jobs(source), executor_config=config,
                         allowlist_base=environment.workspace.root, rate=rate, stale=stale,
                         fresh_ids=jobs is None)
    stopped: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    out = console()
    out.print(escape(f"host {host}: {rate:g} jobs/s for {env}, controls from {runner.controls_path}"
                     f"{' (stale: read once)' if stale else ''}, events to {runner.sink.path}"), soft_wrap=True)
    out.file.flush()
    counts = runner.run(duration, stop=lambda: bool(stopped))
    out.print(f"host {escape(host)}: {counts['jobs']} jobs, {counts['openai']} on OpenAI, {counts['failed']} failed; "
              f"controls re-read {counts['rereads']} time(s)", soft_wrap=True)
    return 0


def register(app: typer.Typer) -> None:
    app.command("traffic")(traffic)
