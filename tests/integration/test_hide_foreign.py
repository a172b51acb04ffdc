"""-auth-hide-foreign: another user's upload is indistinguishable from one that does not
exist, on every path — tus HEAD/PATCH/GET/DELETE, IETF draft requests, creating a
concatenation final, GET/HEAD of a final — also once it has expired (a missing upload is
404, never 410). Each check compares status, body and every header but Date of the
answer for the foreign upload with the answer for a random missing ID."""
import re
import uuid

import pytest

from conftest import OCTET, deadline_poll
from test_auth import basic, write_htpasswd
from test_expiration import HeldLock, lock_file_of

ALICE, BOB = basic("alice"), basic("bob")
IETF = "8"


def shape(r):
    hs = sorted((k.lower(), v) for k, v in r.headers if k.lower() != "date")
    return r.status, r.body, hs


def missing_path(srv):
    return srv.base_path + uuid.uuid4().hex


def create(srv, who, length=10, extra=None):
    r = srv.request("POST", srv.base_path, {"Upload-Length": str(length), **who, **(extra or {})})
    assert r.status == 201, r
    return re.sub(r"^https?://[^/]+", "", r.header("Location"))


def upload_requests():
    """(what, method, headers, body, tus) — everything that names an existing upload."""
    draft = {"Upload-Draft-Interop-Version": IETF}
    return [
        ("tus HEAD", "HEAD", {}, None, True),
        ("tus GET", "GET", {}, None, False),
        ("tus PATCH", "PATCH", {"Upload-Offset": "0", "Content-Type": OCTET}, b"abc", True),
        ("tus DELETE", "DELETE", {}, None, True),
        ("IETF HEAD", "HEAD", draft, None, False),
        ("IETF append", "PATCH", {**draft, "Upload-Offset": "0", "Upload-Complete": "?0",
                                  "Content-Type": "application/partial-upload"}, b"abc", False),
        ("IETF DELETE", "DELETE", draft, None, False),
    ]


def assert_same_as_missing(srv, foreign, who=ALICE):
    for what, method, hs, body, tus in upload_requests():
        got = srv.request(method, foreign, {**hs, **who}, body, tus=tus)
        want = srv.request(method, missing_path(srv), {**hs, **who}, body, tus=tus)
        assert shape(got) == shape(want), (what, got, want)
        assert got.status in (404, 400), (what, got)


def concat_final(srv, partials, who=ALICE):
    return srv.request("POST", srv.base_path,
                       {"Upload-Concat": "final;" + " ".join(partials), **who})


@pytest.fixture
def hidden(tusc, tmp_path):
    return tusc("-auth-htpasswd", str(write_htpasswd(tmp_path / "users.htpasswd")),
                "-auth-hide-foreign", "-enable-experimental-protocol", "-max-size", "100")


def test_foreign_upload_is_like_a_missing_one(hidden):
    srv = hidden
    foreign = create(srv, BOB)
    r = srv.patch(foreign, 0, b"bob", BOB)
    assert r.status == 204, r
    assert_same_as_missing(srv, foreign)
    # Bob's upload is untouched.
    r = srv.head(foreign, BOB)
    assert r.status == 200 and r.header("Upload-Offset") == "3", r


def test_concat_final_naming_a_foreign_partial_is_like_a_missing_one(hidden):
    srv = hidden
    mine = create(srv, ALICE, 60, {"Upload-Concat": "partial"})
    foreign = create(srv, BOB, 60, {"Upload-Concat": "partial"})
    not_partial = create(srv, BOB, 60)
    for names in ([foreign], [mine, foreign], [foreign, mine], [not_partial]):
        missing = [missing_path(srv) if n in (foreign, not_partial) else n for n in names]
        got, want = concat_final(srv, names), concat_final(srv, missing)
        # Even the size limit (60 + 60 > -max-size 100) must not count a foreign partial.
        assert shape(got) == shape(want), (names, got, want)
        assert got.status == 400, got


def test_foreign_final_is_like_a_missing_one(hidden):
    srv = hidden
    parts = [create(srv, BOB, 3, {"Upload-Concat": "partial"}) for _ in range(2)]
    for p in parts:
        assert srv.patch(p, 0, b"bob", BOB).status == 204
    r = concat_final(srv, parts, BOB)
    assert r.status == 201, r
    final = re.sub(r"^https?://[^/]+", "", r.header("Location"))
    assert srv.download(final, BOB).body == b"bobbob"
    assert_same_as_missing(srv, final)


def test_expired_foreign_upload_is_404_like_a_missing_one(tusc, tmp_path):
    srv = tusc("-auth-htpasswd", str(write_htpasswd(tmp_path / "users.htpasswd")),
               "-auth-hide-foreign", "-enable-experimental-protocol", "-expire-after", "1s")
    foreign = create(srv, BOB)
    partial = create(srv, BOB, 5, {"Upload-Concat": "partial"})
    assert srv.patch(foreign, 0, b"bob", BOB).status == 204
    # Keep the sweeper away from both (it skips locked uploads), then wait until the
    # owner sees them expired.
    held = [HeldLock(lock_file_of(srv, p)) for p in (foreign, partial)]
    try:
        for p in (foreign, partial):
            deadline_poll(lambda: srv.head(p, BOB).status == 410, 20, interval=0.1,
                          what="upload expired for its owner")
        assert_same_as_missing(srv, foreign)
        got, want = concat_final(srv, [partial]), concat_final(srv, [missing_path(srv)])
        assert shape(got) == shape(want), (got, want)
        # The owner still learns it is gone.
        assert srv.head(foreign, BOB).status == 410
    finally:
        for h in held:
            h.release()
