"""The access log line (event=ResponseOutgoing) names the authenticated user."""
import re

from conftest import deadline_poll
from test_auth import basic, write_htpasswd


def outgoing(srv, method):
    return [l for l in srv.stderr().splitlines()
            if "event=ResponseOutgoing" in l and f"method={method}" in l]


def test_access_log_carries_user(tusc, tmp_path):
    srv = tusc("-auth-htpasswd", str(write_htpasswd(tmp_path / "users.htpasswd")))
    r = srv.request("POST", srv.base_path, {"Upload-Length": "3", **basic("bob")})
    assert r.status == 201, r
    (post,) = deadline_poll(lambda: outgoing(srv, "POST"), 5, what="POST access line")
    assert re.search(r"\bstatus=201\b", post) and re.search(r"\buser=bob\b", post), post

    # Refused credentials and anonymous requests have no user.
    assert srv.request("HEAD", "/files/x", basic("bob", "wrong")).status == 401
    (head,) = deadline_poll(lambda: outgoing(srv, "HEAD"), 5, what="HEAD access line")
    assert "user=" not in head, head
    assert srv.request("OPTIONS", srv.base_path).status in (200, 204)
    (opt,) = deadline_poll(lambda: outgoing(srv, "OPTIONS"), 5, what="OPTIONS access line")
    assert "user=" not in opt, opt


def test_access_log_without_auth_has_no_user(server):
    assert server.request("POST", server.base_path, {"Upload-Length": "1"}).status == 201
    (post,) = deadline_poll(lambda: outgoing(server, "POST"), 5, what="POST access line")
    assert "user=" not in post, post
