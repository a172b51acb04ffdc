"""IETF draft "Resumable Uploads for HTTP" (-enable-experimental-protocol): a raw-socket
client for interop versions 3 (draft -01) to 9 (draft -12).

Creation with the 104 interim response seen before the final answer, an interrupted
body (the client closes mid-body), offset retrieval, append, completion, cancellation;
400 on malformed Structured Field values, 409 with the right offset, Upload-Limit, and
what happens to draft requests when the flag is off. Interop 9 (draft -12): problem
details, completion by the server when the declared length is reached, the final
response replayed, Upload-Complete: ?0 on the protocol's own errors, cancellation of
an append still in flight.
"""
import json
import urllib.parse

import pytest

from conftest import OCTET, RawConn, build_request, deadline_poll, upload_id

VERSIONS = [3, 4, 5, 6, 7, 8, 9]
PARTIAL = "application/partial-upload"


def complete_header(version, complete):
    """(name, value) of the completeness header the way `version` spells it."""
    if version == 3:
        return "Upload-Incomplete", "?0" if complete else "?1"
    return "Upload-Complete", "?1" if complete else "?0"


def is_complete(resp, version):
    name, yes = complete_header(version, True)
    value = resp.header(name)
    assert value in ("?0", "?1"), resp
    return value == yes


def draft_headers(version, complete=None, extra=None):
    hs = [("Upload-Draft-Interop-Version", str(version))]
    if complete is not None:
        hs.append(complete_header(version, complete))
    hs += list((extra or {}).items())
    return hs


def append_type(version):
    return PARTIAL if version >= 6 else "application/octet-stream"


def assert_draft_response(resp, version):
    assert resp.header("Upload-Draft-Interop-Version") == str(version), resp
    assert not resp.has("Tus-Resumable"), resp


def path_of(location):
    return urllib.parse.urlsplit(location).path


class Draft:
    """A minimal draft client on raw sockets."""

    def __init__(self, server, version):
        self.server = server
        self.version = version

    def exchange(self, method, target, headers, body=b"", content_length="auto"):
        data = build_request(method, target, headers, body, content_length=content_length)
        with self.server.raw() as c:
            c.send(data)
            return c.read_final_response(method)

    def create(self, body=b"", complete=True, extra=None, method="POST"):
        final, interim = self.exchange(method, self.server.base_path,
                                       draft_headers(self.version, complete, extra), body)
        return final, interim

    def head(self, path):
        final, _ = self.exchange("HEAD", path, draft_headers(self.version))
        return final

    def append(self, path, offset, body, complete, extra=None, content_type=None):
        hs = {"Upload-Offset": str(offset),
              "Content-Type": content_type or append_type(self.version)}
        hs.update(extra or {})
        final, _ = self.exchange("PATCH", path, draft_headers(self.version, complete, hs), body)
        return final

    def delete(self, path):
        final, _ = self.exchange("DELETE", path, draft_headers(self.version))
        return final


@pytest.fixture
def draft_server(tusc):
    return tusc("-enable-experimental-protocol")


@pytest.mark.parametrize("version", VERSIONS)
def test_create_complete_with_104_first(draft_server, version):
    d = Draft(draft_server, version)
    body = b"hello draft " * 100
    final, interim = d.create(body, complete=True, extra={
        "Content-Type": "text/plain",
        "Content-Disposition": 'inline; filename="greeting.txt"'})
    assert final.status == 201, final
    assert_draft_response(final, version)
    # The 104 arrives before the final answer and names the same upload.
    assert [r.status for r in interim] == [104], interim
    i104 = interim[0]
    assert i104.header("Location"), i104
    assert i104.header("Location") == final.header("Location"), (i104, final)
    assert i104.header("Upload-Draft-Interop-Version") == str(version), i104
    assert i104.header("Upload-Limit") == "min-size=0", i104
    assert final.header("Upload-Offset") == str(len(body)), final
    assert final.header("Upload-Limit") == "min-size=0", final
    assert is_complete(final, version)

    up = path_of(final.header("Location"))
    h = d.head(up)
    assert h.status == 204, h
    assert_draft_response(h, version)
    assert h.header("Upload-Offset") == str(len(body)), h
    assert h.header("Upload-Length") == str(len(body)), h
    assert h.header("Cache-Control") == "no-store", h
    assert is_complete(h, version)
    # Same store as tus: the data and the metadata taken from the representation.
    assert draft_server.download(up).body == body
    t = draft_server.head(up)
    assert t.status == 200 and t.header("Tus-Resumable") == "1.0.0", t
    md = t.header("Upload-Metadata") or ""
    assert "filetype dGV4dC9wbGFpbg==" in md, t  # text/plain
    assert "filename Z3JlZXRpbmcudHh0" in md, t  # greeting.txt


@pytest.mark.parametrize("version", VERSIONS)
def test_interrupt_resume_complete(draft_server, version):
    """Optimistic creation: 104 read before sending the body, connection closed
    mid-body, offset retrieval, append of the rest with completion."""
    d = Draft(draft_server, version)
    data = bytes(range(256)) * 400  # 102400 bytes
    sent = 40000
    head = build_request("POST", draft_server.base_path,
                         draft_headers(version, True, {"Content-Type": "application/octet-stream"}),
                         b"", content_length=len(data))
    with draft_server.raw() as c:
        c.send(head)
        i104 = c.read_response("POST")
        assert i104.status == 104, i104
        loc = i104.header("Location")
        assert loc, i104
        c.send(data[:sent])
    # The client is gone; the server keeps every byte that arrived.
    up = path_of(loc)
    h = deadline_poll(lambda: (lambda r: r if r.header("Upload-Offset") == str(sent) else None)(
        d.head(up)), 15, what="offset after the interrupted creation")
    assert h.status == 204, h
    assert not is_complete(h, version)
    assert h.header("Upload-Length") == str(len(data)), h  # Content-Length of a complete request

    r = d.append(up, sent, data[sent:], complete=True)
    assert r.status == 204, r
    assert_draft_response(r, version)
    assert r.header("Upload-Offset") == str(len(data)), r
    assert is_complete(r, version)
    h = d.head(up)
    assert is_complete(h, version) and h.header("Upload-Offset") == str(len(data)), h
    assert draft_server.download(up).body == data


@pytest.mark.parametrize("version", VERSIONS)
def test_parts_with_deferred_length(draft_server, version):
    """Careful creation (no body, incomplete), appends, the last one chunked with
    completion: the length becomes the final offset."""
    d = Draft(draft_server, version)
    final, interim = d.create(b"", complete=False)
    assert final.status == 201, final
    assert final.header("Upload-Offset") == "0", final
    assert not is_complete(final, version)
    up = path_of(final.header("Location"))
    h = d.head(up)
    assert h.status == 204 and not h.has("Upload-Length"), h
    assert not is_complete(h, version)

    r = d.append(up, 0, b"a" * 1000, complete=False)
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "1000" and not is_complete(r, version), r

    chunked = b"7D0\r\n" + b"b" * 2000 + b"\r\n0\r\n\r\n"
    r = d.append(up, 1000, chunked, complete=True,
                 extra={"Transfer-Encoding": "chunked"})
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "3000", r
    assert is_complete(r, version), r
    h = d.head(up)
    assert h.header("Upload-Length") == "3000" and is_complete(h, version), h
    # The fixed length is durable: a tus HEAD reads it from the info file.
    t = draft_server.head(up)
    assert t.header("Upload-Length") == "3000" and not t.has("Upload-Defer-Length"), t
    assert draft_server.download(up).body == b"a" * 1000 + b"b" * 2000


@pytest.mark.parametrize("version", VERSIONS)
def test_offset_mismatch_409_carries_offset(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"x" * 10, complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 5, b"yyy", complete=False)
    assert r.status == 409, r
    assert_draft_response(r, version)
    assert r.header("Upload-Offset") == "10", r
    assert d.head(up).header("Upload-Offset") == "10"


@pytest.mark.parametrize("version", VERSIONS)
def test_cancel(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"z" * 100, complete=False)
    up = path_of(final.header("Location"))
    assert draft_server.files_of(up)
    r = d.delete(up)
    assert r.status == 204, r
    assert_draft_response(r, version)
    h = d.head(up)
    assert h.status == 404, h
    assert_draft_response(h, version)
    assert not [p for p in draft_server.files_of(up) if not p.name.endswith(".lock")]


@pytest.mark.parametrize("version", VERSIONS)
def test_append_to_complete_upload_refused(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"done", complete=True)
    up = path_of(final.header("Location"))
    r = d.append(up, 4, b"more", complete=False)
    assert r.status == 400, r
    assert_draft_response(r, version)
    # An empty completing append is a harmless repeat.
    r = d.append(up, 4, b"", complete=True)
    assert r.status == 204 and is_complete(r, version), r
    assert draft_server.download(up).body == b"done"


@pytest.mark.parametrize("version", VERSIONS)
def test_completing_append_must_match_declared_length(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": "10"})
    assert final.status == 201, final
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"12345", complete=True)  # 5 != 10
    assert r.status == 400, r
    assert d.head(up).header("Upload-Offset") == "0"
    r = d.append(up, 0, b"1234567890", complete=True)
    assert r.status == 204 and is_complete(r, version), r


@pytest.mark.parametrize("version", [6, 7, 8, 9])
def test_append_needs_partial_upload_type(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"abc", complete=False, content_type=OCTET)
    assert r.status == 415, r
    assert_draft_response(r, version)
    r = d.append(up, 0, b"abc", complete=False, content_type=PARTIAL)
    assert r.status == 204, r


@pytest.mark.parametrize("version", [3, 4, 5])
def test_append_any_type_before_interop_6(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"abc", complete=False, content_type="application/octet-stream")
    assert r.status == 204, r


@pytest.mark.parametrize("header,value", [
    ("Upload-Complete", "true"), ("Upload-Complete", "1"), ("Upload-Complete", "?2"),
    ("Upload-Complete", "?1, ?0"), ("Upload-Complete", '"?1"'), ("Upload-Complete", None),
])
def test_malformed_complete_on_creation_400(draft_server, header, value):
    hs = [("Upload-Draft-Interop-Version", "6")]
    if value is not None:
        hs.append((header, value))
    r = draft_server.raw_request(build_request("POST", "/files/", hs, b"abc"), "POST")
    assert r.status == 400, r
    assert r.error_code() == "ERR_INVALID_HEADER", r
    assert_draft_response(r, 6)
    assert not r.has("Location")


@pytest.mark.parametrize("value", ["abc", "10", "2", "6.0", "-6", '"6"', "6, 7"])
def test_bad_interop_version_400(draft_server, value):
    hs = [("Upload-Draft-Interop-Version", value), ("Upload-Complete", "?1")]
    r = draft_server.raw_request(build_request("POST", "/files/", hs, b"abc"), "POST")
    assert r.status == 400, r
    assert "Upload-Draft-Interop-Version" in r.text, r
    assert not r.has("Tus-Resumable") and not r.has("Location"), r


@pytest.mark.parametrize("value", ["-1", "1.0", "abc", "?1", "", "1, 2"])
def test_malformed_upload_offset_400(draft_server, value):
    d = Draft(draft_server, 6)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    hs = draft_headers(6, False, {"Upload-Offset": value, "Content-Type": PARTIAL})
    r = draft_server.raw_request(build_request("PATCH", up, hs, b"abc"), "PATCH")
    assert r.status == 400, r
    assert r.error_code() == "ERR_INVALID_OFFSET", r
    assert d.head(up).header("Upload-Offset") == "0"


@pytest.mark.parametrize("value", ["-5", "x", "1.5", "?1"])
def test_malformed_upload_length_400(draft_server, value):
    hs = draft_headers(6, False, {"Upload-Length": value})
    r = draft_server.raw_request(build_request("POST", "/files/", hs, b""), "POST")
    assert r.status == 400, r
    assert r.error_code() == "ERR_INVALID_UPLOAD_LENGTH", r


def test_upload_length_disagrees_with_content_length_400(draft_server):
    hs = draft_headers(8, True, {"Upload-Length": "5"})
    r = draft_server.raw_request(build_request("POST", "/files/", hs, b"0123456789"), "POST")
    assert r.status == 400, r
    assert r.error_code() == "ERR_INVALID_UPLOAD_LENGTH", r
    assert not r.has("Location")


def test_upload_length_with_incomplete_creation(draft_server):
    d = Draft(draft_server, 8)
    final, _ = d.create(b"0123", complete=False, extra={"Upload-Length": "10"})
    assert final.status == 201, final
    assert final.header("Upload-Length") == "10" and not is_complete(final, 8), final
    up = path_of(final.header("Location"))
    r = d.append(up, 4, b"456789", complete=False)  # reaching the length completes it
    assert r.status == 204 and is_complete(r, 8), r


def test_limits_and_options(tusc):
    srv = tusc("-enable-experimental-protocol", "-max-size", "100")
    d = Draft(srv, 8)
    final, interim = d.exchange("OPTIONS", "/files/", draft_headers(8))
    assert final.status in (200, 204), final
    assert_draft_response(final, 8)
    assert final.header("Upload-Limit") == "min-size=0, max-size=100", final
    assert final.header("Accept-Patch") == PARTIAL, final
    # Too large by Upload-Length, or by a complete request's Content-Length: 413 + limit.
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": "101"})
    assert final.status == 413, final
    assert final.header("Upload-Limit") == "min-size=0, max-size=100", final
    final, _ = d.create(b"x" * 101, complete=True)
    assert final.status == 413, final
    final, interim = d.create(b"x" * 100, complete=True)
    assert final.status == 201, final
    assert interim[0].header("Upload-Limit") == "min-size=0, max-size=100", interim
    # A deferred upload cannot grow past max-size either.
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"y" * 101, complete=False)
    assert r.status == 413, r
    # Plain tus OPTIONS is unchanged.
    t = srv.request("OPTIONS", "/files/")
    assert t.header("Tus-Resumable") == "1.0.0" and not t.has("Upload-Draft-Interop-Version"), t


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_creation_by_other_methods(draft_server, method):
    d8 = Draft(draft_server, 8)
    final, interim = d8.create(b"put body", complete=True, method=method)
    assert final.status == 201, final
    assert interim and interim[0].status == 104, interim
    assert draft_server.download(path_of(final.header("Location"))).body == b"put body"
    # Interop 6 still only creates with POST.
    final, _ = Draft(draft_server, 6).create(b"put body", complete=True, method=method)
    assert final.status == 405, final


def test_tus_and_draft_share_uploads(draft_server):
    # tus-created, draft-appended, tus-read.
    up = draft_server.create(length=6)
    d = Draft(draft_server, 6)
    h = d.head(up)
    assert h.status == 204 and h.header("Upload-Offset") == "0" and not is_complete(h, 6), h
    r = d.append(up, 0, b"abc", complete=False)
    assert r.status == 204, r
    p = draft_server.patch(up, 3, b"def")
    assert p.status == 204 and p.header("Upload-Offset") == "6", p
    assert is_complete(d.head(up), 6)
    # GET with the draft header downloads as usual.
    final, _ = d.exchange("GET", up, draft_headers(6))
    assert final.status == 200 and final.body == b"abcdef", final


def test_expect_continue_gets_104_then_100(draft_server):
    hs = draft_headers(8, True, {"Expect": "100-continue"})
    with draft_server.raw() as c:
        c.send(build_request("POST", "/files/", hs, b"", content_length=5))
        first = c.read_response("POST")
        assert first.status == 104, first
        second = c.read_response("POST")
        assert second.status == 100, second
        c.send(b"12345")
        final, _ = c.read_final_response("POST")
    assert final.status == 201 and final.header("Upload-Offset") == "5", final


def test_unknown_upload(draft_server):
    d = Draft(draft_server, 8)
    h = d.head("/files/0123456789abcdef0123456789abcdef")
    assert h.status == 404, h
    assert_draft_response(h, 8)
    r = d.append("/files/0123456789abcdef0123456789abcdef", 0, b"x", complete=False)
    assert r.status == 404, r


def test_feature_off_draft_request_is_a_tus_request(server):
    """Without -enable-experimental-protocol the header means nothing: a draft POST is a
    tus request without Tus-Resumable (412), a HEAD is a tus HEAD."""
    hs = draft_headers(6, True)
    r = server.raw_request(build_request("POST", "/files/", hs, b"abc"), "POST")
    assert r.status == 412, r
    assert r.header("Tus-Resumable") == "1.0.0" and not r.has("Upload-Draft-Interop-Version"), r
    up = server.create(length=3)
    final = server.raw_request(build_request("HEAD", up, hs), "HEAD")
    assert final.status == 200 and final.header("Tus-Resumable") == "1.0.0", final
    assert not final.has("Upload-Complete"), final


def write_hook(tmp_path, name, text):
    d = tmp_path / "ietf-hooks"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text)
    p.chmod(0o755)
    return d


def test_pre_create_hook_sees_draft_creation(tusc, tmp_path):
    """The pre-create hook runs for draft creations too (it is where operators put
    policy): it sees the metadata from Content-Type/Content-Disposition, can reject
    (no 104, no upload) and can choose the ID (the 104 and 201 name it)."""
    seen = tmp_path / "seen.json"
    d = write_hook(tmp_path, "pre-create",
                   "#!/bin/sh\ncat > " + str(seen) + "\n"
                   "if grep -q reject.txt " + str(seen) + "; then\n"
                   "  echo '{\"RejectUpload\": true}'\n"
                   "else\n"
                   "  echo '{\"ChangeFileInfo\": {\"ID\": \"chosen-by-hook\"}}'\n"
                   "fi\n")
    srv = tusc("-enable-experimental-protocol", "-hooks-dir", str(d), "-hooks-enabled-events=")
    dr = Draft(srv, 8)
    final, interim = dr.create(b"data", complete=True,
                               extra={"Content-Disposition": "inline; filename=reject.txt"})
    assert final.status == 400 and final.error_code() == "ERR_UPLOAD_REJECTED", final
    assert interim == [], interim
    assert not list(srv.upload_dir.rglob("*.info"))
    assert '"filename":"reject.txt"' in seen.read_text()

    final, interim = dr.create(b"data", complete=True,
                               extra={"Content-Disposition": "inline; filename=ok.txt"})
    assert final.status == 201, final
    assert final.header("Location").endswith("/files/chosen-by-hook"), final
    assert interim[0].header("Location") == final.header("Location"), interim
    assert srv.download("/files/chosen-by-hook").body == b"data"


@pytest.mark.parametrize("version", [3, 6, 8, 9])
def test_resume_while_old_append_still_hangs(draft_server, version):
    """The client thinks its append died but the server still holds it open: offset
    retrieval answers at once (no lock), and the new append takes over the upload."""
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    data = b"q" * 50000
    hs = draft_headers(version, True, {"Upload-Offset": "0",
                                       "Content-Type": append_type(version)})
    old = RawConn(draft_server.port)
    try:
        old.send(build_request("PATCH", up, hs, b"", content_length=len(data)))
        old.send(data[:20000])
        deadline_poll(lambda: d.head(up).header("Upload-Offset") == "20000", 15,
                      what="bytes of the hanging append")
        r = d.append(up, 20000, data[20000:], complete=True)
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str(len(data)) and is_complete(r, version), r
    finally:
        old.close()
    assert draft_server.download(up).body == data


def test_draft_requests_are_authenticated_and_owned(tusc, tmp_path):
    auth = pytest.importorskip("test_auth")
    users = auth.write_htpasswd(tmp_path / "users.htpasswd")
    srv = tusc("-enable-experimental-protocol", "-auth-htpasswd", str(users))
    d = Draft(srv, 8)
    final, interim = d.create(b"secret", complete=True)
    assert final.status == 401 and interim == [], final
    assert not any(srv.upload_dir.rglob("*.info"))

    alice = auth.basic("alice")
    final, interim = d.create(b"secret", complete=False, extra=alice)
    assert final.status == 201 and interim[0].status == 104, final
    up = path_of(final.header("Location"))
    bob = auth.basic("bob")
    r, _ = d.exchange("HEAD", up, draft_headers(8, extra=bob))
    assert r.status in (403, 404), r
    r = d.append(up, 6, b"more", complete=True, extra=bob)
    assert r.status in (403, 404), r
    r, _ = d.exchange("DELETE", up, draft_headers(8, extra=bob))
    assert r.status in (403, 404), r
    r = d.append(up, 6, b"more", complete=True, extra=alice)
    assert r.status == 204 and is_complete(r, 8), r
    r, _ = d.exchange("HEAD", up, draft_headers(8, extra=alice))
    assert r.status == 204 and r.header("Upload-Offset") == "10", r


def test_expiration_applies_to_draft_uploads(tusc):
    srv = tusc("-enable-experimental-protocol", "-expire-after", "1s")
    d = Draft(srv, 8)
    final, _ = d.create(b"part", complete=False)
    assert final.status == 201 and final.has("Upload-Expires"), final
    unfinished = path_of(final.header("Location"))
    final, _ = d.create(b"whole", complete=True)
    finished = path_of(final.header("Location"))
    h = deadline_poll(lambda: (lambda r: r if r.status in (404, 410) else None)(d.head(unfinished)),
                      15, what="the unfinished draft upload to expire")
    assert_draft_response(h, 8)
    h = d.head(finished)
    assert h.status == 204 and is_complete(h, 8), h
    assert srv.download(finished).body == b"whole"


def test_interop_3_without_upload_incomplete_is_complete(draft_server):
    """Draft -01 marks only the exception (Upload-Incomplete: ?1); a request without the
    header carries the whole rest. Later versions require Upload-Complete."""
    body = b"whole thing"
    final, interim = Draft(draft_server, 3).exchange(
        "POST", "/files/", [("Upload-Draft-Interop-Version", "3")], body)
    assert final.status == 201 and interim[0].status == 104, final
    assert final.header("Upload-Incomplete") == "?0", final
    assert final.header("Upload-Length") == str(len(body)), final
    final, _ = Draft(draft_server, 4).exchange(
        "POST", "/files/", [("Upload-Draft-Interop-Version", "4")], body)
    assert final.status == 400, final


# --- interop 9 (draft -12) ---------------------------------------------------------------

PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"


def problem(resp):
    assert resp.header("Content-Type") == "application/problem+json", resp
    return json.loads(resp.body)


@pytest.mark.parametrize("version", [8, 9])
def test_409_problem_details_from_9(draft_server, version):
    d = Draft(draft_server, version)
    final, _ = d.create(b"x" * 10, complete=True)
    up = path_of(final.header("Location"))
    r = d.append(up, 25, b"yyy", complete=False)
    assert r.status == 409, r
    assert r.header("Upload-Offset") == "10", r
    if version == 8:  # unchanged: the state met, and a text body
        assert is_complete(r, 8) and r.error_code() == "ERR_MISMATCHED_OFFSET", r
        return
    # -12: a protocol error, so Upload-Complete: ?0 even for a completed upload.
    assert r.header("Upload-Complete") == "?0", r
    p = problem(r)
    assert p["type"] == PROBLEM_TYPES + "mismatching-upload-offset", p
    assert p["expected-offset"] == 10 and p["provided-offset"] == 25, p
    assert p["title"], p


def test_inconsistent_length_problem_9(draft_server):
    d = Draft(draft_server, 9)
    # Upload-Length disagrees with the completing request's Content-Length.
    final, interim = d.create(b"0123456789", complete=True, extra={"Upload-Length": "5"})
    assert final.status == 400 and not interim, (final, interim)
    assert problem(final)["type"] == PROBLEM_TYPES + "inconsistent-upload-length", final
    assert final.header("Upload-Complete") == "?0", final
    assert not final.has("Location"), final
    # A completing append that does not reach the declared length.
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": "10"})
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"12345", complete=True)
    assert r.status == 400, r
    assert problem(r)["type"] == PROBLEM_TYPES + "inconsistent-upload-length", r
    assert r.header("Upload-Complete") == "?0", r
    # Another length than the one declared before.
    r = d.append(up, 0, b"", complete=False, extra={"Upload-Length": "11"})
    assert r.status == 400, r
    assert problem(r)["type"] == PROBLEM_TYPES + "inconsistent-upload-length", r
    # A malformed header is not an inconsistent length: tusc's text error as before.
    hs = draft_headers(9, False, {"Upload-Length": "x"})
    r = draft_server.raw_request(build_request("POST", "/files/", hs, b""), "POST")
    assert r.status == 400 and r.error_code() == "ERR_INVALID_UPLOAD_LENGTH", r


def test_completed_upload_replays_final_response_9(draft_server):
    """No completed-upload problem type in -12: a valid append to a completed upload
    gets the final response again; one that would add bytes is an inconsistent
    length."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    done = d.append(up, 0, b"all of it", complete=True)
    assert done.status == 204 and done.header("Upload-Complete") == "?1", done
    for complete in (True, False):
        r = d.append(up, 9, b"", complete=complete)
        assert r.status == 204, r
        assert r.header("Upload-Complete") == "?1", r
        assert r.header("Upload-Offset") == done.header("Upload-Offset") == "9", r
        assert r.header("Upload-Length") == "9", r
    r = d.append(up, 9, b"more", complete=False)
    assert r.status == 400, r
    assert problem(r)["type"] == PROBLEM_TYPES + "inconsistent-upload-length", r
    assert r.header("Upload-Complete") == "?0", r
    assert draft_server.download(up).body == b"all of it"


def chunked_append(server, version, up, offset, data):
    """Starts a chunked append that sends `data` as one chunk and no end of body."""
    hs = draft_headers(version, False, {"Upload-Offset": str(offset), "Content-Type": PARTIAL,
                                        "Transfer-Encoding": "chunked"})
    c = RawConn(server.port)
    c.send(build_request("PATCH", up, hs, b""))
    c.send(b"%x\r\n" % len(data) + data + b"\r\n")
    return c


def test_server_completes_at_declared_length_early_9(draft_server):
    """-12: the server may complete the upload itself; once the declared length is
    reached it answers at once with Upload-Complete: ?1 without waiting for the end of
    a body of unannounced size."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"0123", complete=False, extra={"Upload-Length": "10"})
    assert final.status == 201 and final.header("Upload-Complete") == "?0", final
    up = path_of(final.header("Location"))
    c = chunked_append(draft_server, 9, up, 4, b"456789")
    try:
        # The body is still open (no last chunk): the answer comes anyway.
        r, _ = c.read_final_response("PATCH")
        assert r.status == 204, r
        assert r.header("Upload-Complete") == "?1", r
        assert r.header("Upload-Offset") == "10" and r.header("Upload-Length") == "10", r
        assert r.header("Connection") == "close" or c.closed_by_peer(10), r
    finally:
        c.close()
    h = d.head(up)
    assert h.header("Upload-Complete") == "?1" and h.header("Upload-Offset") == "10", h
    assert draft_server.download(up).body == b"0123456789"


def test_server_completes_creation_early_9(draft_server):
    d = Draft(draft_server, 9)
    hs = draft_headers(9, False, {"Upload-Length": "6", "Transfer-Encoding": "chunked"})
    with draft_server.raw() as c:
        c.send(build_request("POST", "/files/", hs, b""))
        c.send(b"6\r\nabcdef\r\n")  # no last chunk
        final, interim = c.read_final_response("POST")
    assert [r.status for r in interim] == [104], interim
    assert final.status == 201, final
    assert final.header("Location") == interim[0].header("Location"), final
    assert final.header("Upload-Complete") == "?1", final
    assert final.header("Upload-Offset") == "6", final
    assert draft_server.download(path_of(final.header("Location"))).body == b"abcdef"


def test_reaching_length_completes_8_at_body_end(draft_server):
    """Interop 8 unchanged: the answer (complete) comes with the end of the body."""
    d = Draft(draft_server, 8)
    final, _ = d.create(b"0123", complete=False, extra={"Upload-Length": "10"})
    up = path_of(final.header("Location"))
    c = chunked_append(draft_server, 8, up, 4, b"456789")
    try:
        deadline_poll(lambda: d.head(up).header("Upload-Offset") == "10", 15,
                      what="the chunk stored")
        c.send(b"0\r\n\r\n")
        r, _ = c.read_final_response("PATCH")
        assert r.status == 204 and is_complete(r, 8), r
    finally:
        c.close()


def test_options_and_limits_9(tusc):
    srv = tusc("-enable-experimental-protocol")
    d = Draft(srv, 9)
    final, _ = d.exchange("OPTIONS", "/files/", draft_headers(9))
    assert final.status in (200, 204), final
    assert final.header("Upload-Limit") == "min-size=0", final  # no limit: min-size=0
    srv = tusc("-enable-experimental-protocol", "-max-size", "100")
    d = Draft(srv, 9)
    final, _ = d.exchange("OPTIONS", "/files/", draft_headers(9))
    assert final.header("Upload-Limit") == "min-size=0, max-size=100", final
    # Limit violations: 413 with Upload-Limit, and Upload-Complete: ?0 (the client may
    # retry smaller, or cancel).
    final, interim = d.create(b"", complete=False, extra={"Upload-Length": "101"})
    assert final.status == 413 and not interim, final
    assert final.header("Upload-Limit") == "min-size=0, max-size=100", final
    assert final.header("Upload-Complete") == "?0", final
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"y" * 101, complete=False)
    assert r.status == 413, r
    assert r.header("Upload-Limit") == "min-size=0, max-size=100", r
    assert r.header("Upload-Complete") == "?0", r


def test_104_only_for_draft_clients(draft_server):
    """The 104 goes only to a request that announced an interop version: a request
    with Upload-Complete alone is a tus request."""
    hs = [("Upload-Complete", "?1"), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "3"),
          ("Content-Type", OCTET)]
    with draft_server.raw() as c:
        c.send(build_request("POST", "/files/", hs, b"abc"))
        final, interim = c.read_final_response("POST")
    assert final.status == 201 and not interim, (final, interim)
    assert final.header("Tus-Resumable") == "1.0.0", final
    final, interim = Draft(draft_server, 9).create(b"abc", complete=True)
    assert [r.status for r in interim] == [104], interim
    assert interim[0].header("Upload-Draft-Interop-Version") == "9", interim


def test_cancel_ends_append_in_flight_9(draft_server):
    """-12: DELETE terminates a request still appending to the upload (HTTP/1.1: its
    connection is answered and closed) before it answers."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    hs = draft_headers(9, False, {"Upload-Offset": "0", "Content-Type": PARTIAL})
    old = RawConn(draft_server.port)
    try:
        old.send(build_request("PATCH", up, hs, b"", content_length=100000))
        old.send(b"w" * 1000)
        deadline_poll(lambda: d.head(up).header("Upload-Offset") == "1000", 15,
                      what="bytes of the append in flight")
        r = d.delete(up)
        assert r.status == 204, r
        # The old append was ended: it gets its answer and its connection closes.
        old_r, _ = old.read_final_response("PATCH")
        assert old_r.status >= 400, old_r
        assert old.read_until_close() == b""
    finally:
        old.close()
    assert d.head(up).status == 404


# --- interop 9 over HTTP/2 ----------------------------------------------------------------

def h2_draft_headers(version, complete=None, extra=()):
    hs = [("upload-draft-interop-version", str(version))]
    if complete is not None:
        hs.append(("upload-complete", "?1" if complete else "?0"))
    return hs + list(extra)


def h2_answer(raw, sid):
    """The interim heads and the final head (dicts) of stream `sid`."""
    from test_h2 import HEADERS, RST_STREAM
    interim = []
    while True:
        f = raw.until(lambda f: f[2] == sid and f[0] in (HEADERS, RST_STREAM))
        assert f is not None, "the connection closed"
        assert f[0] == HEADERS, f"stream {sid} reset: {f}"
        if int(f[4][":status"]) >= 200:
            return interim, f[4]
        interim.append(f[4])


@pytest.fixture
def h2_draft_server(tusc):
    return tusc("-enable-experimental-protocol", "-enable-h2c")


def test_h2_stream_without_content_length_completes_early_9(h2_draft_server):
    """An HTTP/2 stream without content-length is a body of unannounced size (HTTP/1.1's
    chunked): with interop 9 the server completes the upload as soon as the declared
    length is reached and answers at once, then tells the client to stop
    (RST_STREAM NO_ERROR); the connection goes on."""
    from test_h2 import DATA, HEADERS, RST_STREAM, RawH2, frame
    srv = h2_draft_server
    d = Draft(srv, 9)
    final, _ = d.create(b"0123", complete=False, extra={"Upload-Length": "10"})
    up = path_of(final.header("Location"))
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
            9, False, [("upload-offset", "4"), ("content-type", PARTIAL)]), tus=False) +
                 frame(DATA, 0, 1, b"456789"))  # no END_STREAM: the body stays open
        _, r = h2_answer(raw, 1)
        assert r[":status"] == "204", r
        assert r["upload-complete"] == "?1", r
        assert r["upload-offset"] == "10" and r["upload-length"] == "10", r
        f = raw.until(lambda f: f[2] == 1 and f[0] == RST_STREAM)
        assert f is not None and int.from_bytes(f[3], "big") == 0, f  # NO_ERROR
        # A creation of unannounced size: the 104 first, then the early 201.
        raw.send(raw.request_headers(3, "POST", "/files/", h2_draft_headers(
            9, False, [("upload-length", "6")]), tus=False) + frame(DATA, 0, 3, b"abcdef"))
        interim, r = h2_answer(raw, 3)
        assert [i[":status"] for i in interim] == ["104"], interim
        assert r[":status"] == "201" and r["upload-complete"] == "?1", r
        assert r["location"] == interim[0]["location"], (r, interim)
        assert r["upload-offset"] == "6", r
        created = path_of(r["location"])
        raw.send(raw.request_headers(5, "OPTIONS", "/files/", end_stream=True))
        assert raw.until(lambda f: f[2] == 5 and f[0] == HEADERS) is not None
    finally:
        raw.close()
    h = d.head(up)
    assert h.header("Upload-Complete") == "?1" and h.header("Upload-Offset") == "10", h
    assert srv.download(up).body == b"0123456789"
    assert srv.download(created).body == b"abcdef"


def test_h2_104_only_for_draft_clients_9(h2_draft_server):
    """On HTTP/2 too, 104 Upload Resumption Supported (with Location, the interop
    version and Upload-Limit) goes out as soon as the upload exists, and only to a
    client that announced an interop version."""
    from test_h2 import DATA, END_STREAM, RawH2, frame
    srv = h2_draft_server
    raw = RawH2(srv)
    try:
        # A tus creation with Upload-Complete but no interop version: no 104.
        raw.send(raw.request_headers(1, "POST", "/files/", [
            ("upload-complete", "?1"), ("upload-length", "3"), ("content-type", OCTET),
            ("content-length", "3")]) + frame(DATA, END_STREAM, 1, b"abc"))
        interim, r = h2_answer(raw, 1)
        assert r[":status"] == "201" and not interim, (r, interim)
        assert r["tus-resumable"] == "1.0.0", r
        # A draft creation whose body has not come yet: the 104 comes before it.
        raw.send(raw.request_headers(3, "POST", "/files/", h2_draft_headers(
            9, True, [("content-length", "3")]), tus=False))
        from test_h2 import HEADERS
        f = raw.until(lambda f: f[2] == 3 and f[0] == HEADERS)
        assert f is not None and f[4][":status"] == "104", f
        assert f[4]["upload-draft-interop-version"] == "9", f
        assert f[4]["upload-limit"] == "min-size=0", f
        loc = f[4]["location"]
        raw.send(frame(DATA, END_STREAM, 3, b"xyz"))
        interim, r = h2_answer(raw, 3)
        assert r[":status"] == "201" and r["location"] == loc, r
        assert r["upload-complete"] == "?1", r
    finally:
        raw.close()
    assert srv.download(path_of(loc)).body == b"xyz"


def test_h2_request_cancellation_keeps_bytes_9(h2_draft_server):
    """-12's request cancellation on HTTP/2: a client that resets its append stream
    (RST_STREAM CANCEL) mid-body keeps the bytes already stored; offset retrieval
    reports them and the upload resumes from there."""
    from test_h2 import DATA, RST_STREAM, RawH2, frame, log_lines
    import struct
    srv = h2_draft_server
    d = Draft(srv, 9)
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": "5000"})
    up = path_of(final.header("Location"))
    first = bytes(range(256)) * 4 + b"x" * 976  # 2000 bytes
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
            9, True, [("upload-offset", "0"), ("content-type", PARTIAL),
                      ("content-length", "5000")]), tus=False) + frame(DATA, 0, 1, first))
        deadline_poll(lambda: d.head(up).header("Upload-Offset") == "2000", 15,
                      what="the append's first bytes stored")
        raw.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))  # CANCEL
        deadline_poll(lambda: any("aborted=true" in l and "proto=HTTP/2.0" in l
                                  for l in log_lines(srv, "PATCH")), 15,
                      what="the cancelled append's end")
    finally:
        raw.close()
    h = d.head(up)
    assert h.header("Upload-Offset") == "2000" and h.header("Upload-Complete") == "?0", h
    r = d.append(up, 2000, b"y" * 3000, complete=True)
    assert r.status == 204 and r.header("Upload-Complete") == "?1", r
    assert srv.download(up).body == first + b"y" * 3000


# --- interop 9: retry guidance on 429 and 5xx ----------------------------------------------


def test_429_says_upload_complete_0_and_retry_after_9(tusc, tmp_path):
    """-12's retry guidance: a 429 to a creation or append is the protocol's answer
    (Upload-Complete: ?0, Retry-After): the client waits and retries."""
    import base64
    import socket
    from test_auth import make_hash
    users = tmp_path / "users.htpasswd"
    users.write_text(f"alice:{make_hash('$2y$', 'alice-pw', 5)}\n")
    srv = tusc("-enable-experimental-protocol", "-auth-htpasswd", str(users))

    def draft_post(pw):
        auth = "Basic " + base64.b64encode(f"alice:{pw}".encode()).decode()
        s = socket.create_connection((srv.host, srv.port), timeout=30,
                                     source_address=("127.0.0.2", 0))
        c = RawConn.__new__(RawConn)
        c.sock, c.buf, c.eof = s, b"", False
        try:
            c.send(build_request("POST", "/files/", draft_headers(
                9, True, {"Authorization": auth}), b"abc"))
            return c.read_final_response("POST")
        finally:
            c.close()

    seen = []
    for i in range(30):  # failed logins until the address is throttled
        final, interim = draft_post(f"wrong-{i}")
        seen.append(final.status)
        if final.status == 429:
            break
        assert final.status == 401 and not interim, final
    assert seen[-1] == 429, seen
    assert final.header("Upload-Complete") == "?0", final
    assert final.header("Upload-Draft-Interop-Version") == "9", final
    assert 1 <= int(final.header("Retry-After")) <= 60, final
    assert not interim, interim  # nothing was created


def test_5xx_says_upload_complete_0_and_offset_resumes_9(tusc):
    """-12's retry guidance on a server error (a write past RLIMIT_FSIZE: EFBIG, 500):
    Upload-Complete: ?0, and the client retrieves the offset and resumes from it."""
    srv = tusc("-enable-experimental-protocol", start=False)
    srv.start(["/bin/sh", "-c", 'ulimit -f 4096 && exec "$@"', "tusc"] + srv.command())
    d = Draft(srv, 9)
    size = 6 * 1024 * 1024
    data = bytes(range(256)) * (size // 256)
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": str(size)})
    up = path_of(final.header("Location"))
    hs = draft_headers(9, True, {"Upload-Offset": "0", "Content-Type": PARTIAL})
    with RawConn(srv.port, timeout=60) as c:
        c.send(build_request("PATCH", up, hs, b"", content_length=size))
        try:
            for i in range(0, size, 256 * 1024):
                c.sock.sendall(data[i:i + 256 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass
        r, _ = c.read_final_response("PATCH")
    assert 500 <= r.status < 600, r
    assert r.header("Upload-Complete") == "?0", r
    assert r.header("Upload-Draft-Interop-Version") == "9", r
    # Retrieve the offset, then resume (after the operator lifted the limit).
    off = int(d.head(up).header("Upload-Offset"))
    assert 0 < off < size, off
    assert srv.stop() == 0
    srv.start()
    r = d.append(up, off, data[off:], complete=True)
    assert r.status == 204 and r.header("Upload-Complete") == "?1", r
    assert srv.download(up).body == data


def test_h2_stream_without_content_length_sets_deferred_length(h2_draft_server):
    """A completing HTTP/2 append without content-length to an upload of unknown length:
    like a chunked HTTP/1.1 body, the length becomes the final offset once the stream
    ends (END_STREAM). And a tus PATCH without content-length over HTTP/2 is a body of
    unannounced size too, stored whole."""
    from test_h2 import DATA, END_STREAM, RawH2, frame
    srv = h2_draft_server
    d = Draft(srv, 9)
    final, _ = d.create(b"ab", complete=False)
    up = path_of(final.header("Location"))
    tus_up = path_of(srv.request("POST", "/files/", {"Upload-Length": "40000"}).header("Location"))
    tus_body = bytes(range(256)) * 156 + b"t" * 64  # 40000 bytes
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
            9, True, [("upload-offset", "2"), ("content-type", PARTIAL)]), tus=False) +
                 frame(DATA, 0, 1, b"cdef") + frame(DATA, END_STREAM, 1, b"gh"))
        _, r = h2_answer(raw, 1)
        assert r[":status"] == "204" and r["upload-complete"] == "?1", r
        assert r["upload-offset"] == "8" and r["upload-length"] == "8", r
        raw.send(raw.request_headers(3, "PATCH", tus_up, [("upload-offset", "0"),
                                                         ("content-type", OCTET)]) +
                 frame(DATA, 0, 3, tus_body[:16000]) + frame(DATA, 0, 3, tus_body[16000:32000]) +
                 frame(DATA, END_STREAM, 3, tus_body[32000:]))
        _, r = h2_answer(raw, 3)
        assert r[":status"] == "204" and r["upload-offset"] == "40000", r
    finally:
        raw.close()
    h = d.head(up)
    assert h.header("Upload-Length") == "8" and h.header("Upload-Complete") == "?1", h
    assert srv.download(up).body == b"abcdefgh"
    assert srv.download(tus_up).body == tus_body


# --- Upload-Limit max-age (draft -06 on: interop 7+) --------------------------------------


def limit_members(value):
    """An Upload-Limit dictionary of integers as a dict (what tusc sends)."""
    out = {}
    for member in value.split(","):
        k, _, v = member.strip().partition("=")
        out[k] = int(v)
    return out


def assert_max_age(resp, low, high, header="Upload-Limit"):
    lim = limit_members(resp.header(header) if hasattr(resp, "header") else resp[header.lower()])
    assert "max-age" in lim and low <= lim["max-age"] <= high, (lim, resp)
    return lim


@pytest.mark.parametrize("version", [7, 8, 9])
def test_upload_limit_max_age(tusc, version):
    """-12 "Limits": max-age is the remaining lifetime of the upload resource. With
    -expire-after, OPTIONS announces the lifetime a new upload gets, and every answer
    about an unfinished upload (104, 201, HEAD, append) the seconds left until it
    expires; a finished upload never expires, so its answers carry none."""
    srv = tusc("-enable-experimental-protocol", "-expire-after", "1h", "-max-size", "100")
    d = Draft(srv, version)
    final, _ = d.exchange("OPTIONS", "/files/", draft_headers(version))
    assert final.header("Upload-Limit") == "min-size=0, max-size=100, max-age=3600", final
    final, interim = d.create(b"abc", complete=False, extra={"Upload-Length": "10"})
    assert final.status == 201 and [i.status for i in interim] == [104], (final, interim)
    assert assert_max_age(interim[0], 3598, 3600)["max-size"] == 100
    assert_max_age(final, 3598, 3600)
    up = path_of(final.header("Location"))
    h = d.head(up)
    assert h.status == 204, h
    assert_max_age(h, 3598, 3600)
    r = d.append(up, 3, b"defg", complete=False)
    assert r.status == 204 and not is_complete(r, version), r
    assert_max_age(r, 3598, 3600)
    r = d.append(up, 7, b"hij", complete=True)
    assert r.status == 204 and is_complete(r, version), r
    assert r.header("Upload-Limit") == "min-size=0, max-size=100", r
    h = d.head(up)
    assert h.header("Upload-Limit") == "min-size=0, max-size=100", h
    # Created complete: never expires.
    final, interim = d.create(b"whole", complete=True)
    assert final.status == 201 and final.header("Upload-Limit") == "min-size=0, max-size=100"


def test_upload_limit_max_age_counts_down(tusc):
    """max-age is the time left, not the configured lifetime: an idle upload's max-age
    shrinks, and the end it implies never moves earlier (-12: SHOULD NOT decrease)."""
    import time
    srv = tusc("-enable-experimental-protocol", "-expire-after", "4s")
    d = Draft(srv, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    t0 = time.monotonic()
    first = assert_max_age(final, 3, 4)["max-age"]
    h = deadline_poll(lambda: (lambda r: r if limit_members(r.header("Upload-Limit"))
                               .get("max-age", 99) < first else None)(d.head(up)),
                      10, what="max-age to count down")
    left = limit_members(h.header("Upload-Limit"))["max-age"]
    assert t0 + first + 1 >= time.monotonic() + left, (first, left)
    # Writing bytes is activity: the lifetime starts again.
    r = d.append(up, 0, b"x", complete=False)
    assert_max_age(r, 3, 4)


@pytest.mark.parametrize("version", [3, 6])
def test_upload_limit_no_max_age_before_7(tusc, version):
    """Drafts before -06 (interop 3-6) have no max-age member: their answers stay as
    they were."""
    srv = tusc("-enable-experimental-protocol", "-expire-after", "1h")
    d = Draft(srv, version)
    final, _ = d.exchange("OPTIONS", "/files/", draft_headers(version))
    assert final.header("Upload-Limit") == "min-size=0", final
    final, interim = d.create(b"abc", complete=False)
    assert final.header("Upload-Limit") == "min-size=0", final
    assert interim[0].header("Upload-Limit") == "min-size=0", interim
    assert d.head(path_of(final.header("Location"))).header("Upload-Limit") == "min-size=0"


def test_upload_limit_without_expiration_has_no_max_age(draft_server):
    d = Draft(draft_server, 9)
    final, _ = d.exchange("OPTIONS", "/files/", draft_headers(9))
    assert final.header("Upload-Limit") == "min-size=0", final
    final, _ = d.create(b"abc", complete=False)
    assert final.header("Upload-Limit") == "min-size=0", final


def test_h2_upload_limit_max_age_9(tusc):
    """The same max-age on HTTP/2: the 104 and the 201 of a creation, OPTIONS."""
    from test_h2 import DATA, END_STREAM, RawH2, frame
    srv = tusc("-enable-experimental-protocol", "-enable-h2c", "-expire-after", "1h")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", h2_draft_headers(9),
                                     end_stream=True, tus=False))
        interim, r = h2_answer(raw, 1)
        assert r["upload-limit"] == "min-size=0, max-age=3600", r
        raw.send(raw.request_headers(3, "POST", "/files/", h2_draft_headers(
            9, False, [("content-length", "3")]), tus=False) + frame(DATA, END_STREAM, 3, b"abc"))
        interim, r = h2_answer(raw, 3)
        assert r[":status"] == "201", r
        assert [i[":status"] for i in interim] == ["104"], interim
        assert_max_age(interim[0], 3598, 3600)
        assert_max_age(r, 3598, 3600)
    finally:
        raw.close()


# --- Content-Digest (draft -04 on: interop 6+; RFC 9530) ----------------------------------


def content_digest(data, *algos):
    import base64
    import hashlib
    names = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5"}
    return ", ".join(f"{a}=:{base64.b64encode(hashlib.new(names[a], data).digest()).decode()}:"
                     for a in algos or ("sha-256",))


@pytest.mark.parametrize("version", [6, 8, 9])
def test_content_digest_append(draft_server, version):
    """-12 "Content Digests": an append whose content does not match its Content-Digest
    is not appended (the offset stays, the client resends); a matching one is. sha-256
    and sha-512 are checked (sha-512 when both are sent); other algorithms are
    ignored."""
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"hello ", complete=False,
                 extra={"Content-Digest": content_digest(b"hello ", "sha-256")})
    assert r.status == 204 and r.header("Upload-Offset") == "6", r
    # A corrupted chunk: 400, nothing of it kept.
    r = d.append(up, 6, b"wOrld", complete=True,
                 extra={"Content-Digest": content_digest(b"world", "sha-512")})
    assert r.status == 400 and "ERR_DIGEST_MISMATCH" in r.text, r
    assert_draft_response(r, version)
    if version >= 9:
        assert r.header("Upload-Complete") == "?0", r  # the protocol's error: resume
    h = d.head(up)
    assert h.header("Upload-Offset") == "6" and not is_complete(h, version), h
    # sha-512 is the one checked when both come (here the sha-256 one is stale).
    both = content_digest(b"world", "sha-512") + ", " + content_digest(b"xxxxx", "sha-256")
    r = d.append(up, 6, b"world", complete=True, extra={"Content-Digest": both})
    assert r.status == 204 and is_complete(r, version), r
    assert draft_server.download(up).body == b"hello world"
    # Only algorithms tusc does not check (md5 is deprecated by RFC 9530): not verified.
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    r = d.append(up, 0, b"abc", complete=True,
                 extra={"Content-Digest": content_digest(b"other", "md5")})
    assert r.status == 204 and is_complete(r, version), r


def test_content_digest_creation(draft_server):
    """A creation with content: on a mismatch the upload exists (its 104 named it) but
    holds none of the bytes; a matching creation keeps them. A malformed digest, or a
    digest of no content that is wrong, is refused before anything is created."""
    d = Draft(draft_server, 9)
    final, interim = d.create(b"0123456789", complete=False,
                              extra={"Content-Digest": content_digest(b"0123456780")})
    assert final.status == 400 and "ERR_DIGEST_MISMATCH" in final.text, final
    assert final.header("Upload-Complete") == "?0", final
    assert [i.status for i in interim] == [104], interim
    up = path_of(interim[0].header("Location"))
    h = d.head(up)
    assert h.status == 204 and h.header("Upload-Offset") == "0", h
    r = d.append(up, 0, b"0123456789", complete=True,
                 extra={"Content-Digest": content_digest(b"0123456789", "sha-512")})
    assert r.status == 204 and is_complete(r, 9), r
    assert draft_server.download(up).body == b"0123456789"

    final, interim = d.create(b"abc", complete=True,
                              extra={"Content-Digest": content_digest(b"abc", "sha-256")})
    assert final.status == 201 and is_complete(final, 9), final
    assert draft_server.download(path_of(final.header("Location"))).body == b"abc"

    for bad in ("sha-256=:AAAA:", "sha-256=" + "a" * 44, "sha-256=:%s" % ("A" * 43),
                "sha-512=:" + content_digest(b"abc", "sha-256")[9:]):
        final, interim = d.create(b"abc", complete=True, extra={"Content-Digest": bad})
        assert final.status == 400 and "ERR_INVALID_DIGEST" in final.text, (bad, final)
        assert not interim and not final.has("Location"), (bad, final, interim)
    # No content: checked at once.
    final, interim = d.create(b"", complete=False,
                              extra={"Content-Digest": content_digest(b"x")})
    assert final.status == 400 and "ERR_DIGEST_MISMATCH" in final.text, final
    assert not interim, interim
    final, interim = d.create(b"", complete=False, extra={"Content-Digest": content_digest(b"")})
    assert final.status == 201, final


def test_content_digest_ignored_before_6(draft_server):
    """Drafts before -04 (interop 3-5) have no integrity digests: the field is not
    looked at, as before."""
    d = Draft(draft_server, 5)
    final, _ = d.create(b"abc", complete=True,
                        extra={"Content-Digest": content_digest(b"xyz")})
    assert final.status == 201, final
    final, _ = d.create(b"abc", complete=True, extra={"Content-Digest": "not a dictionary("})
    assert final.status == 201, final


def test_content_digest_chunked_and_interrupted(draft_server):
    """The digest covers the content whatever its framing (chunked here); a body that
    does not arrive whole cannot be verified and is dropped, like a tus checksummed
    chunk, so no unverified byte is acknowledged."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": "8"})
    up = path_of(final.header("Location"))
    hs = draft_headers(9, False, {"Upload-Offset": "0", "Content-Type": PARTIAL,
                                  "Transfer-Encoding": "chunked",
                                  "Content-Digest": content_digest(b"abcd")})
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b"") + b"2\r\nab\r\n2\r\nXd\r\n0\r\n\r\n")
        r, _ = c.read_final_response("PATCH")
    assert r.status == 400 and "ERR_DIGEST_MISMATCH" in r.text, r
    assert d.head(up).header("Upload-Offset") == "0"
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b"") + b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")
        r, _ = c.read_final_response("PATCH")
    assert r.status == 204 and r.header("Upload-Offset") == "4", r
    # Interrupted: the client goes away after half of a digested body.
    hs = draft_headers(9, True, {"Upload-Offset": "4", "Content-Type": PARTIAL,
                                 "Content-Length": "4",
                                 "Content-Digest": content_digest(b"efgh")})
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b"", content_length=None) + b"ef")
    deadline_poll(lambda: any("method=PATCH" in l and "status=400" in l and "aborted=true" in l
                              for l in draft_server.all_stderr().splitlines()), 15,
                  what="the interrupted append's end")
    h = d.head(up)
    assert h.header("Upload-Offset") == "4" and h.header("Upload-Complete") == "?0", h
    r = d.append(up, 4, b"efgh", complete=True, extra={"Content-Digest": content_digest(b"efgh")})
    assert r.status == 204 and is_complete(r, 9), r
    assert draft_server.download(up).body == b"abcdefgh"


@pytest.mark.skipif(__import__("shutil").which("curl") is None, reason="curl not installed")
def test_content_digest_curl_h1_and_h2(tusc, tmp_path):
    """Real clients: curl over HTTP/1.1 and over HTTP/2 (prior knowledge) sending
    Content-Digest on appends."""
    import subprocess
    srv = tusc("-enable-experimental-protocol", "-enable-h2c")
    d = Draft(srv, 9)
    data = bytes(range(256)) * 300
    f = tmp_path / "data"
    f.write_bytes(data)
    for proto in ("--http1.1", "--http2-prior-knowledge"):
        final, _ = d.create(b"", complete=False)
        up = path_of(final.header("Location"))
        url = f"http://{srv.host}:{srv.port}{up}"

        def patch(digest):
            p = subprocess.run(
                ["curl", "-sS", "-i", proto, "-X", "PATCH", "-H", "Upload-Draft-Interop-Version: 9",
                 "-H", "Upload-Complete: ?1", "-H", "Upload-Offset: 0", "-H",
                 f"Content-Type: {PARTIAL}", "-H", f"Content-Digest: {digest}",
                 "--data-binary", f"@{f}", url], capture_output=True, timeout=60)
            assert p.returncode == 0, p.stderr
            return p.stdout.decode("latin-1")
        out = patch(content_digest(data[:-1] + b"\0", "sha-256"))
        assert out.split("\r\n")[0].split()[1] == "400" and "ERR_DIGEST_MISMATCH" in out, out
        assert d.head(up).header("Upload-Offset") == "0"
        out = patch(content_digest(data, "sha-256", "sha-512"))
        assert out.split("\r\n")[0].split()[1] == "204", out
        assert srv.download(up).body == data


def test_h2_content_digest_9(h2_draft_server):
    """HTTP/2 streams: a mismatching digest drops the stream's content, a matching one
    keeps it."""
    from test_h2 import DATA, END_STREAM, RawH2, frame
    srv = h2_draft_server
    d = Draft(srv, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    raw = RawH2(srv)
    try:
        hs = [("upload-offset", "0"), ("content-type", PARTIAL), ("content-length", "6")]
        raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
            9, False, hs + [("content-digest", content_digest(b"abcdeF"))]), tus=False)
                 + frame(DATA, END_STREAM, 1, b"abcdef"))
        _, r = h2_answer(raw, 1)
        assert r[":status"] == "400" and r["upload-complete"] == "?0", r
        assert d.head(up).header("Upload-Offset") == "0"
        raw.send(raw.request_headers(3, "PATCH", up, h2_draft_headers(
            9, False, hs + [("content-digest", content_digest(b"abcdef", "sha-512"))]),
            tus=False) + frame(DATA, END_STREAM, 3, b"abcdef"))
        _, r = h2_answer(raw, 3)
        assert r[":status"] == "204" and r["upload-offset"] == "6", r
    finally:
        raw.close()
    assert srv.download(up).body == b"abcdef"


# --- OPTIONS * (draft -12 "Limits") ---------------------------------------------------------


def test_options_asterisk_answers_like_the_endpoint(tusc):
    """-12: a server whose resources all create uploads with the same limits SHOULD
    include Upload-Limit in its answer to OPTIONS for the target "*". tusc serves one
    upload endpoint, so OPTIONS * from a draft client answers exactly like OPTIONS on
    the endpoint (Upload-Limit, max-age included); without the draft header it is the
    tus answer, as on the endpoint. python http.client and curl, HTTP/1.1 and HTTP/2."""
    import http.client
    import subprocess
    srv = tusc("-enable-experimental-protocol", "-enable-h2c", "-max-size", "100",
               "-expire-after", "1h")

    def h1(target, headers):
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
        try:
            conn.request("OPTIONS", target, headers=headers)
            r = conn.getresponse()
            r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()

    draft = {"Upload-Draft-Interop-Version": "9"}
    status, star = h1("*", draft)
    _, endpoint = h1("/files/", draft)
    assert status == 200, (status, star)
    assert star["upload-limit"] == "min-size=0, max-size=100, max-age=3600", star
    assert star["upload-draft-interop-version"] == "9", star
    for k in ("upload-limit", "tus-version", "tus-extension", "tus-max-size", "accept-patch"):
        assert star.get(k) == endpoint.get(k), (k, star, endpoint)
    assert "tus-resumable" not in star, star
    status, plain = h1("*", {})
    assert status == 200 and "upload-limit" not in plain and plain["tus-resumable"] == "1.0.0"

    for proto in ("--http1.1", "--http2-prior-knowledge"):
        p = subprocess.run(["curl", "-sS", "-i", proto, "--request-target", "*", "-X", "OPTIONS",
                            "-H", "Upload-Draft-Interop-Version: 7",
                            f"http://{srv.host}:{srv.port}/"], capture_output=True, timeout=60)
        out = p.stdout.decode("latin-1")
        assert p.returncode == 0 and out.split("\r\n")[0].split()[1] == "200", (p.stderr, out)
        assert "\r\nupload-limit: min-size=0, max-size=100, max-age=3600\r\n" in out.lower(), out
        assert ("HTTP/2" in out) == (proto != "--http1.1"), out


# --- progress 104 while a body streams (draft -12, interop 9) -------------------------------


def chunked_append_headers(offset):
    """Headers of an interop 9 append at `offset` whose body streams chunked, open-ended."""
    return draft_headers(9, False, {"Upload-Offset": str(offset), "Content-Type": PARTIAL,
                                    "Transfer-Encoding": "chunked"})


def slow_chunked_body(c, method, until, seconds=30, piece=16384):
    """Sends chunks of a chunked body on RawConn `c`, each after the server said nothing
    for a moment, collecting the interim responses; stops once until(list of (time,
    response)) is true (AssertionError after `seconds`). Returns (list, bytes sent)."""
    import os
    import select
    import time
    got, sent = [], b""
    end = time.monotonic() + seconds
    while not until(got):
        assert time.monotonic() < end, got
        data = os.urandom(piece)
        c.send(b"%x\r\n" % len(data) + data + b"\r\n")
        sent += data
        readable, _, _ = select.select([c.sock], [], [], 0.05)
        while readable or c.buf:
            r = c.read_response(method)
            assert 100 <= r.status < 200, r
            got.append((time.monotonic(), r))
            readable, _, _ = select.select([c.sock], [], [], 0)
    return got, sent


def assert_progress(interim, sent_len, version="9"):
    """Progress 104s: the interop version, no Location, offsets growing and never past
    what was sent, at least ~a second apart."""
    offsets = []
    for i, (t, r) in enumerate(interim):
        assert r.status == 104, r
        assert r.header("Upload-Draft-Interop-Version") == version, r
        assert not r.has("Location"), r
        offsets.append(int(r.header("Upload-Offset")))
        if i > 0:
            assert t - interim[i - 1][0] > 0.5, interim  # the server: >= 1 s of loop time
    assert offsets == sorted(set(offsets)) and 0 < offsets[0] and offsets[-1] <= sent_len, offsets
    return offsets


def test_progress_104_during_append_9(draft_server):
    """-12 "Upload Append": while the content is processed the server SHOULD send 104
    with the current offset (and no Location). tusc sends one at most each second when
    bytes arrived, with an offset it has made durable (the draft: an Upload-Offset in a
    response is a guarantee that those bytes never need to be sent again), so offset
    retrieval already reports it."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    hs = chunked_append_headers(0)
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b""))
        interim, sent = slow_chunked_body(c, "PATCH", lambda got: len(got) >= 2)
        offsets = assert_progress(interim, len(sent))
        h = d.head(up)  # (not during a real client's append; here to see the offset)
        assert int(h.header("Upload-Offset")) >= offsets[-1], (h, offsets)
        c.send(b"0\r\n\r\n")
        r, more = c.read_final_response("PATCH")
    assert r.status == 204 and r.header("Upload-Offset") == str(len(sent)), r
    assert all(i.status == 104 for i in more), more
    assert draft_server.download(up).body == sent


def test_progress_104_during_creation_9(draft_server):
    """A creation with content: first the 104 that names the upload (Location), then
    progress 104s with Upload-Offset only (-12 "Upload Creation": MAY)."""
    hs = draft_headers(9, False, {"Transfer-Encoding": "chunked"})
    with draft_server.raw() as c:
        c.send(build_request("POST", "/files/", hs, b""))
        interim, sent = slow_chunked_body(c, "POST", lambda got: len(got) >= 3)
        first = interim[0][1]
        assert first.status == 104 and first.has("Location") and not first.has("Upload-Offset")
        assert_progress(interim[1:], len(sent))
        c.send(b"0\r\n\r\n")
        r, _ = c.read_final_response("POST")
    assert r.status == 201 and r.header("Location") == first.header("Location"), r
    assert draft_server.download(path_of(r.header("Location"))).body == sent


@pytest.mark.parametrize("case", ["interop 8", "digest", "tus"])
def test_no_progress_104(draft_server, case):
    """No progress 104 to clients of interop 3-8 (tusc's choice: only -12 clients get
    them), to tus clients, nor for a digested body (its bytes count only once the digest
    matched at the end)."""
    import time
    version = 8 if case == "interop 8" else 9
    d = Draft(draft_server, version)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    extra = {"Upload-Offset": "0", "Content-Type": PARTIAL, "Transfer-Encoding": "chunked"}
    if case == "digest":
        extra["Content-Digest"] = content_digest(b"not what is sent")
    hs = draft_headers(version, False, extra)
    if case == "tus":
        hs = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET),
              ("Transfer-Encoding", "chunked")]
    start = time.monotonic()
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b""))
        # Long enough for two progress 104s to an interop 9 client.
        interim, sent = slow_chunked_body(c, "PATCH",
                                          lambda got: time.monotonic() - start > 2.5)
        c.send(b"0\r\n\r\n")
        r, more = c.read_final_response("PATCH")
    assert not interim and not more, (interim, more)
    if case == "digest":
        assert r.status == 400 and d.head(up).header("Upload-Offset") == "0", r
    else:
        assert r.status == 204 and r.header("Upload-Offset") == str(len(sent)), r


@pytest.mark.skipif(__import__("shutil").which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("proto", ["--http1.1", "--http2-prior-knowledge"])
def test_progress_104_with_curl(tusc, tmp_path, proto):
    """curl (rate-limited to make the body last ~3 s) shows the progress 104s and takes
    the final answer after them, over HTTP/1.1 and HTTP/2."""
    import os
    import re
    import subprocess
    srv = tusc("-enable-experimental-protocol", "-enable-h2c")
    d = Draft(srv, 9)
    data = os.urandom(3 * 1000 * 1000)
    f = tmp_path / "data"
    f.write_bytes(data)
    final, _ = d.create(b"", complete=False, extra={"Upload-Length": str(len(data))})
    up = path_of(final.header("Location"))
    p = subprocess.run(
        ["curl", "-sS", "-i", proto, "--limit-rate", "1000K", "-X", "PATCH",
         "-H", "Upload-Draft-Interop-Version: 9", "-H", "Upload-Complete: ?1",
         "-H", "Upload-Offset: 0", "-H", f"Content-Type: {PARTIAL}", "--data-binary", f"@{f}",
         f"http://{srv.host}:{srv.port}{up}"], capture_output=True, timeout=120)
    out = p.stdout.decode("latin-1")
    assert p.returncode == 0, p.stderr
    heads = [h for h in re.split(r"\r\n\r\n", out) if h.strip()]
    statuses = [int(h.split()[1]) for h in heads]
    assert statuses[-1] == 204 and statuses.count(104) >= 1, out
    assert all(s in (100, 104) for s in statuses[:-1]), statuses
    offsets = [int(m) for m in re.findall(r"(?im)^upload-offset: (\d+)\r?$", out)]
    assert offsets == sorted(offsets) and offsets[-1] == len(data), offsets
    assert srv.download(up).body == data


def test_h2_progress_104_9(h2_draft_server):
    """HTTP/2: progress 104s are interim HEADERS on the append's stream."""
    import os
    from test_h2 import DATA, END_STREAM, HEADERS, RawH2, frame, frame_within
    import time
    srv = h2_draft_server
    d = Draft(srv, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    raw = RawH2(srv)
    sent = []
    try:
        raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
            9, False, [("upload-offset", "0"), ("content-type", PARTIAL)]), tus=False))

        def more():
            data = os.urandom(16384)
            sent.append(data)
            raw.send(frame(DATA, 0, 1, data))
        got = []
        for _ in range(2):
            f = frame_within(raw, lambda f: f[0] == HEADERS and f[2] == 1, 30, between=more)
            assert f is not None and f[4][":status"] == "104", f
            assert f[4]["upload-draft-interop-version"] == "9" and "location" not in f[4], f
            got.append((time.monotonic(), int(f[4]["upload-offset"])))
        assert 0 < got[0][1] < got[1][1] <= len(b"".join(sent)), got
        assert got[1][0] - got[0][0] > 0.5, got
        assert int(d.head(up).header("Upload-Offset")) >= got[1][1]
        raw.send(frame(DATA, END_STREAM, 1, b""))
        interim, r = h2_answer(raw, 1)
        assert r[":status"] == "204" and r["upload-offset"] == str(len(b"".join(sent))), r
    finally:
        raw.close()
    assert srv.download(up).body == b"".join(sent)


def test_progress_104_then_interrupted_9(draft_server):
    """After a progress 104 the client breaks off (or a new append takes the upload
    over): every acknowledged byte is kept, and the upload resumes from the offset
    retrieval, which is never behind the last 104."""
    d = Draft(draft_server, 9)
    final, _ = d.create(b"", complete=False)
    up = path_of(final.header("Location"))
    hs = chunked_append_headers(0)
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b""))
        interim, sent = slow_chunked_body(c, "PATCH", lambda got: len(got) >= 1)
    acked = assert_progress(interim, len(sent))[-1]
    h = deadline_poll(lambda: (lambda r: r if "aborted=true" in draft_server.all_stderr()
                               else None)(d.head(up)), 15, what="the broken-off append's end")
    offset = int(h.header("Upload-Offset"))
    assert acked <= offset <= len(sent), (acked, offset)
    assert draft_server.download(up).body == sent[:offset]
    # A new append takes over one that is still sending (the draft's concurrency rule).
    hs = chunked_append_headers(offset)
    with draft_server.raw() as c:
        c.send(build_request("PATCH", up, hs, b""))
        interim, more = slow_chunked_body(c, "PATCH", lambda got: len(got) >= 1)
        acked = int(interim[-1][1].header("Upload-Offset"))  # counts from the upload's start
        assert offset < acked <= offset + len(more), (offset, acked)
        r = d.append(up, acked, b"", complete=False)  # takes the lock over
        assert r.status in (204, 409), r
        r2, _ = c.read_final_response("PATCH")
        assert r2.status == 400 and "ERR_UPLOAD_INTERRUPTED" in r2.text, r2
    h = d.head(up)
    final_offset = int(h.header("Upload-Offset"))
    assert acked <= final_offset <= offset + len(more), (acked, final_offset)
    r = d.append(up, final_offset, b"end", complete=True)
    assert r.status == 204 and is_complete(r, 9), r
    assert draft_server.download(up).body == (sent[:offset] + more)[:final_offset] + b"end"


# --- Repr-Digest (draft -04 on: interop 6+; -12 "Representation Digests") ----------------


def repr_digest(data, algo="sha-256"):
    return content_digest(data, algo)


@pytest.mark.parametrize("algo", ["sha-256", "sha-512"])
def test_repr_digest_checked_at_completion(draft_server, algo):
    """A creation's Repr-Digest is the digest of the whole representation: once an append
    completes the upload, the server checks it. A match completes as usual; the
    expectation is kept in the upload's info ("tusc":{"ReprDigest":...})."""
    d = Draft(draft_server, 9)
    data = bytes(range(256)) * 1000
    final, _ = d.create(data[:100000], complete=False,
                        extra={"Upload-Length": str(len(data)), "Repr-Digest": repr_digest(data, algo)})
    assert final.status == 201, final
    up = path_of(final.header("Location"))
    infos = list(draft_server.upload_dir.rglob("*.info"))
    assert len(infos) == 1
    assert json.loads(infos[0].read_text())["tusc"]["ReprDigest"] == repr_digest(data, algo)
    r = d.append(up, 100000, data[100000:], complete=True)
    assert r.status == 204 and is_complete(r, 9), r
    assert draft_server.download(up).body == data
    # Checked: the expectation is gone from the info (present = not checked yet).
    assert "ReprDigest" not in json.loads(infos[0].read_text())["tusc"]


def test_repr_digest_unchecked_complete_upload_checked_later(tusc):
    """A complete upload whose info still holds a Repr-Digest was never checked (a crash
    between its last byte and the check): the next append to it checks it first."""
    srv = tusc("-enable-experimental-protocol")
    d = Draft(srv, 9)
    final, _ = d.create(b"abcd", complete=True)
    up = path_of(final.header("Location"))
    (info,) = srv.upload_dir.rglob("*.info")
    srv.stop()
    doc = json.loads(info.read_text())
    doc["tusc"]["ReprDigest"] = repr_digest(b"abcX")  # as if the crash came before the check
    info.write_text(json.dumps(doc))
    srv.start()
    r = d.append(up, 4, b"", complete=True)  # -12: a valid append to a completed upload
    assert r.status == 400 and "ERR_REPR_DIGEST_MISMATCH" in r.text, r
    assert d.head(up).status in (404, 410)


@pytest.mark.parametrize("version", [6, 9])
def test_repr_digest_mismatch_deletes_the_upload(draft_server, version):
    """-12: if the digests don't match the server SHOULD consider the upload failed, not
    process it further and signal the failure: tusc deletes it and answers 400
    ERR_REPR_DIGEST_MISMATCH (interop 9: with Upload-Complete: ?1, the result of
    processing the representation: resuming would not help)."""
    d = Draft(draft_server, version)
    final, _ = d.create(b"01234", complete=False,
                        extra={"Upload-Length": "10", "Repr-Digest": repr_digest(b"0123456789")})
    up = path_of(final.header("Location"))
    r = d.append(up, 5, b"5678X", complete=True)
    assert r.status == 400 and "ERR_REPR_DIGEST_MISMATCH" in r.text, r
    if version >= 9:
        assert r.header("Upload-Complete") == "?1", r
    assert d.head(up).status in (404, 410)
    assert "event=UploadReprDigestMismatch" in draft_server.all_stderr()
    assert "event=UploadTerminated" in draft_server.all_stderr()


def test_repr_digest_checked_whoever_completes(tusc):
    """The expectation belongs to the upload: a tus PATCH that completes it, after a
    restart, is checked too; a creation that carries the whole representation as well."""
    srv = tusc("-enable-experimental-protocol")
    d = Draft(srv, 9)
    final, _ = d.create(b"abc", complete=False,
                        extra={"Upload-Length": "6", "Repr-Digest": repr_digest(b"abcdef", "sha-512")})
    up = path_of(final.header("Location"))
    srv.stop()
    srv.start()
    r = srv.request("PATCH", up, {"Upload-Offset": "3", "Content-Type": OCTET}, b"abcxyz"[3:])
    assert r.status == 400 and r.error_code() == "ERR_REPR_DIGEST_MISMATCH", r
    assert srv.request("HEAD", up).status in (404, 410)
    # Whole representation in the creation: checked before the 201.
    final, interim = d.create(b"hello", complete=True, extra={"Repr-Digest": repr_digest(b"hellO")})
    assert final.status == 400 and "ERR_REPR_DIGEST_MISMATCH" in final.text, final
    assert d.head(path_of(interim[0].header("Location"))).status in (404, 410)
    final, _ = d.create(b"hello", complete=True, extra={"Repr-Digest": repr_digest(b"hello")})
    assert final.status == 201 and is_complete(final, 9), final


def test_repr_digest_refused_or_ignored(draft_server):
    """A malformed Repr-Digest → 400 before anything is created; an empty representation
    is checked at once; only other algorithms → nothing to check; interop 3-5 ignore
    the field."""
    d = Draft(draft_server, 9)
    final, interim = d.create(b"", complete=False, extra={"Repr-Digest": "sha-256=:AAAA:"})
    assert final.status == 400 and "invalid Repr-Digest" in final.text and not interim, final
    final, interim = d.create(b"", complete=True, extra={"Repr-Digest": repr_digest(b"x")})
    assert final.status == 400 and "ERR_REPR_DIGEST_MISMATCH" in final.text and not interim
    final, _ = d.create(b"", complete=True, extra={"Repr-Digest": repr_digest(b"")})
    assert final.status == 201, final
    final, _ = d.create(b"abc", complete=True, extra={"Repr-Digest": repr_digest(b"x", "md5")})
    assert final.status == 201, final
    final, _ = Draft(draft_server, 5).create(b"abc", complete=True,
                                             extra={"Repr-Digest": repr_digest(b"x")})
    assert final.status == 201, final


def test_h2_repr_digest_9(h2_draft_server):
    """HTTP/2: the stream that completes the upload gets the verdict."""
    from test_h2 import DATA, END_STREAM, RawH2, frame
    srv = h2_draft_server
    d = Draft(srv, 9)
    for body, want in ((b"world", "204"), (b"wOrld", "400")):
        final, _ = d.create(b"hello ", complete=False,
                            extra={"Repr-Digest": repr_digest(b"hello world")})
        up = path_of(final.header("Location"))
        raw = RawH2(srv)
        try:
            raw.send(raw.request_headers(1, "PATCH", up, h2_draft_headers(
                9, True, [("upload-offset", "6"), ("content-type", PARTIAL),
                          ("content-length", "5")]), tus=False) + frame(DATA, END_STREAM, 1, body))
            _, r = h2_answer(raw, 1)
            assert r[":status"] == want and r["upload-complete"] == "?1", r
        finally:
            raw.close()
        if want == "204":
            assert srv.download(up).body == b"hello world"
        else:
            assert d.head(up).status in (404, 410)


def test_repr_digest_mismatch_runs_no_finish_hooks(tusc, tmp_path, monkeypatch):
    """A representation that fails its Repr-Digest is not processed further: no
    pre-finish / post-finish, the upload is terminated (post-terminate). A matching one
    gets its finish hooks as usual."""
    from test_hooks import HOOKS_DIR, HookLog
    d_log = tmp_path / "hooklog"
    d_log.mkdir()
    monkeypatch.setenv("HOOK_LOG", str(d_log))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    hooklog = HookLog(d_log)
    srv = tusc("-enable-experimental-protocol", "-hooks-dir", str(HOOKS_DIR),
               "-hooks-enabled-events=")
    d = Draft(srv, 9)
    named = {"Upload-Length": "4", "Repr-Digest": repr_digest(b"abcd"),
             "Content-Disposition": 'inline; filename="x.bin"'}  # the pre-create hook wants one
    final, _ = d.create(b"ab", complete=False, extra=named)
    assert final.status == 201, final
    bad = path_of(final.header("Location"))
    r = d.append(bad, 2, b"cX", complete=True)
    assert r.status == 400 and "ERR_REPR_DIGEST_MISMATCH" in r.text, r
    hooklog.wait("post-terminate")
    assert hooklog.entries("pre-finish") == [] and hooklog.entries("post-finish") == []
    final, _ = d.create(b"ab", complete=False, extra=named)
    good = path_of(final.header("Location"))
    r = d.append(good, 2, b"cd", complete=True)
    assert r.status == 204 and is_complete(r, 9), r
    (fin,) = hooklog.wait("post-finish")
    assert len(hooklog.entries("pre-finish")) == 1
