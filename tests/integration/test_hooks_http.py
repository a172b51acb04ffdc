"""HTTP hooks (-hooks-http) against an endpoint run by the test (http.server).

The endpoint records every POST (time, headers, JSON) and answers from a per-test
script of responses, so retries, backoff, error handling and forwarded headers can be
observed from the endpoint's side.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import b64, deadline_poll, upload_id


class Endpoint:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()
        # event -> list of (status, content_type, body) consumed in order; the last
        # one repeats.
        self.plan = {}
        ep = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                data = json.loads(body)
                with ep.lock:
                    ep.calls.append({"t": time.monotonic(), "path": self.path,
                                     "headers": dict(self.headers.items()),
                                     "json": data, "raw": body})
                    steps = ep.plan.get(data["Type"]) or [(200, "application/json", b"{}")]
                    step = steps.pop(0) if len(steps) > 1 else steps[0]
                status, ctype, payload = step
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks"

    def of(self, event):
        with self.lock:
            return [c for c in self.calls if c["json"]["Type"] == event]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.close()


def test_retries_with_backoff_on_503(tusc, endpoint):
    endpoint.plan["pre-create"] = [(503, "text/plain", b"busy"), (503, "text/plain", b"busy"),
                                   (200, "application/json",
                                    b'{"HTTPResponse":{"Header":{"X-Hooked":"third"}}}')]
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events", "pre-create",
               "-hooks-http-retry", "3", "-hooks-http-backoff", "400ms")
    t0 = time.monotonic()
    r = srv.request("POST", "/files/", {"Upload-Length": "3"})
    elapsed = time.monotonic() - t0
    assert r.status == 201, r
    assert r.header("X-Hooked") == "third"
    calls = endpoint.of("pre-create")
    assert len(calls) == 3
    gaps = [b["t"] - a["t"] for a, b in zip(calls, calls[1:])]
    assert all(g >= 0.35 for g in gaps), gaps
    assert elapsed >= 0.75
    # The same request JSON every attempt.
    assert calls[0]["raw"] == calls[1]["raw"] == calls[2]["raw"]
    assert calls[0]["headers"]["Content-Type"] == "application/json"
    assert calls[0]["path"] == "/hooks"


def test_retries_exhausted_is_500(tusc, endpoint):
    endpoint.plan["pre-create"] = [(502, "text/plain", b"down")]
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events", "pre-create",
               "-hooks-http-retry", "2", "-hooks-http-backoff", "100ms")
    r = srv.request("POST", "/files/", {"Upload-Length": "3"})
    assert r.status == 500, r
    assert len(endpoint.of("pre-create")) == 2


@pytest.mark.parametrize("status,ctype,body", [
    (200, "application/json", b""),            # empty body: tusd requires at least {}
    (200, "text/plain", b"{}"),                 # not JSON by type
    (400, "application/json", b"{}"),          # 4xx: no retry, an error
    (200, "application/json", b"{not json"),
])
def test_bad_answers_are_errors(tusc, endpoint, status, ctype, body):
    endpoint.plan["pre-create"] = [(status, ctype, body)]
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events", "pre-create",
               "-hooks-http-backoff", "50ms")
    r = srv.request("POST", "/files/", {"Upload-Length": "3"})
    assert r.status == 500, r
    assert r.error_code() == "ERR_INTERNAL_SERVER_ERROR"
    assert len(endpoint.of("pre-create")) == 1  # no retry for these
    assert not list(srv.upload_dir.rglob("*.info"))


def test_forwarded_headers_and_reject(tusc, endpoint):
    endpoint.plan["pre-create"] = [(200, "application/json", json.dumps({
        "RejectUpload": True,
        "HTTPResponse": {"StatusCode": 401, "Body": "who are you?\n",
                         "Header": {"WWW-Authenticate": "Bearer"}}}).encode())]
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events", "pre-create",
               "-hooks-http-forward-headers", "Authorization,X-Request-Id")
    r = srv.request("POST", "/files/", {"Upload-Length": "3", "Authorization": "Bearer t0k",
                                        "X-Request-Id": "rid-1", "X-Other": "no"})
    assert r.status == 401, r
    assert r.body == b"who are you?\n"
    assert r.header("WWW-Authenticate") == "Bearer"
    (call,) = endpoint.of("pre-create")
    assert call["headers"].get("Authorization") == "Bearer t0k"
    assert call["headers"].get("X-Request-Id") == "rid-1"
    assert "X-Other" not in call["headers"]
    # The JSON still carries every client header.
    assert call["json"]["Event"]["HTTPRequest"]["Header"]["X-Other"] == ["no"]


def test_all_events_over_http(tusc, endpoint):
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events=")
    path = srv.create(4, metadata=f"filename {b64('f')}")
    assert srv.patch(path, 0, b"abcd").status == 204
    assert srv.request("DELETE", path).status == 204
    deadline_poll(lambda: endpoint.of("post-terminate"), 15, what="post-terminate")
    deadline_poll(lambda: endpoint.of("post-finish"), 15, what="post-finish")
    seen = {c["json"]["Type"] for c in endpoint.calls}
    assert seen == {"pre-create", "post-create", "post-receive", "pre-finish", "post-finish",
                    "pre-terminate", "post-terminate"}
    uid = upload_id(path)
    for c in endpoint.calls:
        up = c["json"]["Event"]["Upload"]
        assert up["ID"] == ("" if c["json"]["Type"] == "pre-create" else uid)


def test_stop_upload_over_http_deletes_upload(tusc, endpoint):
    endpoint.plan["post-receive"] = [(200, "application/json", b'{"StopUpload": true}')]
    srv = tusc("-hooks-http", endpoint.url, "-hooks-enabled-events", "post-receive",
               "-progress-hooks-interval", "100ms")
    path = srv.create(500_000)
    from test_hooks import slow_patch
    status, _, body, sent = slow_patch(srv, path, [b"y" * 1000] * 500, 0.01,
                                       stop_when_answered=True)
    assert " 400 " in status + " ", status
    assert body.startswith(b"ERR_UPLOAD_STOPPED: ")
    assert sent < 500_000
    assert srv.head(path).status == 404
