"""A small OpenAI-compatible endpoint on 127.0.0.1, for tests, verify and the demo.

It serves `POST /v1/chat/completions` (and `/chat/completions`) like the real
API, in one of these modes:

- `ok`: a result valid against the result schema, echoing the prompt's jobId;
- `http500`: HTTP 500 with an OpenAI-style error body;
- `slow`: waits `delay_s` seconds, then answers like `ok`;
- `hung`: never answers a completion (until the server stops): the client's timeout decides;
- `nonjson`: message content that is not JSON;
- `schema_invalid`: JSON content that breaks the result schema.

It answers only requests whose Host header is a loopback name (`localhost`,
`127.x.y.z`, `[::1]`, with or without a port), and only POSTs whose body is
JSON (`Content-Type: application/json`): a web page the operator visits can
neither reach it through a name it rebinds to 127.0.0.1 (DNS rebinding: the
Host is then the page's name, 403) nor send it a cross-origin form or
`text/plain` POST (the only bodies a browser sends without asking first, 415).
Served beyond this machine (`allow_remote`), an IP literal is accepted as the
Host too (an address cannot be rebound); a name still is not, unless listed
(`allowed_hosts`, `slotgen endpoint serve --allow-host NAME`).

It counts the completion requests it receives, so a test can prove the STUB
path made no AI call. It asks for no API key unless given one (`require_key`):
then a completion request without `Authorization: Bearer <that key>` gets
HTTP 401, like the real API. In a thread: `with FakeOpenAIServer(mode="ok") as server:`.
As a process: `python -m slotgen_ops.runtime.fakeserver --mode ok --port-file F`,
or `slotgen endpoint serve` for an operator's rehearsal,
then `GET /_calls` -> {"calls": n}, `GET /_last` -> the last request body,
`POST /_mode` {"mode": ..., "delay_s": ...}, `POST /_reset`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES: tuple[str, ...] = ("ok", "http500", "slow", "nonjson", "schema_invalid", "hung")
COMPLETION_PATHS = frozenset(("/v1/chat/completions", "/chat/completions"))
_JOB_ID_RE = re.compile(r"""jobId["']?\s*[:=]\s*["']?([^\s"',;}]+)""")
_MAX_BODY = 10 * 1024 * 1024


class FakeOpenAIServer:
    """An OpenAI-compatible chat completions endpoint bound to 127.0.0.1 (port 0: any free port).

    Binding happens here: a port in use raises OSError before anything is served.
    """

    def __init__(self, mode: str = "ok", *, port: int = 0, delay_s: float = 2.0, host: str = "127.0.0.1",
                 require_key: str | None = None, allow_remote: bool = False,
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        _check_mode(mode)
        self.allow_remote = allow_remote
        self.allowed_hosts = frozenset(name.lower().rstrip(".") for name in allowed_hosts)
        self.mode = mode
        self.delay_s = delay_s
        self.require_key = require_key
        self.last_request: dict[str, Any] | None = None  # the last completion request's JSON body
        self._calls = 0
        self._lock = threading.Lock()
        self._httpd = (_HTTPServer6 if ":" in host else _HTTPServer)((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()  # releases the `hung` answers when the server stops

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        """The address it is bound to."""
        return str(self._httpd.server_address[0])

    @property
    def base_url(self) -> str:
        """What to give the SDK: `http://127.0.0.1:PORT/v1`."""
        host = self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    @property
    def calls(self) -> int:
        """Chat completion requests received since start or the last reset."""
        with self._lock:
            return self._calls

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Change how the next requests are answered."""
        _check_mode(mode)
        with self._lock:
            self.mode = mode
            if delay_s is not None:
                self.delay_s = delay_s

    def reset_calls(self) -> None:
        """Set the call counter back to 0 and forget the last request."""
        with self._lock:
            self._calls = 0
            self.last_request = None

    def _record(self, body: dict[str, Any]) -> tuple[str, float]:
        with self._lock:
            self._calls += 1
            self.last_request = body
            return self.mode, self.delay_s

    def start(self) -> FakeOpenAIServer:
        """Serve in a background daemon thread."""
        if self._thread is None:
            # A short poll interval: shutdown() waits up to one interval, and tests stop many servers.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def completion_content(mode: str, job_id: str) -> str:
    """The assistant message content for a mode (not used for `http500`)."""
    if mode == "nonjson":
        return "this is not json"
    if mode == "schema_invalid":
        # Valid JSON, wrong shape: slots is not an array and notes is missing.
        return json.dumps({"jobId": job_id, "slots": "none"})
    return json.dumps(
        {
            "jobId": job_id,
            "slots": [
                {"slotId": "slot-1", "title": "Introduction", "content": f"Generated for {job_id} by the fake server."},
                {"slotId": "slot-2", "title": "Practice", "content": "Three short exercises."},
            ],
            "notes": "fake OpenAI server",
        }
    )


def find_job_id(body: Any) -> str:
    """The jobId mentioned in the request's messages (`jobId: X` or `"jobId": "X"`)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            match = _JOB_ID_RE.search(content)
            if match:
                return match.group(1)
    return "unknown-job"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow answer in flight must not hold up shutdown
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # quiet: a client that timed out and hung up is expected here


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "fake-openai/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: no request log on stderr

    def _refused(self, post: bool) -> bool:
        """Answer 403 for a Host that is not a loopback name (DNS rebinding), 415 for a POST whose body is
        not declared JSON (a cross-origin form or text/plain post); True when refused."""
        fake = self.server.fake
        if not host_allowed(self.headers.get("Host"), fake.allow_remote, fake.allowed_hosts):
            self._json(403, _error("this endpoint answers only requests to a loopback name (Host: localhost, "
                                   "127.0.0.1 or [::1])", "forbidden"), close=True)
            return True
        if post:
            kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                self._json(415, _error("the request body must be JSON (Content-Type: application/json)",
                                       "invalid_request_error"), close=True)
                return True
        return False

    def do_GET(self) -> None:
        fake = self.server.fake
        if self._refused(post=False):
            return
        if self.path == "/_calls":
            self._json(200, {"calls": fake.calls})
        elif self.path == "/_last":
            self._json(200, {"request": fake.last_request})
        else:
            self._json(404, _error(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        fake = self.server.fake
        if self._refused(post=True):
            return
        body = self._body()
        path = self.path.split("?", 1)[0]
        if path in COMPLETION_PATHS:
            self._complete(body if isinstance(body, dict) else {})
        elif path == "/_mode":
            mode = body.get("mode") if isinstance(body, dict) else None
            delay = body.get("delay_s") if isinstance(body, dict) else None
            if mode not in MODES or not (delay is None or isinstance(delay, (int, float))):
                self._json(400, _error(f"mode must be one of {', '.join(MODES)}", "invalid_request_error"))
                return
            fake.set_mode(mode, delay)
            self._json(200, {"mode": mode, "delay_s": fake.delay_s})
        elif path == "/_reset":
            fake.reset_calls()
            self._json(200, {"calls": 0})
        else:
            self._json(404, _error(f"no route POST {self.path}", "not_found"))

    def _complete(self, body: dict[str, Any]) -> None:
        mode, delay_s = self.server.fake._record(body)
        wanted = self.server.fake.require_key
        if wanted is not None and self.headers.get("Authorization") != f"Bearer {wanted}":
            self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                       "param": None, "code": "invalid_api_key"}})
            return
        if mode == "http500":
            self._json(500, _error("the fake server was told to fail", "server_error"))
            return
        if mode == "slow":
            time.sleep(delay_s)
        if mode == "hung":
            self.server.fake.stopping.wait()
            return
        content = completion_content(mode, find_job_id(body))
        self._json(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") if isinstance(body.get("model"), str) else "fake-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )

    def _body(self) -> Any:
        try:
            length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
            return json.loads(self.rfile.read(length) or b"null")
        except (ValueError, OSError):
            return None

    def _json(self, status: int, doc: Any, close: bool = False) -> None:
        data = json.dumps(doc).encode("utf-8")
        try:
            self.send_response(status)
            if close:  # a refused request's body is never read: this connection cannot carry another
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test): nothing to answer


_LOOPBACK_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"))


def host_allowed(header: str | None, allow_remote: bool = False, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a Host header names this machine's loopback: `localhost`, any 127.x.y.z, `[::1]` (with or
    without a port); with `allow_remote`, any IP literal too; and any name in `extra`. A missing Host, a
    name that DNS answers (which a page can rebind to 127.0.0.1), anything malformed: False."""
    import ipaddress

    if not header:
        return False
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not _port_ok(value[end + 1:]):
            return False
        name = value[1:end]
        try:
            address = ipaddress.IPv6Address(name)
        except ValueError:
            return False
        return address.is_loopback or allow_remote or (address.ipv4_mapped is not None
                                                        and address.ipv4_mapped.is_loopback)
    name, _, port = value.partition(":")
    if ":" in port or (port and not _port_ok(":" + port)) or (_ == ":" and not port):
        return False
    name = name.rstrip(".")
    if name in _LOOPBACK_NAMES or name in extra:
        return True
    try:
        address = ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return address.is_loopback or allow_remote


def _is_loopback_address(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") in _LOOPBACK_NAMES


def _port_ok(rest: str) -> bool:
    """'' or ':PORT' with PORT 1..65535 in digits."""
    if not rest:
        return True
    digits = rest[1:]
    return rest[0] == ":" and digits.isascii() and digits.isdigit() and 0 < int(digits) < 65536


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")


def main(argv: list[str] | None = None) -> int:
    """Run the fake server as a process until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m slotgen_ops.runtime.fakeserver", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the slow mode waits")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--require-key", help="answer HTTP 401 unless this API key is sent")
    parser.add_argument("--allow-host", action="append", default=[], help="also answer this Host name (repeatable)")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(args.mode, port=args.port, delay_s=args.delay, host=args.host,
                              require_key=args.require_key, allow_remote=not _is_loopback_address(args.host),
                              allowed_hosts=tuple(args.allow_host))
    # Stop signals are taken by sigwait(), never raised inside the server's threads or bookkeeping.
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    server.start()
    if args.port_file is not None:
        # Write then rename, so a reader never sees a half-written port.
        tmp = args.port_file.with_name(args.port_file.name + f".{os.getpid()}.tmp")
        tmp.write_text(f"{server.port}\n", encoding="utf-8")
        os.replace(tmp, args.port_file)
    else:
        print(server.base_url, flush=True)
    try:
        signal.sigwait(stops)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
