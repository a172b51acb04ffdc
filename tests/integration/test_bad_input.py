"""The bad-input table: malformed and hostile requests, one row each, against one
long-lived server (so damage from one row would show in the next).

For every row: snapshot the upload dir (every file's path, size and mtime), send the
exact bytes on a fresh connection, check the status (a set: several answers are
correct for some rows), check the dir is unchanged, then check the server still
takes a normal upload. The server must also end with exit 0 and no sanitizer report.

Adding a row: append to CASES (id, request bytes, allowed statuses). `None` in the
allowed set means "closed without a response" is acceptable. `{U}` in the bytes is the
path of a fresh partial upload made for the row (100 bytes declared, 10 stored). An
optional 4th element is the bytes the row may legitimately add to that upload (a body
that breaks off keeps what arrived intact before the break, as any interrupted PATCH).
"""
import os
import urllib.parse

import pytest

from conftest import OCTET, ConnectionClosed, TuscServer, b64

T = "Tus-Resumable: 1.0.0\r\n"
H = "Host: 127.0.0.1\r\n"
PATCH_HS = T + "Content-Type: application/offset+octet-stream\r\n"


def req(method, target, headers="", body=b"", host=True, version="HTTP/1.1"):
    head = f"{method} {target} {version}\r\n" + (H if host else "") + headers + "\r\n"
    return head.encode("latin-1") + body


def post(headers, body=b""):
    return req("POST", "/files/", T + headers, body)


def patch(target, headers, body=b""):
    return req("PATCH", target, PATCH_HS + headers, body)


BIG = "9" * 30
I64_OVER = "9223372036854775808"

CASES = [
    # --- request line -------------------------------------------------------------
    ("line-method-only", b"GET\r\n\r\n", {400}),
    ("line-extra-token", b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", {400}),
    ("line-double-space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", {400, 200}),  # RFC 9112 §3: MAY parse leniently
    ("line-http2", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", {400, 505}),
    ("line-http3", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", {400, 505}),
    ("line-http09", b"GET /\r\n\r\n", {400, 505}),
    ("line-bad-proto", b"GET / FOO/1.1\r\nHost: a\r\n\r\n", {400}),
    ("line-lowercase-method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", {400, 405, 501}),
    ("line-unknown-method", b"BREW /files/ HTTP/1.1\r\nHost: a\r\n\r\n", {400, 405, 501}),
    ("line-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    ("line-space-in-target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("line-ctl-in-target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("line-nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("line-nul-in-method", b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("line-high-byte-target", b"HEAD /files/\xff\xfe HTTP/1.1\r\nHost: a\r\n" + T.encode() + b"\r\n",
     {400, 404}),
    ("line-huge-target", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", {400, 414, 431}),
    ("line-bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", {400}),
    ("line-bare-cr", b"GET / HTTP/1.1\rHost: a\r\r", {400}),
    ("line-trace", req("TRACE", "/files/"), {400, 405, 412, 501}),  # 412: tusd checks the version first
    ("line-connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", {400, 405, 501}),
    ("line-star-get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", {400, 404}),
    ("line-truncated-eof", b"PATCH /files/x HTT", {None, 400}),
    # --- header syntax --------------------------------------------------------------
    ("hdr-no-colon", b"GET / HTTP/1.1\r\nHost a\r\n\r\n", {400}),
    ("hdr-space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", {400}),
    ("hdr-empty-name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", {400}),
    ("hdr-bad-name-char", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", {400}),
    ("hdr-obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", {400}),
    ("hdr-obs-fold-tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", {400}),
    ("hdr-leading-space-first", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", {400}),
    ("hdr-bare-lf-one", b"GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", {400}),
    ("hdr-nul-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", {400}),
    ("hdr-nul-in-name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: 1\r\n\r\n", {400}),
    ("hdr-cr-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", {400}),
    ("hdr-del-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", {400}),
    ("hdr-too-many", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300))
     + b"\r\n", {431}),
    ("hdr-too-big", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n", {431}),
    ("hdr-no-host-11", b"OPTIONS /files/ HTTP/1.1\r\nX-A: 1\r\n\r\n", {400, 200}),
    ("hdr-two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("hdr-host-slash", b"POST /files/ HTTP/1.1\r\nHost: a/b\r\n" + T.encode()
     + b"Upload-Length: 1\r\nContent-Length: 0\r\n\r\n", {400}),
    ("hdr-host-at", b"POST /files/ HTTP/1.1\r\nHost: evil@a\r\n" + T.encode()
     + b"Upload-Length: 1\r\nContent-Length: 0\r\n\r\n", {400}),
    ("hdr-host-bad-port", b"POST /files/ HTTP/1.1\r\nHost: a:99999\r\n" + T.encode()
     + b"Upload-Length: 1\r\nContent-Length: 0\r\n\r\n", {400}),
    # --- framing and smuggling ------------------------------------------------------
    ("smuggle-cl-te", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 5\r\n"
                            "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), {400}),
    ("smuggle-te-cl", patch("{U}", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                            "Upload-Offset: 10\r\n", b"0\r\n\r\n"), {400}),
    ("smuggle-dup-cl-same", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 1\r\n"
                                  "Content-Length: 1\r\n", b"a"), {400}),
    ("smuggle-dup-cl-diff", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 1\r\n"
                                  "Content-Length: 2\r\n", b"ab"), {400}),
    ("smuggle-cl-list", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 1, 1\r\n", b"a"), {400}),
    ("cl-negative", patch("{U}", "Upload-Offset: 10\r\nContent-Length: -1\r\n"), {400}),
    ("cl-plus", patch("{U}", "Upload-Offset: 10\r\nContent-Length: +1\r\n", b"a"), {400}),
    ("cl-hex", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 0x1\r\n", b"a"), {400}),
    ("cl-inner-space", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 1 0\r\n", b"a"), {400}),
    ("cl-empty", patch("{U}", "Upload-Offset: 10\r\nContent-Length: \r\n"), {400}),
    ("cl-overflow", patch("{U}", f"Upload-Offset: 10\r\nContent-Length: {BIG}\r\n"), {400, 413}),
    ("te-gzip", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: gzip\r\n"), {400, 501}),
    ("te-chunked-twice", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked, chunked\r\n",
                               b"0\r\n\r\n"), {400, 501}),
    ("te-chunked-not-last", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked, gzip\r\n",
                                  b"0\r\n\r\n"), {400, 501}),
    ("te-xchunked", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: xchunked\r\n",
                          b"0\r\n\r\n"), {400, 501}),
    ("te-http10", req("PATCH", "{U}", PATCH_HS + "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                      b"1\r\na\r\n0\r\n\r\n", version="HTTP/1.0"), {400}),
    ("chunk-size-huge", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                              b"fffffffffffffffffff\r\na\r\n0\r\n\r\n"), {400, 413}),
    ("chunk-size-negative", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                                  b"-1\r\na\r\n0\r\n\r\n"), {400}),
    ("chunk-size-not-hex", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                                 b"zz\r\na\r\n0\r\n\r\n"), {400}),
    ("chunk-bare-lf", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                            b"1\na\r\n0\r\n\r\n"), {400}),
    # The first chunk's byte is well framed and arrives before the bad CRLF: like
    # any interrupted body, what arrived intact is kept (and only that).
    ("chunk-data-overrun", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                                 b"1\r\nabc\r\n0\r\n\r\n"), {400}, b"a"),
    ("chunk-ext-nul", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                            b"1;a=\x00\r\na\r\n0\r\n\r\n"), {400}),
    ("chunk-trailer-fold", patch("{U}", "Upload-Offset: 10\r\nTransfer-Encoding: chunked\r\n",
                                 b"0\r\nX-T: 1\r\n continued\r\n\r\n"), {400}),
    # --- tus headers and numbers ----------------------------------------------------
    ("tus-no-version", req("POST", "/files/", "Upload-Length: 5\r\nContent-Length: 0\r\n"), {412}),
    ("tus-old-version", req("POST", "/files/", "Tus-Resumable: 0.2.2\r\nUpload-Length: 5\r\n"
                            "Content-Length: 0\r\n"), {412}),
    ("len-negative", post("Upload-Length: -1\r\nContent-Length: 0\r\n"), {400}),
    ("len-float", post("Upload-Length: 1e3\r\nContent-Length: 0\r\n"), {400}),
    ("len-overflow", post(f"Upload-Length: {I64_OVER}\r\nContent-Length: 0\r\n"), {400, 413}),
    ("len-huge", post(f"Upload-Length: {BIG}\r\nContent-Length: 0\r\n"), {400, 413}),
    ("len-space-inside", post("Upload-Length: 1 0\r\nContent-Length: 0\r\n"), {400}),
    ("len-and-defer", post("Upload-Length: 5\r\nUpload-Defer-Length: 1\r\nContent-Length: 0\r\n"), {400}),
    ("defer-2", post("Upload-Defer-Length: 2\r\nContent-Length: 0\r\n"), {400}),
    ("len-missing", post("Content-Length: 0\r\n"), {400}),
    ("len-over-max", post("Upload-Length: 2000000\r\nContent-Length: 0\r\n"), {413}),
    ("len-conflicting-dup", post("Upload-Length: 5\r\nUpload-Length: 6\r\nContent-Length: 0\r\n"), {400}),
    ("post-body-over-length", post("Upload-Length: 2\r\nContent-Type: application/offset+octet-stream\r\n"
                                   "Content-Length: 5\r\n", b"abcde"), {413, 400}),
    ("md-bad-base64", post("Upload-Length: 1\r\nUpload-Metadata: k !!!!\r\nContent-Length: 0\r\n"), {400}),
    ("md-no-padding", post("Upload-Length: 1\r\nUpload-Metadata: k YQ\r\nContent-Length: 0\r\n"), {400}),
    ("md-dup-key", post("Upload-Length: 1\r\nUpload-Metadata: k YQ==,k Yg==\r\nContent-Length: 0\r\n"),
     {400}),
    ("md-non-ascii-key", post("Upload-Length: 1\r\nUpload-Metadata: \xe9 YQ==\r\nContent-Length: 0\r\n"),
     {400}),
    ("md-two-spaces", post("Upload-Length: 1\r\nUpload-Metadata: k  YQ==\r\nContent-Length: 0\r\n"),
     {400}),
    ("md-empty-key", post("Upload-Length: 1\r\nUpload-Metadata:  YQ==,\r\nContent-Length: 0\r\n"), {400}),
    ("off-missing", patch("{U}", "Content-Length: 1\r\n", b"a"), {400}),
    ("off-negative", patch("{U}", "Upload-Offset: -10\r\nContent-Length: 1\r\n", b"a"), {400}),
    ("off-overflow", patch("{U}", f"Upload-Offset: {I64_OVER}\r\nContent-Length: 1\r\n", b"a"), {400, 409}),
    ("off-hex", patch("{U}", "Upload-Offset: 0xa\r\nContent-Length: 1\r\n", b"a"), {400}),
    ("off-mismatch", patch("{U}", "Upload-Offset: 0\r\nContent-Length: 1\r\n", b"a"), {409}),
    ("off-ahead", patch("{U}", "Upload-Offset: 50\r\nContent-Length: 1\r\n", b"a"), {409}),
    ("off-dup-conflict", patch("{U}", "Upload-Offset: 10\r\nUpload-Offset: 11\r\nContent-Length: 1\r\n",
                               b"a"), {400}),
    ("patch-wrong-type", req("PATCH", "{U}", T + "Upload-Offset: 10\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 1\r\n", b"a"), {415}),
    ("patch-no-type", req("PATCH", "{U}", T + "Upload-Offset: 10\r\nContent-Length: 1\r\n", b"a"), {415}),
    ("patch-over-length", patch("{U}", "Upload-Offset: 10\r\nContent-Length: 91\r\n", b"a" * 91),
     {400, 413}),
    ("patch-length-change", patch("{U}", "Upload-Offset: 10\r\nUpload-Length: 200\r\nContent-Length: 0\r\n"),
     {400}),
    ("patch-unknown", patch("/files/0123456789abcdef0123456789abcdef", "Upload-Offset: 0\r\n"
                            "Content-Length: 1\r\n", b"a"), {404}),
    # RFC 9110 §10.1.1: a server MAY answer 417 to an unknown expectation, or ignore it
    ("expect-unknown", patch("{U}", "Upload-Offset: 10\r\nExpect: 200-ok\r\nContent-Length: 1\r\n", b"a"),
     {417, 204}, b"a"),
    ("override-trace", req("POST", "{U}", T + "X-HTTP-Method-Override: TRACE\r\nContent-Length: 0\r\n"),
     {400, 405, 412, 501}),
    # --- paths and traversal --------------------------------------------------------
    ("path-dotdot", patch("/files/../../etc/passwd", "Upload-Offset: 0\r\nContent-Length: 1\r\n", b"a"),
     {400, 404}),
    ("path-enc-dotdot", req("HEAD", "/files/%2e%2e/%2e%2e/etc/passwd", T), {400, 404}),
    ("path-enc-slash", req("GET", "/files/..%2f..%2fetc%2fpasswd"), {400, 404}),
    ("path-enc-nul", req("HEAD", "/files/abc%00def", T), {400, 404}),
    ("path-backslash", req("HEAD", "/files/..\\..\\etc\\passwd", T), {400, 404}),
    ("path-bad-escape", req("HEAD", "/files/%zz", T), {400, 404}),
    ("path-long-id", req("HEAD", "/files/" + "a" * 300, T), {400, 404}),
    ("path-info-suffix", req("GET", "{U}.info"), {400, 404}),
    ("path-lock-suffix", req("DELETE", "{U}.lock", T), {400, 404}),
    ("path-dot-segment", req("DELETE", "/files/./x", T), {400, 404}),
    ("path-outside-base", req("POST", "/etc/", T + "Upload-Length: 1\r\nContent-Length: 0\r\n"),
     {400, 404, 405}),
    ("delete-traversal", req("DELETE", "/files/..%2f..%2ftmp", T), {400, 404}),
    # --- concatenation URLs ---------------------------------------------------------
    ("concat-garbage", post("Upload-Concat: whatever\r\nContent-Length: 0\r\n"), {400}),
    ("concat-final-empty", post("Upload-Concat: final;\r\nContent-Length: 0\r\n"), {400}),
    ("concat-final-traversal", post("Upload-Concat: final;/files/../../etc/passwd\r\nContent-Length: 0\r\n"),
     {400, 404}),
    ("concat-final-other-base", post("Upload-Concat: final;http://evil.example/other/abc\r\n"
                                     "Content-Length: 0\r\n"), {400, 404}),
    ("concat-final-unknown", post("Upload-Concat: final;/files/0123456789abcdef0123456789abcdef\r\n"
                                  "Content-Length: 0\r\n"), {400, 404}),
    ("concat-final-not-partial", post("Upload-Concat: final;{U}\r\nContent-Length: 0\r\n"), {400}),
    ("concat-final-with-length", post("Upload-Concat: final;{U}\r\nUpload-Length: 5\r\n"
                                      "Content-Length: 0\r\n"), {400}),
    ("concat-final-query", post("Upload-Concat: final;{U}?x=1\r\nContent-Length: 0\r\n"), {400, 404}),
    ("concat-partial-junk", post("Upload-Concat: partial;x\r\nUpload-Length: 1\r\nContent-Length: 0\r\n"),
     {400}),
    # --- checksums (the extension answers 400; without it the header is ignored...) --
    ("checksum-bad-algo", patch("{U}", "Upload-Offset: 10\r\nUpload-Checksum: rot13 YQ==\r\n"
                                "Content-Length: 1\r\n", b"a"), {400}),
    ("checksum-bad-b64", patch("{U}", "Upload-Offset: 10\r\nUpload-Checksum: sha1 !!!\r\n"
                               "Content-Length: 1\r\n", b"a"), {400}),
    ("checksum-mismatch", patch("{U}", "Upload-Offset: 10\r\nUpload-Checksum: sha1 "
                                + b64(b"\0" * 20) + "\r\nContent-Length: 1\r\n", b"a"), {460}),
]

# Rows whose client half-closes after sending (a request cut off by the client).
EOF_ROWS = {"line-truncated-eof"}

# Rows whose answer depends on an extension another part of the server adds; until
# it exists the request is a normal PATCH that stores a byte.
CHECKSUM_ROWS = {"checksum-bad-algo", "checksum-bad-b64", "checksum-mismatch"}


def snapshot(root):
    """Every file (not directories: their mtimes move with transient lock files) with
    size and mtime; lock files only by name, since a lock is taken even to refuse."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out[rel] = (st.st_size, st.st_mtime_ns) if not f.endswith(".lock") else "lock"
    return out


@pytest.fixture(scope="module")
def bad_server(tmp_path_factory):
    wd = tmp_path_factory.mktemp("bad-input")
    srv = TuscServer(wd, ["-max-size", "1000000"], name="bad")
    srv.start()
    yield srv
    rc = srv.stop()
    reports = srv.sanitizer_reports()
    assert rc == 0 and not reports, f"exit {rc}, sanitizer: {reports}\n{srv.all_stderr()[-20000:]}"


def has_checksum(srv):
    r = srv.request("OPTIONS", "/files/")
    return "checksum" in (r.header("Tus-Extension") or "")


def send_raw(srv, data, method, half_close=False):
    with srv.raw(timeout=20) as c:
        try:
            c.send(data)
            if half_close:
                c.shutdown_write()
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send; the answer (if any) is still readable
        try:
            r, _ = c.read_final_response(method)
            return r
        except ConnectionClosed:
            return None


def normal_upload_works(srv):
    body = os.urandom(64)
    path = srv.create(length=len(body), body=body)
    r = srv.head(path)
    assert r.status == 200 and r.header("Upload-Offset") == str(len(body)), r
    assert srv.download(path).body == body


def test_table_is_big_enough():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES), "duplicate ids"


ROWS = [(c[0], c[1], c[2], c[3] if len(c) > 3 else b"") for c in CASES]


@pytest.mark.parametrize("name,data,allowed,may_store", ROWS, ids=[c[0] for c in CASES])
def test_bad_input(bad_server, name, data, allowed, may_store):
    srv = bad_server
    if name in CHECKSUM_ROWS and not has_checksum(srv):
        pytest.skip("checksum extension not in this build")
    up = srv.create(length=100)
    r = srv.patch(up, 0, b"0123456789")
    assert r.status == 204, r
    data = data.replace(b"{U}", up.encode())
    method = data.split(b" ", 1)[0].decode("latin-1", "replace")
    before = snapshot(srv.upload_dir)
    r = send_raw(srv, data, method, name in EOF_ROWS)
    status = r.status if r is not None else None
    assert status in allowed, f"{name}: got {r!r}, allowed {allowed}"
    if r is not None and status >= 400 and status not in (505,):
        # tusd-style error bodies for what reached the tus layer; the http layer's
        # own refusals are plain text too.
        assert (r.header("Content-Type") or "text/plain").startswith("text/plain"), r
    assert srv.running(), f"{name}: server died\n{srv.stderr()[-5000:]}"
    stored = srv.offset(up) - 10
    if may_store:
        assert stored in (0, len(may_store)), f"{name}: offset moved by {stored}"
    else:
        assert stored == 0, f"{name}: offset moved by {stored}"
    after = snapshot(srv.upload_dir)
    if stored:
        # only the upload's own data and info may differ, and only by the kept bytes
        data_rel = os.path.relpath(srv.data_file(up), srv.upload_dir)
        with open(srv.data_file(up), "rb") as f:
            assert f.read() == b"0123456789" + may_store
        for k in (data_rel, data_rel + ".info"):
            before.pop(k, None)
            after.pop(k, None)
    assert after == before, f"{name}: upload dir changed: " \
        f"{ {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)} }"
    normal_upload_works(srv)
