"""`slotgen endpoint serve`: a local OpenAI-compatible endpoint to rehearse staging against.

It is the package's own server (`runtime/fakeserver.py`, the one the demo and
the tests use), run in the foreground: it answers chat completions like the
real API, in the chosen mode, and asks for no key. Being unauthenticated, it
binds a loopback address only, unless --allow-remote says otherwise, and
answers only requests addressed to a loopback name (Host header) with a JSON
body: no web page can reach it by DNS rebinding or a cross-origin form post.
"""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from ..errors import BadInput

endpoint_app = typer.Typer(help="A local OpenAI-compatible endpoint for rehearsing on staging (no network, no key).",
                           no_args_is_help=True)

DEFAULT_PORT = 8765
#: What OPENAI_API_KEY is set to for it: the endpoint takes any key, the SDK insists on one.
REHEARSAL_KEY = "rehearsal"


@endpoint_app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535,
                                      help="Port to listen on (0: any free port, printed).")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to bind: a loopback address unless --allow-remote.")]
    = "127.0.0.1",
    mode: Annotated[str, typer.Option("--mode", help="How completions are answered: ok, http500, slow, nonjson, "
                                                     "schema_invalid or hung (rehearse a failing check).")] = "ok",
    delay: Annotated[float, typer.Option("--delay", min=0.0, help="Seconds the slow mode waits.")] = 2.0,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-loopback --host (the endpoint "
                                                                     "has no authentication).")] = False,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", metavar="NAME", help="Also answer requests addressed to this host name (Host header), "
        "besides loopback names and, with --allow-remote, IP addresses. Repeatable.")] = None,
) -> int:
    """Run a local OpenAI-compatible endpoint in the foreground until Ctrl-C or SIGTERM.

    Prints one line with its base URL and the environment variables that point
    slotgen at it. Completions are answered without any network and without a
    real model: schema-valid results in mode ok, or the failure a mode names.

    Example: slotgen endpoint serve --port 0
    """
    from ..runtime.config import is_loopback_url
    from ..runtime.fakeserver import MODES, FakeOpenAIServer
    from .common import console, escape, warn

    if mode not in MODES:
        raise BadInput(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    shown = f"[{host}]" if ":" in host else host
    remote = not is_loopback_url(f"http://{shown}/")
    if remote:
        if not allow_remote:
            raise BadInput(f"--host {host}: not a loopback address; this rehearsal endpoint has no authentication, "
                           "so it serves this machine only (--allow-remote to serve beyond it)")
        warn(f"serving on {host} with no authentication: anyone who can reach it can use it")
    try:
        server = FakeOpenAIServer(mode, port=port, delay_s=delay, host=host, allow_remote=remote,
                                  allowed_hosts=tuple(_host_names(allow_host)))
    except OSError as exc:
        why = exc.strerror or exc.__class__.__name__
        hint = "; pick another with --port N (0: any free port)" if port else ""
        raise BadInput(f"cannot listen on {host} port {port}: {why}{hint}") from None
    url = server.base_url
    out = console()
    # SIGINT, SIGTERM and SIGHUP are blocked from here on and taken by sigwait() below: the serving threads
    # inherit the mask, so a stop signal is never delivered to one of them nor raised as an exception in the
    # middle of the server's own bookkeeping (an exception there could leave a lock held). Whoever reads the
    # line below may stop the endpoint at once: the signal waits until the line is out whole.
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        server.start()
        out.print(escape(f"rehearsal endpoint (mode {mode}, no authentication) at {url}: use "
                         f"OPENAI_BASE_URL={url} OPENAI_API_KEY={REHEARSAL_KEY} (Ctrl-C stops it)"), soft_wrap=True)
        out.file.flush()
        signal.sigwait(stops)
    finally:
        server.stop()  # a second stop signal stays blocked: it changes nothing
    out.print(f"rehearsal endpoint stopped after {server.calls} completion request(s)", soft_wrap=True)
    return 0


def _host_names(names: list[str] | None) -> list[str]:
    """--allow-host values: plain host names (letters, digits, '-', '.'), no port, no wildcard."""
    import re

    checked = []
    for name in names or []:
        label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        if len(name) > 253 or not re.fullmatch(rf"{label}(?:\.{label})*\.?", name):
            raise BadInput(f"--allow-host {name!r}: expected a host name (e.g. rehearsal.internal), without a port")
        checked.append(name)
    return checked


def register(app: typer.Typer) -> None:
    app.add_typer(endpoint_app, name="endpoint")
