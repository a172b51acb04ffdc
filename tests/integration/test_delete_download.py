"""termination (DELETE) and GET downloads (types, disposition, ranges, greeting)."""
import os

import pytest

from conftest import assert_error, b64

UNKNOWN = "/files/0123456789abcdef0123456789abcdef"


def test_delete_removes_upload_and_files(server):
    up = server.create(length=10, metadata="filename YS50eHQ=")
    assert server.patch(up, 0, b"12345").status == 204
    files = server.files_of(up)
    assert files, "the upload should have files in the upload dir"
    r = server.request("DELETE", up)
    assert r.status == 204, r
    assert r.body == b""
    h = server.head(up)
    assert h.status in (404, 410), h
    assert not h.has("Upload-Offset"), h
    assert server.files_of(up) == []
    for f in files:
        assert not f.exists(), f
    assert server.patch(up, 5, b"x").status in (404, 410)
    assert server.download(up).status in (404, 410)
    r = server.request("DELETE", up)
    assert r.status in (404, 410), r


def test_delete_unknown_404(server):
    assert_error(server.request("DELETE", UNKNOWN), 404, "ERR_UPLOAD_NOT_FOUND")


def test_delete_unfinished_and_deferred(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    assert r.status == 201
    up = "/files/" + r.header("Location").rsplit("/", 1)[1]
    assert server.request("DELETE", up).status == 204
    assert server.head(up).status in (404, 410)


def test_disable_termination(tusc):
    srv = tusc("-disable-termination")
    up = srv.create(length=3)
    r = srv.request("DELETE", up)
    assert 400 <= r.status < 500, r
    assert r.status == 405, r
    assert srv.head(up).status == 200
    assert srv.files_of(up)


# -- GET --------------------------------------------------------------------------------


def finished(srv, data, meta=None):
    up = srv.create(length=len(data), metadata=meta)
    if data:
        r = srv.patch(up, 0, data)
        assert r.status == 204, r
    return up


def test_download_bytes(server):
    data = os.urandom(300_000)
    up = finished(server, data)
    g = server.download(up)
    assert g.status == 200, g
    assert g.body == data
    assert g.header("Content-Length") == str(len(data)), g
    assert (g.header("Content-Type") or "").startswith("application/octet-stream"), g
    assert g.has("Last-Modified"), g


@pytest.mark.parametrize("filetype,expect_type,disposition", [
    ("image/png", "image/png", "inline"),
    ("text/plain", "text/plain", "inline"),
    ("image/jpeg", "image/jpeg", "inline"),
    ("text/html", "text/html", "attachment"),
    ("application/pdf", "application/pdf", "attachment"),
    ("image/svg+xml", "image/svg+xml", "attachment"),
    ("application/javascript", "application/javascript", "attachment"),
    ("not a media type", "application/octet-stream", "attachment"),
    ("text/plain\r\nX-Injected: 1", "application/octet-stream", "attachment"),
    (None, "application/octet-stream", "attachment"),
])
def test_download_type_and_disposition(server, filetype, expect_type, disposition):
    meta = f"filename {b64('a.bin')}"
    if filetype is not None:
        meta += f",filetype {b64(filetype)}"
    up = finished(server, b"PNGDATA", meta)
    g = server.download(up)
    assert g.status == 200, g
    assert (g.header("Content-Type") or "").split(";")[0].strip() == expect_type, g
    cd = g.header("Content-Disposition") or ""
    assert cd.split(";")[0].strip() == disposition, g
    assert 'filename="a.bin"' in cd, g
    assert not g.has("X-Injected"), g
    assert g.body == b"PNGDATA"


@pytest.mark.parametrize("filename", ['evil".txt', "x\r\nSet-Cookie: a=b", "a;b=c.txt",
                                      "na\\me.txt"])
def test_download_filename_quoted(server, filename):
    meta = f"filename {b64(filename)},filetype {b64('text/plain')}"
    up = finished(server, b"abc", meta)
    g = server.download(up)
    assert g.status == 200, g
    assert not g.has("Set-Cookie"), g
    cd = g.header("Content-Disposition") or ""
    assert "\r" not in cd and "\n" not in cd, g
    assert "filename=\"" in cd, g
    # The quoted string ends at the last quote; no unescaped quote inside.
    inner = cd.split('filename="', 1)[1]
    assert inner.endswith('"'), cd
    inner = inner[:-1]
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        assert inner[i] != '"', cd
        i += 1


def test_download_no_filename(server):
    up = finished(server, b"abc")
    g = server.download(up)
    assert g.status == 200, g
    cd = g.header("Content-Disposition")
    assert cd is None or cd.startswith("attachment"), g


@pytest.mark.parametrize("rng,start,end", [
    ("bytes=0-0", 0, 0), ("bytes=2-5", 2, 5), ("bytes=5-", 5, 9), ("bytes=-3", 7, 9),
    ("bytes=8-100", 8, 9),
])
def test_download_range(server, rng, start, end):
    data = b"0123456789"
    up = finished(server, data)
    g = server.download(up, {"Range": rng})
    assert g.status == 206, g
    assert g.body == data[start:end + 1], g
    assert g.header("Content-Range") == f"bytes {start}-{end}/10", g
    assert g.header("Content-Length") == str(end - start + 1), g


@pytest.mark.parametrize("rng", ["bytes=10-", "bytes=100-200", "bytes=20-30"])
def test_download_range_unsatisfiable(server, rng):
    up = finished(server, b"0123456789")
    g = server.download(up, {"Range": rng})
    assert g.status == 416, g
    cr = g.header("Content-Range")
    assert cr is None or cr == "bytes */10", g


def test_download_unknown(server):
    g = server.download(UNKNOWN)
    assert g.status == 404, g


def test_download_disabled(tusc):
    srv = tusc("-disable-download")
    up = finished(srv, b"secret")
    g = srv.download(up)
    assert 400 <= g.status < 500, g
    assert g.body != b"secret"
    assert b"secret" not in g.body
    assert srv.head(up).status == 200


def test_greeting(server):
    g = server.request("GET", "/", tus=False)
    assert g.status == 200, g
    assert len(g.body) > 0
    assert (g.header("Content-Type") or "").startswith("text/"), g


def test_greeting_disabled(tusc):
    srv = tusc("-show-greeting=false")
    g = srv.request("GET", "/", tus=False)
    assert g.status == 404, g
