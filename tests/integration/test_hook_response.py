"""A hook's HTTPResponse cannot split the response stream (issue 10 item 3).

A 1xx from a hook is no final answer and is refused like any invalid hook response
(the hook counts as failed: 500). A bodiless status (204, 304) never carries body bytes:
the http layer drops them for every caller, so the next pipelined response on the
keep-alive connection parses cleanly."""
import json

import pytest

from conftest import build_request
from test_hooks import hooks_server, make_hooks

INJECTED = "HTTP/1.1 200 OK\r\nX-Injected: yes\r\nContent-Length: 0\r\n\r\n"


def response_hook(tmp_path, http_response):
    answer = json.dumps({"HTTPResponse": http_response})
    script = f"#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n{answer}\nEOF\n"
    return make_hooks(tmp_path, {"pre-create": script})


def post(host_port):
    return build_request("POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "1"},
                         host=host_port)


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_with_body_does_not_split_the_stream(tusc, tmp_path, status):
    d = response_hook(tmp_path, {"StatusCode": status, "Body": INJECTED})
    srv = hooks_server(tusc, hooks_dir=d)
    with srv.raw() as c:
        # Pipelined: the POST the hook answers, then a request with a known answer.
        c.send(post("x") + build_request("OPTIONS", "/files/", {"Tus-Resumable": "1.0.0"}))
        first, _ = c.read_final_response("POST")
        assert first.status == status, first
        assert first.header("Content-Length") is None, first
        second, _ = c.read_final_response("OPTIONS")
        assert second.header("X-Injected") is None, second
        assert second.status in (200, 204), second
        assert second.header("Tus-Extension") is not None, second
        # Still in step: one more request on the same connection.
        c.send(build_request("HEAD", "/files/nope", {"Tus-Resumable": "1.0.0"}))
        third, _ = c.read_final_response("HEAD")
        assert third.status == 404, third


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_interim_status_from_a_hook_is_refused(tusc, tmp_path, status):
    d = response_hook(tmp_path, {"StatusCode": status, "Body": INJECTED})
    srv = hooks_server(tusc, hooks_dir=d)
    with srv.raw(timeout=10) as c:
        c.send(post("x"))
        r = c.read_response("POST")
        assert r.status == 500, r  # the hook failed: no upload, no interim answer
        assert r.header("X-Injected") is None
    assert not list(srv.upload_dir.rglob("*.info"))
