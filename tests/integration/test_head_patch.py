"""HEAD and PATCH: offsets, every PATCH error path, deferred length, method override."""
import urllib.parse

import pytest

from conftest import OCTET, assert_error

UNKNOWN = "/files/0123456789abcdef0123456789abcdef"


def test_head_fields(server):
    up = server.create(length=100, metadata="filename YS50eHQ=")
    h = server.head(up)
    assert h.status == 200, h
    assert h.header("Upload-Offset") == "0", h
    assert h.header("Upload-Length") == "100", h
    assert "no-store" in (h.header("Cache-Control") or ""), h
    assert h.body == b""
    assert server.patch(up, 0, b"x" * 30).status == 204
    h = server.head(up)
    assert h.header("Upload-Offset") == "30", h


def test_head_unknown_404(server):
    h = server.head(UNKNOWN)
    assert h.status == 404, h
    assert not h.has("Upload-Offset"), h
    assert h.header("Tus-Resumable") == "1.0.0", h


def test_patch_204_and_offsets(server):
    up = server.create(length=11)
    r = server.patch(up, 0, b"hello ")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "6", r
    assert r.body == b""
    r = server.patch(up, 6, b"world")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "11", r
    assert server.download(up).body == b"hello world"


def test_patch_empty_body(server):
    up = server.create(length=3)
    r = server.patch(up, 0, b"")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "0", r


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/octet-stream",
                                   "application/offset+octet-stream-x", "multipart/form-data"])
def test_patch_wrong_content_type_415(server, ctype):
    up = server.create(length=3)
    r = server.request("PATCH", up, {"Upload-Offset": "0", "Content-Type": ctype}, b"abc")
    assert_error(r, 415, "ERR_INVALID_CONTENT_TYPE")
    assert server.offset(up) == 0


@pytest.mark.parametrize("offset", [None, "", "abc", "-1", "1.0", "0x0", "99999999999999999999"])
def test_patch_invalid_offset_400(server, offset):
    up = server.create(length=3)
    r = server.request("PATCH", up, {"Upload-Offset": offset, "Content-Type": OCTET}, b"abc")
    assert_error(r, 400, "ERR_INVALID_OFFSET")
    assert server.offset(up) == 0


@pytest.mark.parametrize("offset", [1, 5, 100])
def test_patch_mismatched_offset_409(server, offset):
    up = server.create(length=10)
    assert server.patch(up, 0, b"abcd").status == 204
    r = server.patch(up, offset, b"zz")
    assert_error(r, 409, "ERR_MISMATCHED_OFFSET")
    assert server.offset(up) == 4
    assert server.patch(up, 4, b"efghij").status == 204
    assert server.download(up).body == b"abcdefghij"


def test_patch_past_length_413(server):
    up = server.create(length=10)
    r = server.patch(up, 0, b"x" * 11)
    assert_error(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert server.offset(up) == 0
    assert server.patch(up, 0, b"x" * 6).status == 204
    r = server.patch(up, 6, b"y" * 5)
    assert_error(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert server.offset(up) == 6


def test_patch_to_finished_upload(server):
    up = server.create(length=2)
    assert server.patch(up, 0, b"ab").status == 204
    r = server.patch(up, 2, b"c")
    assert r.status == 413, r
    assert server.download(up).body == b"ab"


def test_patch_unknown_404(server):
    r = server.patch(UNKNOWN, 0, b"abc")
    assert_error(r, 404, "ERR_UPLOAD_NOT_FOUND")


def test_deferred_length_set_once(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    r = server.patch(up, 0, b"abcd")
    assert r.status == 204, r
    h = server.head(up)
    assert h.header("Upload-Defer-Length") == "1" and not h.has("Upload-Length"), h
    r = server.patch(up, 4, b"ef", {"Upload-Length": "10"})
    assert r.status == 204, r
    h = server.head(up)
    assert h.header("Upload-Length") == "10", h
    assert not h.has("Upload-Defer-Length"), h
    # The length cannot change any more: either refused or ignored, never applied.
    r = server.patch(up, 6, b"gh", {"Upload-Length": "20"})
    assert r.status in (204, 400), r
    assert server.head(up).header("Upload-Length") == "10"
    off = server.offset(up)
    r = server.patch(up, off, b"z" * (10 - off + 1))
    assert_error(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    r = server.patch(up, off, b"z" * (10 - off))
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "10"


def test_deferred_length_below_offset(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert server.patch(up, 0, b"abcdef").status == 204
    r = server.patch(up, 6, b"", {"Upload-Length": "3"})
    assert r.status in (400, 413), r
    h = server.head(up)
    assert h.header("Upload-Defer-Length") == "1", h
    assert h.header("Upload-Offset") == "6", h


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_deferred_length_invalid_value(server, value):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    up = urllib.parse.urlsplit(r.header("Location")).path
    r = server.patch(up, 0, b"ab", {"Upload-Length": value})
    assert_error(r, 400, "ERR_INVALID_UPLOAD_LENGTH")
    assert server.offset(up) == 0


def test_method_override_patch(server):
    up = server.create(length=5)
    r = server.request("POST", up, {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0",
                                    "Content-Type": OCTET}, b"abc")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "3", r
    assert server.offset(up) == 3


def test_method_override_delete(server):
    up = server.create(length=5)
    r = server.request("POST", up, {"X-HTTP-Method-Override": "DELETE"})
    assert r.status == 204, r
    assert server.head(up).status == 404


def test_deferred_upload_capped_by_max_size(tusc):
    """With the length still unknown, -max-size still bounds what a PATCH may store."""
    srv = tusc("-max-size", "100")
    r = srv.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert srv.patch(up, 0, b"a" * 60).status == 204
    r = srv.patch(up, 60, b"b" * 60)
    assert r.status == 413, r
    assert srv.offset(up) <= 100


def test_deferred_upload_chunked_capped_by_max_size(tusc):
    from conftest import RawConn, build_request
    srv = tusc("-max-size", "100")
    r = srv.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    up = urllib.parse.urlsplit(r.header("Location")).path
    body = b"".join(b"28\r\n" + b"c" * 40 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    with RawConn(srv.port) as c:
        c.send(build_request("PATCH", up, [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                                           ("Content-Type", OCTET),
                                           ("Transfer-Encoding", "chunked")]) + body)
        try:
            r, _ = c.read_final_response("PATCH")
            assert r.status == 413, r
        except Exception as e:  # noqa: BLE001 — closing is acceptable, storing is not
            if "closed" not in str(e) and "reset" not in str(e):
                raise
    assert srv.offset(up) <= 100


def test_creation_with_upload_over_max_size(tusc):
    srv = tusc("-max-size", "10")
    r = srv.request("POST", "/files/", {"Upload-Defer-Length": "1", "Content-Type": OCTET},
                    b"x" * 20)
    assert r.status == 413, r
