"""X-HTTP-Method-Override cannot bypass authentication.

tusc honours the override on POST only (as tusd does), and authenticates and authorises
the effective method. The shipped deploy/haproxy.cfg lets only a real CORS preflight
through without credentials and strips the override from whatever did not
authenticate. Every anonymous request below, whatever method it is sent with and
whatever method it asks for, must leave the upload directory exactly as it was and
must not reveal the upload's bytes or offset.
"""
import hashlib
import os
import re

import pytest

from conftest import OCTET, deadline_poll
from test_auth import basic, write_htpasswd
from test_haproxy import haproxy_stack, via_haproxy  # noqa: F401 (fixture)
from test_hooks import hooklog, hooks_server  # noqa: F401 (fixture)

WIRE = ["OPTIONS", "GET", "PATCH", "HEAD", "DELETE"]
OVERRIDES = ["DELETE", "PATCH", "GET", "HEAD", "POST", "OPTIONS"]
SECRET = b"SECRETBYTES-0123"  # first part of the upload; must never be echoed


def snapshot(upload_dir):
    """Every file under the upload dir: relative path -> (size, sha256)."""
    out = {}
    for root, _dirs, files in os.walk(upload_dir):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                data = fh.read()
            out[os.path.relpath(p, upload_dir)] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def anonymous_attempt(send, path, wire, override, preflight=False):
    """One anonymous request that would append (PATCH), read (GET, HEAD) or delete the
    upload if the override were honoured."""
    hs = {"X-HTTP-Method-Override": override, "Tus-Resumable": "1.0.0",
          "Upload-Offset": str(len(SECRET)), "Content-Type": OCTET}
    if preflight:
        hs.update({"Origin": "https://app.example", "Access-Control-Request-Method": override})
    return send(wire, path, hs, b"EVIL!")


def assert_nothing_leaked(r, wire, override):
    what = (wire, override, r)
    assert SECRET not in r.body, what
    for h in ("Upload-Offset", "Upload-Length", "Upload-Metadata", "Content-Range"):
        assert r.header(h) is None, what
    if wire == "OPTIONS":
        assert r.status in (200, 204, 401), what
    else:
        assert r.status == 401, what


def outgoing(srv):
    return [l for l in srv.stderr().splitlines() if "event=ResponseOutgoing" in l]


@pytest.fixture
def authed(tusc, tmp_path):
    srv = tusc("-auth-htpasswd", str(write_htpasswd(tmp_path / "users.htpasswd")))
    r = srv.request("POST", srv.base_path, {"Upload-Length": str(2 * len(SECRET)),
                                            **basic("alice")})
    assert r.status == 201, r
    path = re.sub(r"^https?://[^/]+", "", r.header("Location"))
    r = srv.patch(path, 0, SECRET, basic("alice"))
    assert r.status == 204, r
    return srv, path


@pytest.mark.parametrize("wire", WIRE)
def test_override_without_credentials_changes_and_reads_nothing(authed, wire):
    srv, path = authed
    before = snapshot(srv.upload_dir)

    def send(method, p, hs, body):
        return srv.request(method, p, hs, body, tus=False)

    for override in OVERRIDES:
        for preflight in ((False, True) if wire == "OPTIONS" else (False,)):
            r = anonymous_attempt(send, path, wire, override, preflight)
            assert_nothing_leaked(r, wire, override)
            assert snapshot(srv.upload_dir) == before, (wire, override)
    # The upload is still there, unchanged, for its owner.
    r = srv.head(path, basic("alice"))
    assert r.status == 200 and r.header("Upload-Offset") == str(len(SECRET)), r


def test_override_on_post_needs_credentials_of_the_owner(authed):
    srv, path = authed
    before = snapshot(srv.upload_dir)
    for override in ("PATCH", "DELETE", "GET"):
        hs = {"X-HTTP-Method-Override": override, "Upload-Offset": str(len(SECRET)),
              "Content-Type": OCTET}
        r = srv.request("POST", path, hs, b"EVIL!")
        assert r.status == 401 and SECRET not in r.body, (override, r)
        # Another user is refused as for the real method (ownership of the effective one).
        r = srv.request("POST", path, {**hs, **basic("bob")}, b"EVIL!")
        assert r.status == 403 and SECRET not in r.body, (override, r)
    assert snapshot(srv.upload_dir) == before


def test_post_override_with_credentials_works_and_logs_both_methods(authed):
    srv, path = authed
    r = srv.request("POST", path, {"X-HTTP-Method-Override": "PATCH",
                                   "Upload-Offset": str(len(SECRET)), "Content-Type": OCTET,
                                   **basic("alice")}, SECRET[::-1])
    assert r.status == 204 and r.header("Upload-Offset") == str(2 * len(SECRET)), r
    assert srv.data_file(path).read_bytes() == SECRET + SECRET[::-1]
    line = deadline_poll(lambda: [l for l in outgoing(srv) if "orig_method=POST" in l], 5,
                         what="access line of the override")[0]
    assert re.search(r"\bmethod=PATCH\b", line) and re.search(r"\buser=alice\b", line), line

    r = srv.request("POST", path, {"X-HTTP-Method-Override": "DELETE", **basic("alice")})
    assert r.status == 204, r
    assert not srv.files_of(path)
    deadline_poll(lambda: any(re.search(r"\bmethod=DELETE\b.*\borig_method=POST\b", l)
                              for l in outgoing(srv)), 5, what="DELETE access line")
    # A request without override logs only its method.
    assert srv.request("OPTIONS", srv.base_path).status in (200, 204)
    opt = deadline_poll(lambda: [l for l in outgoing(srv) if "method=OPTIONS" in l], 5,
                        what="OPTIONS access line")[0]
    assert "orig_method=" not in opt, opt


def test_override_ignored_on_other_methods_even_with_credentials(authed):
    """tusd's rule: only POST is overridden. An authenticated GET asking for DELETE is a
    GET."""
    srv, path = authed
    r = srv.request("GET", path, {"X-HTTP-Method-Override": "DELETE", **basic("alice")}, tus=False)
    assert r.status == 200, r
    assert srv.files_of(path)


def test_through_shipped_haproxy_anonymous_override_does_nothing(haproxy_stack):
    st = haproxy_stack
    srv = st["tusc"]
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": str(2 * len(SECRET))})
    assert r.status == 201, r
    path = re.sub(r"^https?://[^/]+", "", r.header("Location"))
    r = via_haproxy(st, "PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, SECRET)
    assert r.status == 204, r
    before = snapshot(srv.upload_dir)

    def send(method, p, hs, body):
        return via_haproxy(st, method, p, hs, body, auth=False)

    for wire in WIRE:
        for override in OVERRIDES:
            for preflight in ((False, True) if wire == "OPTIONS" else (False,)):
                r = anonymous_attempt(send, path, wire, override, preflight)
                assert_nothing_leaked(r, wire, override)
                if wire == "OPTIONS" and not preflight:
                    # Not a preflight: HAProxy wants credentials.
                    assert r.status == 401, (override, r)
                assert snapshot(srv.upload_dir) == before, (wire, override, preflight)

    # A real preflight still passes without credentials.
    r = via_haproxy(st, "OPTIONS", path, {"Origin": "https://app.example",
                                          "Access-Control-Request-Method": "PATCH"}, auth=False)
    assert r.status in (200, 204) and r.header("Tus-Version"), r

    # With credentials, POST + override works through HAProxy too.
    r = via_haproxy(st, "POST", path, {"X-HTTP-Method-Override": "PATCH",
                                       "Upload-Offset": str(len(SECRET)),
                                       "Content-Type": OCTET}, SECRET[::-1])
    assert r.status == 204 and r.header("Upload-Offset") == str(2 * len(SECRET)), r
    assert srv.data_file(path).read_bytes() == SECRET + SECRET[::-1]


def test_hooks_see_the_effective_method(tusc, hooklog):
    """As in tusd (which rewrites the request's method), HTTPRequest.Method is the
    method the request acted as."""
    srv = hooks_server(tusc, "-hooks-enabled-events", "pre-terminate")
    path = srv.create(length=3)
    r = srv.request("POST", path, {"X-HTTP-Method-Override": "DELETE"})
    assert r.status == 204, r
    (entry,) = hooklog.wait("pre-terminate")
    assert entry["stdin"]["Event"]["HTTPRequest"]["Method"] == "DELETE", entry["stdin"]
