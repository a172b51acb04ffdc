"""Hostile upload IDs in the URL: traversal, encodings, NUL, backslash, huge IDs.
Every one is answered 404 (or 400) and nothing outside the upload dir is read,
created or removed."""
import os

import pytest

from conftest import OCTET, build_request

TARGETS = [
    "/files/../../etc/passwd",
    "/files/../victim",
    "/files/..",
    "/files/.",
    "/files/./victim",
    "/files/%2e%2e%2fetc%2fpasswd",
    "/files/%2e%2e%2fvictim",
    "/files/%2E%2E/victim",
    "/files/..%2f..%2fetc%2fpasswd",
    "/files/..%2fvictim",
    "/files/..%5cvictim",
    "/files/a\\b",
    "/files/..\\victim",
    "/files/%00",
    "/files/victim%00.info",
    "/files/abc%00def",
    "/files/%252e%252e%252fvictim",
    "/files//etc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files/ab/../../victim",
    "/files/" + "a" * 5000,
    "/files/" + "0" * 33,
    "/files/" + "../" * 50 + "etc/passwd",
    "/files/%c0%ae%c0%ae/victim",
    "/files/.info",
    "/files/victim.info",
]

METHODS = ["HEAD", "GET", "PATCH", "DELETE"]


@pytest.fixture
def layout(tusc, tmp_path):
    """A server whose upload dir sits next to a `victim` upload-looking pair of
    files that must never be touched."""
    srv = tusc()
    parent = srv.upload_dir.parent
    victim = parent / "victim"
    victim.write_bytes(b"do not touch")
    (parent / "victim.info").write_text('{"ID":"victim","Size":12,"Offset":12,"MetaData":{}}')
    # A valid upload inside, to be sure it survives too.
    up = srv.create(length=3)
    assert srv.patch(up, 0, b"abc").status == 204
    return srv, parent, up


def snapshot(root):
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def send(srv, method, target):
    hs = [("Tus-Resumable", "1.0.0")]
    body = b""
    if method == "PATCH":
        hs += [("Upload-Offset", "0"), ("Content-Type", OCTET)]
        body = b"pwned"
    with srv.raw() as c:
        c.send(build_request(method, target, hs, body))
        r = c.read_response(method)
    return r


@pytest.mark.parametrize("target", TARGETS)
def test_traversal_rejected(layout, target):
    srv, parent, up = layout
    upload_dir = str(srv.upload_dir)
    outside_before = {p: v for p, v in snapshot(parent).items()
                      if not p.startswith(upload_dir + os.sep) and not p.endswith(".log")}
    inside_before = snapshot(srv.upload_dir)
    for method in METHODS:
        r = send(srv, method, target)
        assert r.status in (400, 404), (method, target, r)
        assert b"root:" not in r.body, (method, target, r)
        assert b"do not touch" not in r.body, (method, target, r)
        assert not r.has("Upload-Offset"), (method, target, r)
    outside_after = {p: v for p, v in snapshot(parent).items()
                     if not p.startswith(upload_dir + os.sep) and not p.endswith(".log")}
    assert outside_after == outside_before
    assert (parent / "victim").read_bytes() == b"do not touch"
    # Nothing new inside the upload dir either, and the real upload is intact.
    assert set(snapshot(srv.upload_dir)) == set(inside_before)
    assert srv.download(up).body == b"abc"


@pytest.mark.parametrize("target", ["/files/../", "/files/..%2f", "/files/%2e%2e/",
                                    "/files/../../tmp/"])
def test_post_outside_base_path(layout, target):
    srv, parent, _up = layout
    before = snapshot(parent)
    with srv.raw() as c:
        c.send(build_request("POST", target, [("Tus-Resumable", "1.0.0"),
                                              ("Upload-Length", "1")]))
        r = c.read_response("POST")
    if r.status == 201:
        # Only acceptable if the server normalised the path onto its own base path.
        loc = r.header("Location")
        assert "/files/" in loc and ".." not in loc and "%2" not in loc.lower(), r
    else:
        assert 400 <= r.status < 500, r
        after = snapshot(parent)
        assert {p for p in after if not p.endswith(".log")} == \
            {p for p in before if not p.endswith(".log")}
