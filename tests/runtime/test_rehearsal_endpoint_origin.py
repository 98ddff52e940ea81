"""SPEC section 14, "The rehearsal endpoint answers only requests whose Host is a loopback name and whose body
is JSON": a web page the operator has open can neither reach it through a name it rebinds to 127.0.0.1 (DNS
rebinding) nor drive it with a cross-origin form or text/plain POST (the requests a browser sends without a
preflight). The real openai SDK keeps working against it."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer, host_allowed


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             host: str = "127.0.0.1") -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


LOOPBACK_HOSTS = ["localhost", "localhost:{port}", "LocalHost:{port}", "127.0.0.1", "127.0.0.1:{port}",
                  "127.8.9.10:{port}", "[::1]", "[::1]:{port}"]
FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "localhost.evil.example",
                 "10.0.0.1:{port}", "0.0.0.0:{port}", "", "[::1", "localhost:notaport", "127.0.0.1:{port}:1"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_a_loopback_host_is_answered(server, host):
    status, doc = _request(server.port, "GET", "/_calls", headers={"Host": host.format(port=server.port)})
    assert status == 200 and doc == {"calls": 0}


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_any_other_host_is_refused_dns_rebinding(server, host):
    status, doc = _request(server.port, "GET", "/_calls", headers={"Host": host.format(port=server.port)})
    assert status == 403, doc
    before = server.mode
    status, _ = _request(server.port, "POST", "/_mode", body=b'{"mode": "http500"}',
                         headers={"Host": host.format(port=server.port), "Content-Type": "application/json"})
    assert status == 403 and server.mode == before
    status, _ = _request(server.port, "POST", "/v1/chat/completions", body=b'{"messages": []}',
                         headers={"Host": host.format(port=server.port), "Content-Type": "application/json"})
    assert status == 403 and server.calls == 0


def test_a_request_with_no_host_header_is_refused(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("GET", "/_calls", skip_host=True)
    conn.endheaders()
    assert conn.getresponse().status == 403
    conn.close()


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/jsonx", "json"])
@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "evil.example"])
def test_a_cross_origin_post_is_refused_whatever_its_host(server, content_type, host):
    headers = {"Host": host.format(port=server.port), "Origin": "https://evil.example"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, _ = _request(server.port, "POST", "/_mode", body=b'{"mode": "http500", "delay_s": 0}', headers=headers)
    assert status in (403, 415)
    assert server.mode == "ok"
    status, _ = _request(server.port, "POST", "/_reset", body=b"{}", headers=headers)
    assert status in (403, 415)
    status, _ = _request(server.port, "POST", "/v1/chat/completions", body=b'{"messages": []}', headers=headers)
    assert status in (403, 415) and server.calls == 0


def test_a_json_post_to_a_loopback_name_still_changes_the_mode(server):
    for kind in ("application/json", "Application/JSON; charset=utf-8"):
        status, doc = _request(server.port, "POST", "/_mode", body=b'{"mode": "nonjson"}',
                               headers={"Content-Type": kind})
        assert status == 200 and doc["mode"] == "nonjson"


def test_the_openai_sdk_works_by_name_and_by_address(server):
    import openai

    for base in (server.base_url, f"http://localhost:{server.port}/v1"):
        client = openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=10,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "jobId: j-1"}])
        assert json.loads(completion.choices[0].message.content)["jobId"] == "j-1"
    assert server.calls == 2


def test_over_ipv6_loopback_too():
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        fake = FakeOpenAIServer("ok", host="::1")
    except OSError:
        pytest.skip("no ::1 here")
    with fake:
        status, _ = _request(fake.port, "GET", "/_calls", host="::1")  # Host: [::1]:PORT, as any client sends
        assert status == 200
        status, _ = _request(fake.port, "GET", "/_calls", host="::1", headers={"Host": "evil.example"})
        assert status == 403


def test_served_beyond_this_machine_an_address_is_a_host_but_a_name_is_not():
    assert host_allowed("192.0.2.7:8765", allow_remote=True)
    assert host_allowed("[2001:db8::1]:8765", allow_remote=True)
    assert not host_allowed("evil.example:8765", allow_remote=True)
    assert not host_allowed("192.0.2.7:8765")
    assert host_allowed("rehearsal.internal", extra=frozenset({"rehearsal.internal"}))


def test_the_cli_endpoint_refuses_a_cross_origin_form_post_and_a_rebound_name():
    """`slotgen endpoint serve` as a real process: what a page on evil.example can send gets nothing done."""
    from tests.cli.helpers import clean_env, command

    proc = subprocess.Popen(command("endpoint", "serve", "--port", "0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", line).group(1))
        status, _ = _request(port, "POST", "/_mode", body=b'{"mode": "hung"}',
                             headers={"Host": "evil.example", "Content-Type": "text/plain"})
        assert status in (403, 415)
        status, _ = _request(port, "POST", "/_mode", body=b'{"mode": "hung"}',
                             headers={"Host": f"127.0.0.1:{port}", "Content-Type": "text/plain",
                                      "Origin": "https://evil.example"})
        assert status == 415
        status, _ = _request(port, "POST", "/_mode", body=b'{"mode": "hung"}',
                             headers={"Host": "evil.example:80", "Content-Type": "application/json"})
        assert status == 403
        status, doc = _request(port, "POST", "/v1/chat/completions",
                               body=json.dumps({"messages": [{"role": "user", "content": "jobId: j"}]}).encode(),
                               headers={"Content-Type": "application/json"})
        assert status == 200 and json.loads(doc["choices"][0]["message"]["content"])["jobId"] == "j"  # not hung
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 1 completion request(s)" in out


def test_a_name_the_operator_allows_is_answered_and_a_malformed_one_refused():
    from tests.cli.helpers import assert_one_line_error, clean_env, command, slotgen

    proc = subprocess.Popen(command("endpoint", "serve", "--port", "0", "--allow-host", "rehearsal.internal"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", proc.stdout.readline()).group(1))
        assert _request(port, "GET", "/_calls", headers={"Host": f"rehearsal.internal:{port}"})[0] == 200
        assert _request(port, "GET", "/_calls", headers={"Host": "other.internal"})[0] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    for bad in ("*.internal", "host:80", "a b", ""):
        assert_one_line_error(slotgen("endpoint", "serve", "--port", "0", "--allow-host", bad), 2)
