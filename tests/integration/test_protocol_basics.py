"""OPTIONS, headers every response carries, error bodies, Tus-Resumable (412)."""
import re

import pytest

from conftest import OCTET, assert_error


def extensions(resp):
    return [e.strip() for e in (resp.header("Tus-Extension") or "").split(",") if e.strip()]


def test_options_core_headers(server):
    r = server.request("OPTIONS", "/files/", tus=False)
    assert r.status == 200, r
    assert r.body == b""
    versions = [v.strip() for v in (r.header("Tus-Version") or "").split(",")]
    assert versions[0] == "1.0.0", r
    ext = extensions(r)
    for e in ("creation", "creation-with-upload", "termination", "creation-defer-length"):
        assert e in ext, (e, r)
    assert not r.has("Tus-Max-Size"), r
    assert r.header("Tus-Resumable") == "1.0.0", r


def test_options_any_path_and_with_version(server):
    for path in ("/files/", "/files/0123456789abcdef0123456789abcdef", "/"):
        r = server.request("OPTIONS", path)
        assert r.status == 200, (path, r)
        assert r.header("Tus-Version"), (path, r)


def test_options_max_size(tusc):
    srv = tusc("-max-size", "12345")
    r = srv.request("OPTIONS", "/files/", tus=False)
    assert r.status == 200, r
    assert r.header("Tus-Max-Size") == "12345", r


def test_options_disable_termination(tusc):
    srv = tusc("-disable-termination")
    r = srv.request("OPTIONS", "/files/", tus=False)
    assert r.status == 200, r
    ext = extensions(r)
    assert "termination" not in ext, r
    assert "creation" in ext, r


def _sample_responses(srv):
    """A mix of successful and failing tus requests, one of each kind."""
    up = srv.create(length=5)
    out = {
        "OPTIONS": srv.request("OPTIONS", "/files/"),
        "POST 201": srv.request("POST", "/files/", {"Upload-Length": "3"}),
        "HEAD 200": srv.head(up),
        "PATCH 204": srv.patch(up, 0, b"ab"),
        "PATCH 409": srv.patch(up, 0, b"ab"),
        "PATCH 415": srv.request("PATCH", up, {"Upload-Offset": "2", "Content-Type": "text/plain"},
                                 b"x"),
        "HEAD 404": srv.head("/files/ffffffffffffffffffffffffffffffff"),
        "POST 412": srv.request("POST", "/files/", {"Upload-Length": "3", "Tus-Resumable": None}),
        "POST 400": srv.request("POST", "/files/", {}),
        "DELETE 204": srv.request("DELETE", up),
    }
    return out


def test_every_response_has_tus_resumable_and_nosniff(server):
    for name, r in _sample_responses(server).items():
        assert r.header("Tus-Resumable") == "1.0.0", (name, r)
        assert (r.header("X-Content-Type-Options") or "").lower() == "nosniff", (name, r)


def test_error_bodies_are_text_plain_err_code_lines(server):
    for name, r in _sample_responses(server).items():
        if r.status < 400 or name.startswith("HEAD"):
            continue
        assert (r.header("Content-Type") or "").lower().startswith("text/plain"), (name, r)
        assert "utf-8" in (r.header("Content-Type") or "").lower(), (name, r)
        assert re.fullmatch(r"ERR_[A-Z_]+: [^\r\n]+\n", r.text), (name, r)


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "2.0.0", "1.0.0, 0.2.2", ""])
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_unsupported_tus_resumable_412(server, method, version):
    up = server.create(length=4)
    hs = {"Tus-Resumable": version}
    if method == "POST":
        path = "/files/"
        hs["Upload-Length"] = "4"
        body = None
    elif method == "PATCH":
        path = up
        hs.update({"Upload-Offset": "0", "Content-Type": OCTET})
        body = b"abcd"
    else:
        path = up
        body = None
    r = server.request(method, path, hs, body)
    assert_error(r, 412, "ERR_UNSUPPORTED_VERSION")
    assert "1.0.0" in (r.header("Tus-Version") or ""), r
    # Nothing changed: the upload is still there at offset 0, no new upload created.
    assert server.offset(up) == 0
    if method == "POST":
        assert not r.has("Location"), r


def test_options_get_head_exempt_from_tus_resumable(server):
    up = server.create(length=0)
    r = server.request("OPTIONS", "/files/", {"Tus-Resumable": None})
    assert r.status == 200, r
    r = server.request("HEAD", up, {"Tus-Resumable": None})
    assert r.status == 200, r
    r = server.request("GET", up, {"Tus-Resumable": None})
    assert r.status == 200, r


def test_head_get_exempt_even_with_other_version(server):
    """tusd exempts GET and HEAD from the version check whatever they carry
    (PROTOCOL.md: "tusd also exempts GET and HEAD; do the same")."""
    up = server.create(length=0)
    for method in ("HEAD", "GET"):
        r = server.request(method, up, {"Tus-Resumable": "0.2.2"})
        assert r.status == 200, (method, r)
