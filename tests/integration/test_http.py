"""The HTTP/1.1 layer: keep-alive, pipelining, 100-continue, chunked bodies, limits,
malformed requests — and the server keeps serving after each."""
import os
import urllib.parse

import pytest

from conftest import OCTET, build_request

TUS = [("Tus-Resumable", "1.0.0")]


def still_serving(srv):
    r = srv.request("OPTIONS", "/files/", tus=False)
    assert r.status == 200, r
    up = srv.create(length=1)
    assert srv.patch(up, 0, b"z").status == 204


def post(length, extra=()):
    return build_request("POST", "/files/", TUS + [("Upload-Length", str(length))] + list(extra))


def test_keep_alive_two_requests_one_socket(server):
    with server.raw() as c:
        c.send(post(3))
        r1 = c.read_response("POST")
        assert r1.status == 201, r1
        assert (r1.header("Connection") or "").lower() != "close", r1
        up = urllib.parse.urlsplit(r1.header("Location")).path
        c.send(build_request("PATCH", up, TUS + [("Upload-Offset", "0"),
                                                  ("Content-Type", OCTET)], b"abc"))
        r2 = c.read_response("PATCH")
        assert r2.status == 204, r2
        assert r2.header("Upload-Offset") == "3", r2
        c.send(build_request("HEAD", up, TUS))
        r3 = c.read_response("HEAD")
        assert r3.status == 200 and r3.header("Upload-Offset") == "3", r3


def test_http10_closes(server):
    with server.raw() as c:
        c.send(b"OPTIONS /files/ HTTP/1.0\r\n\r\n")
        r = c.read_response("OPTIONS")
        assert r.status == 200, r
        assert c.closed_by_peer(10), "HTTP/1.0 without keep-alive should be closed"


@pytest.mark.parametrize("raw", [b"OPTIONS /files/ HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"])
def test_request_without_any_header(server, raw):
    """No header lines at all (HTTP/1.1 without Host may be refused with 400)."""
    with server.raw() as c:
        c.send(raw)
        r = c.read_response(raw.split(b" ")[0].decode())
        assert r.status in (200, 400), r
    still_serving(server)


def test_connection_close_honoured(server):
    with server.raw() as c:
        c.send(build_request("OPTIONS", "/files/", [("Connection", "close")]))
        r = c.read_response("OPTIONS")
        assert r.status == 200, r
        assert c.closed_by_peer(10)


def test_pipelining_in_order(server):
    ups = [server.create(length=n) for n in (11, 22, 33)]
    req = b"".join(build_request("HEAD", u, TUS) for u in ups)
    with server.raw() as c:
        c.send(req)
        got = [c.read_response("HEAD") for _ in ups]
    assert [r.status for r in got] == [200, 200, 200], got
    assert [r.header("Upload-Length") for r in got] == ["11", "22", "33"], got


def test_pipelining_with_bodies(server):
    up = server.create(length=9)
    reqs = [
        build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET)], b"abc"),
        build_request("PATCH", up, TUS + [("Upload-Offset", "3"), ("Content-Type", OCTET)], b"def"),
        build_request("HEAD", up, TUS),
        build_request("PATCH", up, TUS + [("Upload-Offset", "6"), ("Content-Type", OCTET)], b"ghi"),
        build_request("GET", up, []),
    ]
    with server.raw() as c:
        c.send(b"".join(reqs))
        r = [c.read_response(m) for m in ("PATCH", "PATCH", "HEAD", "PATCH", "GET")]
    assert [x.status for x in r] == [204, 204, 200, 204, 200], r
    assert [x.header("Upload-Offset") for x in r[:4]] == ["3", "6", "6", "9"], r
    assert r[4].body == b"abcdefghi", r[4]


def test_pipelining_split_across_sends(server):
    ups = [server.create(length=n) for n in (1, 2)]
    data = b"".join(build_request("HEAD", u, TUS) for u in ups)
    with server.raw() as c:
        # Byte by byte, across request boundaries.
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
        got = [c.read_response("HEAD") for _ in ups]
    assert [r.header("Upload-Length") for r in got] == ["1", "2"], got


def test_expect_100_continue_patch(server):
    up = server.create(length=5)
    head = build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET),
                                             ("Expect", "100-continue"), ("Content-Length", "5")])
    with server.raw() as c:
        c.send(head)
        r = c.read_response("PATCH")
        assert r.status == 100, r
        c.send(b"hello")
        r = c.read_response("PATCH")
        assert r.status == 204, r
        assert r.header("Upload-Offset") == "5", r
        # The connection stays usable.
        c.send(build_request("HEAD", up, TUS))
        assert c.read_response("HEAD").header("Upload-Offset") == "5"
    assert server.download(up).body == b"hello"


def test_expect_100_continue_rejected_without_body(server):
    """A PATCH that will fail gets its final answer without the client sending the body."""
    up = server.create(length=5)
    head = build_request("PATCH", up, TUS + [("Upload-Offset", "3"), ("Content-Type", OCTET),
                                             ("Expect", "100-continue"), ("Content-Length", "5")])
    with server.raw() as c:
        c.send(head)
        r, interim = c.read_final_response("PATCH")
        assert r.status == 409, r
    assert server.offset(up) == 0
    still_serving(server)


def test_expect_100_continue_post_creation_with_upload(server):
    head = build_request("POST", "/files/", TUS + [("Upload-Length", "4"), ("Content-Type", OCTET),
                                                   ("Expect", "100-continue"),
                                                   ("Content-Length", "4")])
    with server.raw() as c:
        c.send(head)
        r = c.read_response("POST")
        assert r.status == 100, r
        c.send(b"wxyz")
        r = c.read_response("POST")
        assert r.status == 201, r
        assert r.header("Upload-Offset") == "4", r


@pytest.mark.parametrize("expect", ["something-else", "100-continue, foo=bar", "101-continue"])
def test_unsupported_expectation_417(server, expect):
    """RFC 9110 section 10.1.1: an expectation the server cannot meet is refused."""
    up = server.create(length=5)
    head = build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET),
                                             ("Expect", expect), ("Content-Length", "5")])
    with server.raw() as c:
        c.send(head + b"hello")
        r = c.read_response("PATCH")
        assert r.status == 417, r
        assert r.body.startswith(b"ERR_EXPECTATION_FAILED: "), r
        assert r.header("Connection") == "close", r
    assert server.offset(up) == 0
    still_serving(server)


def test_expect_100_continue_case_and_spaces_accepted(server):
    up = server.create(length=2)
    head = build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET),
                                             ("Expect", " 100-Continue "), ("Content-Length", "2")])
    with server.raw() as c:
        c.send(head)
        assert c.read_response("PATCH").status == 100
        c.send(b"ok")
        assert c.read_response("PATCH").status == 204


def chunked(pieces, trailers=()):
    out = b""
    for p in pieces:
        out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += f"{k}: {v}\r\n".encode()
    return out + b"\r\n"


@pytest.mark.parametrize("with_trailer", [False, True])
def test_chunked_patch(server, with_trailer):
    pieces = [os.urandom(n) for n in (1, 1000, 65536, 3, 200_000, 17)]
    data = b"".join(pieces)
    up = server.create(length=len(data))
    trailers = [("X-Trailer-Test", "yes")] if with_trailer else []
    hdrs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET),
                  ("Transfer-Encoding", "chunked")]
    if with_trailer:
        hdrs.append(("Trailer", "X-Trailer-Test"))
    with server.raw() as c:
        c.send(build_request("PATCH", up, hdrs) + chunked(pieces, trailers))
        r = c.read_response("PATCH")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(len(data)), r
    assert server.download(up).body == data


def test_chunked_patch_with_extensions_and_deferred_length(server):
    r = server.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    up = urllib.parse.urlsplit(r.header("Location")).path
    body = b"3;name=val\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    hdrs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET),
                  ("Transfer-Encoding", "chunked"), ("Upload-Length", "5")]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hdrs) + body)
        r = c.read_response("PATCH")
    assert r.status == 204, r
    assert server.download(up).body == b"abcde"


def test_chunked_patch_past_length(server):
    up = server.create(length=4)
    hdrs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked")]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hdrs) + chunked([b"abc", b"defgh"]))
        try:
            r = c.read_response("PATCH")
            assert r.status == 413, r
        except Exception as e:  # noqa: BLE001 — closing the connection is also allowed
            if "closed" not in str(e) and "reset" not in str(e):
                raise
    assert server.offset(up) <= 4
    still_serving(server)


# -- limits and malformed requests --------------------------------------------------------


def expect_status_or_close(srv, data, status):
    with srv.raw() as c:
        c.send(data)
        r = c.read_response()
        assert r.status == status, r
    still_serving(srv)
    return r


def test_oversize_headers_431(server):
    data = build_request("OPTIONS", "/files/", [("X-Big", "a" * (70 * 1024))])
    expect_status_or_close(server, data, 431)


def test_oversize_request_line_431_or_414(server):
    data = build_request("HEAD", "/files/" + "a" * (70 * 1024), TUS)
    with server.raw() as c:
        c.send(data)
        r = c.read_response("HEAD")
        assert r.status in (414, 431), r
    still_serving(server)


def test_many_small_headers_over_size_431(server):
    hs = [(f"X-H{i}", "v" * 1000) for i in range(90)]
    expect_status_or_close(server, build_request("OPTIONS", "/files/", hs), 431)


def test_too_many_headers_431(server):
    hs = [(f"X-H{i}", "1") for i in range(150)]
    expect_status_or_close(server, build_request("OPTIONS", "/files/", hs), 431)


def test_headers_just_under_limits_ok(server):
    hs = [(f"X-H{i}", "1") for i in range(50)] + [("X-Big", "a" * 8000)]
    r = expect_status_or_close(server, build_request("OPTIONS", "/files/", hs), 200)
    assert r.header("Tus-Version")


def test_content_length_and_transfer_encoding_400(server):
    up = server.create(length=10)
    hs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET), ("Content-Length", "3"),
                ("Transfer-Encoding", "chunked")]
    expect_status_or_close(server, build_request("PATCH", up, hs) + chunked([b"abc"]), 400)
    assert server.offset(up) == 0


@pytest.mark.parametrize("values", [("3", "4"), ("3", "3, 4"), ("3", "3")])
def test_duplicate_content_length_400(server, values):
    up = server.create(length=10)
    hs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET)] + [("Content-Length", v)
                                                                    for v in values]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hs) + b"abcd")
        r = c.read_response("PATCH")
    if values[0] != values[1]:
        assert r.status == 400, r
    else:
        # Identical duplicates may be folded (RFC 9112 6.3) or refused; never misread.
        assert r.status in (204, 400), r
    still_serving(server)
    assert server.offset(up) in (0, 3)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
    b"GET /files/ HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /files/ HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PATCH /files/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"PATCH /files/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /files/ HTTP/1.1\r\nHo st: x\r\n\r\n",
])
def test_malformed_requests_400(server, raw):
    with server.raw() as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 400 or (r.status == 505 and b"9.9" in raw), r
        assert c.closed_by_peer(10), "a malformed request should close the connection"
    still_serving(server)


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX\r\n0\r\n\r\n",
                                  b"-3\r\nabc\r\n0\r\n\r\n"])
def test_malformed_chunked_body(server, body):
    up = server.create(length=10)
    hs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked")]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hs) + body)
        try:
            r = c.read_response("PATCH")
            assert r.status == 400, r
        except Exception as e:  # noqa: BLE001 — a plain close is acceptable too
            if "closed" not in str(e) and "reset" not in str(e):
                raise
    # Whatever arrived before the garbage may be kept; nothing beyond it.
    assert server.offset(up) in (0, 3)
    still_serving(server)


def test_client_closes_mid_headers(server):
    with server.raw() as c:
        c.send(b"POST /files/ HTTP/1.1\r\nHost: x\r\nUpload-Len")
    still_serving(server)


def test_unknown_method(server):
    with server.raw() as c:
        c.send(build_request("BREW", "/files/", TUS))
        r = c.read_response()
        assert r.status in (400, 404, 405, 501), r
    still_serving(server)


def test_max_header_size_flag(tusc):
    srv = tusc("-max-header-size", "4096")
    ok = build_request("OPTIONS", "/files/", [("X-Pad", "a" * 2000)])
    expect_status_or_close(srv, ok, 200)
    big = build_request("OPTIONS", "/files/", [("X-Pad", "a" * 5000)])
    expect_status_or_close(srv, big, 431)


def test_max_header_count_flag(tusc):
    srv = tusc("-max-header-count", "10")
    ok = build_request("OPTIONS", "/files/", [(f"X-H{i}", "1") for i in range(5)])
    expect_status_or_close(srv, ok, 200)
    many = build_request("OPTIONS", "/files/", [(f"X-H{i}", "1") for i in range(20)])
    expect_status_or_close(srv, many, 431)


def test_trickled_patch_body(server):
    """A body that arrives a few bytes per segment is stored whole and in order."""
    data = os.urandom(3000)
    up = server.create(length=len(data))
    with server.raw() as c:
        c.sock.setsockopt(__import__("socket").IPPROTO_TCP, __import__("socket").TCP_NODELAY, 1)
        c.send(build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET)],
                             content_length=len(data)))
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
        r = c.read_response("PATCH")
    assert r.status == 204, r
    assert server.download(up).body == data


def test_chunked_with_expect_continue(server):
    up = server.create(length=6)
    hs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked"),
                ("Expect", "100-continue")]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hs))
        r = c.read_response("PATCH")
        assert r.status == 100, r
        c.send(chunked([b"abc", b"def"]))
        r = c.read_response("PATCH")
        assert r.status == 204, r
    assert server.download(up).body == b"abcdef"


def test_header_names_case_insensitive(server):
    with server.raw() as c:
        c.send(build_request("POST", "/files/", [("tus-resumable", "1.0.0"), ("UPLOAD-LENGTH", "3")]))
        r = c.read_response("POST")
        assert r.status == 201, r
        up = urllib.parse.urlsplit(r.header("location")).path
        c.send(build_request("PATCH", up, [("TUS-RESUMABLE", "1.0.0"), ("upload-offset", "0"),
                                           ("content-type", OCTET)], b"abc"))
        r = c.read_response("PATCH")
        assert r.status == 204, r


@pytest.mark.parametrize("name,values", [("Upload-Offset", ("0", "2")),
                                         ("Upload-Length", ("5", "50"))])
def test_conflicting_duplicate_tus_headers_400(server, name, values):
    """Two different values of one tus header (a request-smuggling smell between a
    proxy and the server) are refused rather than one of them silently picked."""
    if name == "Upload-Offset":
        up = server.create(length=10)
        hs = TUS + [("Content-Type", OCTET)] + [(name, v) for v in values]
        data = build_request("PATCH", up, hs, b"ab")
        method = "PATCH"
    else:
        hs = TUS + [(name, v) for v in values]
        data = build_request("POST", "/files/", hs)
        method = "POST"
    with server.raw() as c:
        c.send(data)
        r = c.read_response(method)
    assert r.status == 400, r


def test_query_string_ignored_for_upload_path(server):
    up = server.create(length=2)
    h = server.head(up + "?x=1&y=2")
    assert h.status == 200, h
    r = server.patch(up + "?token=abc", 0, b"hi")
    assert r.status == 204, r
    r = server.request("POST", "/files/?a=b", {"Upload-Length": "1"})
    assert r.status == 201, r


def _second_answer_or_close(c, method):
    """After a response to a request whose body the server may not have read, the
    next pipelined request is either answered properly or the connection is closed —
    the unread body must never be parsed as a request."""
    try:
        r = c.read_response(method)
    except Exception as e:  # noqa: BLE001
        if "closed" in str(e) or "reset" in str(e):
            return None
        raise
    return r


def test_pipelined_after_error_without_body(server):
    unknown = "/files/0123456789abcdef0123456789abcdef"
    with server.raw() as c:
        c.send(build_request("HEAD", unknown, TUS) + build_request("OPTIONS", "/files/", []))
        r1 = c.read_response("HEAD")
        assert r1.status == 404, r1
        r2 = c.read_response("OPTIONS")
        assert r2.status == 200, r2


@pytest.mark.parametrize("first", [
    ("POST", "/files/", [("Upload-Length", "5"), ("Content-Type", "text/plain")], b"GET /"),
    ("PATCH", "/files/0123456789abcdef0123456789abcdef",
     [("Upload-Offset", "0"), ("Content-Type", OCTET)], b"GET / HTTP/1.1\r\n\r\n"),
    ("GET", "/", [], b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("OPTIONS", "/files/", [], b"DELETE /files/x HTTP/1.1\r\n\r\n"),
])
def test_unread_body_never_parsed_as_request(server, first):
    method, target, hs, body = first
    req1 = build_request(method, target, TUS + hs, body)
    req2 = build_request("HEAD", "/files/0123456789abcdef0123456789abcdef", TUS)
    with server.raw() as c:
        c.send(req1 + req2)
        r1 = c.read_response(method)
        assert r1.status < 500, r1
        r2 = _second_answer_or_close(c, "HEAD")
        if r2 is not None:
            assert r2.status == 404, r2
            assert c.buf == b"", c.buf
    still_serving(server)


def test_post_with_non_tus_body_keeps_offset_zero(server):
    r = server.request("POST", "/files/", {"Upload-Length": "5", "Content-Type": "text/plain"},
                       b"hello")
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert server.offset(up) == 0


def test_pipeline_flood(server):
    """2,000 pipelined requests in one go: all answered, in order."""
    ups = [server.create(length=n) for n in (1, 2, 3)]
    reqs = [build_request("HEAD", ups[i % 3], TUS) for i in range(2000)]
    with server.raw(timeout=60) as c:
        t = __import__("threading").Thread(target=c.send, args=(b"".join(reqs),))
        t.start()
        lengths = [c.read_response("HEAD").header("Upload-Length") for _ in reqs]
        t.join(timeout=60)
    assert lengths == [str(i % 3 + 1) for i in range(2000)]


def test_expect_continue_body_sent_without_waiting(server):
    up = server.create(length=5)
    hs = TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET), ("Expect", "100-continue")]
    with server.raw() as c:
        c.send(build_request("PATCH", up, hs, b"hello"))
        r, _interim = c.read_final_response("PATCH")
        assert r.status == 204, r
        c.send(build_request("HEAD", up, TUS))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Upload-Offset") == "5", r


def test_absolute_form_target(server):
    """RFC 9112 3.2.2: a server MUST accept the absolute-form."""
    up = server.create(length=1)
    with server.raw() as c:
        c.send(build_request("HEAD", f"http://127.0.0.1:{server.port}{up}", TUS))
        r = c.read_response("HEAD")
    assert r.status == 200, r
    assert r.header("Upload-Length") == "1", r


def test_date_header(server):
    r = server.request("OPTIONS", "/files/")
    assert r.header("Date") and r.header("Date").endswith(" GMT"), r
