"""POST (creation, creation-with-upload, creation-defer-length), metadata, Location."""
import re
import urllib.parse

import pytest

from conftest import OCTET, assert_error, b64, upload_id


def test_post_201_location_absolute_with_host(server):
    r = server.request("POST", "/files/", {"Upload-Length": "10"})
    assert r.status == 201, r
    loc = r.header("Location")
    u = urllib.parse.urlsplit(loc)
    assert u.scheme == "http", loc
    assert u.netloc == f"127.0.0.1:{server.port}", loc
    assert u.path.startswith("/files/") and len(u.path) > len("/files/"), loc
    assert "/" not in upload_id(u.path), loc
    h = server.head(u.path)
    assert h.status == 200, h
    assert h.header("Upload-Length") == "10", h
    assert h.header("Upload-Offset") == "0", h


def test_post_location_uses_request_host(server):
    r = server.request("POST", "/files/", {"Upload-Length": "1", "Host": "uploads.example:8080"})
    assert r.status == 201, r
    assert r.header("Location").startswith("http://uploads.example:8080/files/"), r


def test_post_ids_are_unique(server):
    paths = {server.create(length=1) for _ in range(20)}
    assert len(paths) == 20


def test_post_upload_length_zero(server):
    up = server.create(length=0)
    h = server.head(up)
    assert h.status == 200, h
    assert h.header("Upload-Offset") == "0"
    assert h.header("Upload-Length") == "0"
    g = server.download(up)
    assert g.status == 200, g
    assert g.body == b""


def test_post_missing_length(server):
    r = server.request("POST", "/files/", {})
    assert_error(r, 400, "ERR_INVALID_UPLOAD_LENGTH")
    assert not r.has("Location")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "0x10", "1e3", "10abc",
                                   "99999999999999999999", "9223372036854775808",
                                   "18446744073709551616", "- 1", "1 2"])
def test_post_invalid_length(server, value):
    r = server.request("POST", "/files/", {"Upload-Length": value})
    assert_error(r, 400, "ERR_INVALID_UPLOAD_LENGTH")
    assert not r.has("Location")


def test_post_no_upload_created_on_error(server):
    before = sorted(server.upload_dir.rglob("*"))
    for hs in ({}, {"Upload-Length": "x"}, {"Upload-Defer-Length": "2"},
               {"Upload-Length": "1", "Upload-Defer-Length": "1"}):
        r = server.request("POST", "/files/", hs)
        assert r.status == 400, (hs, r)
    assert sorted(server.upload_dir.rglob("*")) == before


def test_post_defer_length(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    h = server.head(up)
    assert h.status == 200, h
    assert h.header("Upload-Defer-Length") == "1", h
    assert not h.has("Upload-Length"), h
    assert h.header("Upload-Offset") == "0", h


@pytest.mark.parametrize("value", ["2", "0", "true", "yes", "-1"])
def test_post_defer_length_invalid(server, value):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": value})
    assert_error(r, 400, "ERR_INVALID_UPLOAD_LENGTH_DEFER")


def test_post_both_lengths_ambiguous(server):
    r = server.request("POST", "/files/", {"Upload-Length": "5", "Upload-Defer-Length": "1"})
    assert_error(r, 400, "ERR_AMBIGUOUS_UPLOAD_LENGTH")


def test_post_max_size(tusc):
    srv = tusc("-max-size", "1000")
    r = srv.request("POST", "/files/", {"Upload-Length": "1001"})
    assert_error(r, 413, "ERR_MAX_SIZE_EXCEEDED")
    assert not r.has("Location")
    r = srv.request("POST", "/files/", {"Upload-Length": "1000"})
    assert r.status == 201, r


def test_deferred_length_above_max_size(tusc):
    srv = tusc("-max-size", "10")
    r = srv.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    p = srv.patch(up, 0, b"abc", {"Upload-Length": "11"})
    assert p.status == 413, p
    assert srv.head(up).header("Upload-Defer-Length") == "1"


# -- metadata ---------------------------------------------------------------------------


def parse_metadata(value):
    out = {}
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def test_metadata_round_trip(server):
    meta = {"filename": b64("world domination plan.pdf"), "filetype": b64("application/pdf"),
            "unicode": b64("žluťoučký kůň ✓"), "is_confidential": ""}
    header = ",".join(f"{k} {v}" if v else k for k, v in meta.items())
    up = server.create(length=3, metadata=header)
    h = server.head(up)
    assert h.status == 200, h
    assert parse_metadata(h.header("Upload-Metadata")) == meta, h


def test_no_metadata_no_header(server):
    up = server.create(length=3)
    h = server.head(up)
    assert not h.has("Upload-Metadata") or h.header("Upload-Metadata") == "", h


@pytest.mark.parametrize("header", [
    "filename !!!notbase64",        # value outside the base64 alphabet
    "filename d29ybGQ",             # unpadded
    "filename d29ybGQ=,filename YQ==",  # duplicate key
    "a  YQ==",                      # two spaces
    "a YQ== extra",                 # three parts
    "a YQ==,",                      # empty pair at the end
    ",a YQ==",                      # empty pair at the start
    "a YQ==,,b Yg==",               # empty pair inside
    "a\tYQ==",                      # tab instead of space
    "a YQ=x",                       # padding in the middle
])
def test_metadata_malformed_400(server, header):
    r = server.request("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": header})
    assert r.status == 400, (header, r)
    assert r.error_code() is not None and r.error_code().startswith("ERR_"), r
    assert not r.has("Location")


# -- creation-with-upload ----------------------------------------------------------------


def test_creation_with_upload_partial(server):
    r = server.request("POST", "/files/", {"Upload-Length": "10", "Content-Type": OCTET},
                       b"0123")
    assert r.status == 201, r
    assert r.header("Upload-Offset") == "4", r
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert server.offset(up) == 4
    p = server.patch(up, 4, b"456789")
    assert p.status == 204, p
    assert server.download(up).body == b"0123456789"


def test_creation_with_upload_complete(server):
    data = bytes(range(256)) * 40
    r = server.request("POST", "/files/", {"Upload-Length": str(len(data)), "Content-Type": OCTET},
                       data)
    assert r.status == 201, r
    assert r.header("Upload-Offset") == str(len(data)), r
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert server.download(up).body == data


def test_creation_with_upload_body_too_long(server):
    r = server.request("POST", "/files/", {"Upload-Length": "3", "Content-Type": OCTET}, b"abcdef")
    assert r.status == 413, r


def test_creation_with_upload_deferred(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1", "Content-Type": OCTET},
                       b"abc")
    assert r.status == 201, r
    assert r.header("Upload-Offset") == "3", r


# -- base path and proxies ---------------------------------------------------------------


def test_custom_base_path(tusc):
    srv = tusc("-base-path", "/custom/")
    r = srv.request("POST", "/custom/", {"Upload-Length": "2"})
    assert r.status == 201, r
    loc = r.header("Location")
    assert loc.startswith(f"http://127.0.0.1:{srv.port}/custom/"), loc
    up = urllib.parse.urlsplit(loc).path
    assert srv.patch(up, 0, b"hi").status == 204
    assert srv.download(up).body == b"hi"
    r = srv.request("POST", "/files/", {"Upload-Length": "2"})
    assert r.status != 201, r
    assert srv.head("/files/" + upload_id(up)).status == 404


def test_base_path_without_slashes(tusc):
    srv = tusc("-base-path", "api/uploads")
    r = srv.request("POST", "/api/uploads/", {"Upload-Length": "2"})
    assert r.status == 201, r
    assert urllib.parse.urlsplit(r.header("Location")).path.startswith("/api/uploads/"), r


PROXY_CASES = [
    ({"X-Forwarded-Host": "tus.example.com", "X-Forwarded-Proto": "https"},
     "https://tus.example.com/files/"),
    ({"X-Forwarded-Host": "tus.example.com:443", "X-Forwarded-Proto": "https"},
     "https://tus.example.com/files/"),
    ({"X-Forwarded-Host": "tus.example.com:80", "X-Forwarded-Proto": "http"},
     "http://tus.example.com/files/"),
    ({"X-Forwarded-Host": "tus.example.com:8443", "X-Forwarded-Proto": "https"},
     "https://tus.example.com:8443/files/"),
    ({"X-Forwarded-Host": "tus.example.com"}, "http://tus.example.com/files/"),
    ({"X-Forwarded-Proto": "https"}, "https://127.0.0.1:{port}/files/"),
    ({"Forwarded": "host=fwd.example;proto=https"}, "https://fwd.example/files/"),
    ({"Forwarded": 'for=10.0.0.1;host="fwd.example:443";proto=https, host=second.example'},
     "https://fwd.example/files/"),
    ({"X-Forwarded-Proto": "gopher"}, "http://127.0.0.1:{port}/files/"),
]


@pytest.mark.parametrize("headers,prefix", PROXY_CASES)
def test_behind_proxy_location(tusc, headers, prefix):
    srv = tusc("-behind-proxy")
    r = srv.request("POST", "/files/", dict(headers, **{"Upload-Length": "1"}))
    assert r.status == 201, r
    assert r.header("Location").startswith(prefix.format(port=srv.port)), (headers, r)


@pytest.mark.parametrize("headers,_prefix", PROXY_CASES)
def test_proxy_headers_ignored_without_flag(server, headers, _prefix):
    r = server.request("POST", "/files/", dict(headers, **{"Upload-Length": "1"}))
    assert r.status == 201, r
    assert r.header("Location").startswith(f"http://127.0.0.1:{server.port}/files/"), r


def test_max_metadata_size(tusc):
    srv = tusc("-max-metadata-size", "100")
    small = f"filename {b64('x' * 30)}"
    assert srv.create(length=1, metadata=small)
    big = f"filename {b64('x' * 200)}"
    r = srv.request("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": big})
    assert_error(r, 400, "ERR_INVALID_METADATA")


def test_location_without_host_header(server):
    """HTTP/1.0 without Host: the Location is an absolute URL with some host, or a
    path (a relative reference is valid in Location, RFC 9110 10.2.2) — never
    "http:///files/..." with an empty host."""
    from conftest import RawConn
    with RawConn(server.port) as c:
        c.send(b"POST /files/ HTTP/1.0\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1\r\n"
               b"Content-Length: 0\r\n\r\n")
        r = c.read_response("POST")
    assert r.status == 201, r
    assert re.fullmatch(r"(https?://[^/\s]+)?/files/[^/\s]+", r.header("Location") or ""), r


@pytest.mark.parametrize("host", ["a b", "evil.com/x", "evil.com\\x", "evil.com?x", "<x>"])
def test_invalid_host_header_400(server, host):
    from conftest import RawConn, build_request
    with RawConn(server.port) as c:
        c.send(build_request("POST", "/files/", [("Host", host), ("Tus-Resumable", "1.0.0"),
                                                 ("Upload-Length", "1")]))
        r = c.read_response("POST")
    assert r.status == 400, r
    assert not r.has("Location"), r
