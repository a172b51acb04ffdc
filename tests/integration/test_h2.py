"""HTTP/2: h2 over TLS by ALPN, h2c by prior knowledge (-enable-h2c, off by default), the
same handler behind both protocols (access log with proto=HTTP/2.0), many streams on one
connection (nghttp), a stream reset mid-PATCH keeping its bytes (the window reopens only
by what the handler took), a stalled store closing the stream window, per-stream body and
header-block timeouts, the connection's idle timeout, and the per-connection defences
(rapid reset, header list size, SETTINGS and CONTINUATION floods).

Attacks use a few hand-built frames (RawH2 below: HPACK literals, no Huffman, and
python3-hpack to read the server's heads), since the python `h2` package is not
installed here."""
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse

from hpack import Decoder as HpackDecoder
import pytest

from conftest import IO_TIMEOUT, OCTET, deadline_poll
from test_tls import pki, tls_server  # noqa: F401 (pki is a fixture)

CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9)
END_STREAM, END_HEADERS, ACK = 1, 4, 1
ENHANCE_YOUR_CALM = 0xB


def _hint(n, prefix_bits=7):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([n])
    out = [limit]
    n -= limit
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack(headers):
    """Literal header fields without indexing, no Huffman."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hint(len(n)) + n + _hint(len(v)) + v
    return out


def frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + payload


class RawH2:
    """A cleartext HTTP/2 client that speaks only what a test writes."""

    def __init__(self, srv):
        self.s = socket.create_connection((srv.host, srv.port), timeout=IO_TIMEOUT)
        self.buf = b""
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.authority = f"{srv.host}:{srv.port}"
        self.decoder = HpackDecoder()  # every header block goes through it, in order
        self.block = b""

    def close(self):
        self.s.close()

    def request_headers(self, sid, method, path, extra=(), end_stream=False, tus=True):
        hs = [(":method", method), (":scheme", "http"), (":authority", self.authority),
              (":path", path), *([("tus-resumable", "1.0.0")] if tus else []), *extra]
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, hpack(hs))

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """The next frame, or None at EOF."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        typ, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = self.buf[9:9 + n]
        self.buf = self.buf[9 + n:]
        if typ in (HEADERS, CONTINUATION):
            self.block += payload
            if not flags & END_HEADERS:
                return self.read_frame()
            fields = self.decoder.decode(self.block)
            self.block = b""
            # (type, flags, stream, payload, {lower-case name: value}); the server sends
            # neither padding nor priority.
            return HEADERS, flags, sid, payload, {k.lower(): v for k, v in fields}
        if typ == SETTINGS and not flags & ACK:
            try:
                self.s.sendall(frame(SETTINGS, ACK, 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server hung up (an attack test); the frames read still count
        return typ, flags, sid, payload

    def until(self, pred):
        """Reads frames until pred(frame) is true (returns it) or EOF (returns None)."""
        while True:
            f = self.read_frame()
            if f is None or pred(f):
                return f


def goaway_or_eof(raw):
    """The GOAWAY's error code, or None when the server just closed."""
    f = raw.until(lambda f: f[0] == GOAWAY)
    return None if f is None else int.from_bytes(f[3][4:8], "big")


def curl(*args, check=True):
    p = subprocess.run([CURL, "-sS", "--max-time", str(int(IO_TIMEOUT)), *args],
                       capture_output=True, timeout=IO_TIMEOUT + 10)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def create(srv, length):
    r = srv.request("POST", "/files/", {"Upload-Length": str(length)})
    assert r.status == 201, r
    return urllib.parse.urlsplit(r.header("Location")).path


def offset(srv, path):
    r = srv.request("HEAD", path)
    assert r.status == 200, r
    return int(r.header("Upload-Offset"))


def healthy(srv):
    r = srv.request("OPTIONS", "/files/")
    assert r.status in (200, 204), r


def log_lines(srv, method):
    return [l for l in srv.all_stderr().splitlines()
            if "event=ResponseOutgoing" in l and f"method={method}" in l]


# --------------------------------------------------------------------------------------


def test_h2c_is_off_by_default(tusc):
    srv = tusc()
    with socket.create_connection((srv.host, srv.port), timeout=IO_TIMEOUT) as s:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        assert s.recv(100).startswith(b"HTTP/1.1 505 ")


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_h2c_prior_knowledge_upload(tusc, tmp_path):
    srv = tusc("-enable-h2c")
    url = f"http://{srv.host}:{srv.port}"
    data = os.urandom(3 * 1024 * 1024 + 7)
    f = tmp_path / "data"
    f.write_bytes(data)
    h = ["-H", "Tus-Resumable: 1.0.0"]
    p = curl("--http2-prior-knowledge", "-i", "-X", "POST", *h, "-H",
             f"Upload-Length: {len(data)}", url + "/files/")
    head = p.stdout.decode()
    assert head.startswith("HTTP/2 201"), head
    loc = re.search(r"(?im)^location: (\S+)", head).group(1)
    p = curl("--http2-prior-knowledge", "-i", "-X", "PATCH", *h, "-H", "Upload-Offset: 0", "-H",
             f"Content-Type: {OCTET}", "--data-binary", f"@{f}", loc)
    assert p.stdout.decode().startswith("HTTP/2 204"), p.stdout[:300]
    assert re.search(rf"(?im)^upload-offset: {len(data)}\r?$", p.stdout.decode())
    p = curl("--http2-prior-knowledge", loc)
    assert p.stdout == data
    # The same handler serves HTTP/1.1 on the same port.
    path = urllib.parse.urlsplit(loc).path
    assert offset(srv, path) == len(data)
    # A line is written once the response's last write completed, which may be just
    # after the client has read it.
    lines = deadline_poll(lambda: log_lines(srv, "PATCH"), IO_TIMEOUT, what="the PATCH's line")
    assert len(lines) == 1 and "proto=HTTP/2.0" in lines[0] and "status=204" in lines[0], lines
    assert f"bytes_in={len(data)}" in lines[0]
    assert all("proto=" not in l for l in log_lines(srv, "HEAD")), "HTTP/1.1 lines unchanged"


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_h2_over_tls_by_alpn(tusc, pki, tmp_path):  # noqa: F811
    srv = tls_server(tusc, pki)
    url = f"https://127.0.0.1:{srv.port}"
    ca = ["--cacert", pki.path("a.crt")]
    h = ["-H", "Tus-Resumable: 1.0.0"]
    p = curl("--http2", *ca, "-i", "-X", "POST", *h, "-H", "Upload-Length: 11", url + "/files/")
    head = p.stdout.decode()
    assert head.startswith("HTTP/2 201"), head
    assert re.search(r"(?im)^strict-transport-security: ", head) or "-hsts" not in srv.args
    loc = re.search(r"(?im)^location: (\S+)", head).group(1)
    assert loc.startswith(url + "/files/")
    p = curl("--http2", *ca, "-i", "-X", "PATCH", *h, "-H", "Upload-Offset: 0", "-H",
             f"Content-Type: {OCTET}", "--data-binary", "hello world", loc)
    assert p.stdout.decode().startswith("HTTP/2 204"), p.stdout
    # A client that offers only HTTP/1.1 still gets it.
    p = curl("--http1.1", *ca, "-i", loc)
    assert p.stdout.startswith(b"HTTP/1.1 200") and p.stdout.endswith(b"hello world")
    deadline_poll(lambda: any("proto=HTTP/2.0" in l for l in log_lines(srv, "PATCH")), IO_TIMEOUT,
                  what="the h2 PATCH's line")
    gets = deadline_poll(lambda: log_lines(srv, "GET"), IO_TIMEOUT, what="the GET's line")
    assert len(gets) == 1 and "proto=" not in gets[0], gets


@pytest.mark.skipif(NGHTTP is None, reason="nghttp (nghttp2-client) not installed")
def test_twenty_uploads_multiplexed_on_one_connection(tusc, tmp_path):
    srv = tusc("-enable-h2c")
    size = 200 * 1024 + 3
    data = os.urandom(size)
    f = tmp_path / "data"
    f.write_bytes(data)
    paths = [create(srv, size) for _ in range(20)]
    urls = [f"http://{srv.host}:{srv.port}{p}" for p in paths]
    # nghttp sends every URI's request at once on one connection; -d makes each a POST,
    # which X-HTTP-Method-Override turns into the tus PATCH.
    p = subprocess.run([NGHTTP, "-n", "-s", "-d", str(f), "-H", "X-HTTP-Method-Override: PATCH",
                        "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0", "-H",
                        f"Content-Type: {OCTET}", *urls], capture_output=True,
                       timeout=IO_TIMEOUT * 4)
    assert p.returncode == 0, p.stderr.decode() + p.stdout.decode()
    for path in paths:
        assert offset(srv, path) == size, path
        got = srv.request("GET", path, tus=False)
        assert got.body == data
    lines = deadline_poll(lambda: [l for l in log_lines(srv, "PATCH") if "proto=HTTP/2.0" in l]
                          if len(log_lines(srv, "PATCH")) >= 20 else None, IO_TIMEOUT,
                          what="20 PATCH lines")
    assert len(lines) == 20, lines
    remotes = {re.search(r"remote=(\S+)", l).group(1) for l in lines}
    assert len(remotes) == 1, remotes  # one connection


def test_windows_keep_a_big_upload_flowing_in_few_window_updates(tusc):
    """The server's SETTINGS give each stream a 1 MiB window and its first WINDOW_UPDATE
    makes the connection's 16 MiB (the memory bound h2.h states: what a paused stream
    holds is at most its window), and the window comes back in steps of at least half a
    window, not one WINDOW_UPDATE per DATA frame: a 4 MiB body sent as 16 KiB frames
    gets at most 8 stream WINDOW_UPDATEs (not 256)."""
    srv = tusc("-enable-h2c")
    size = 4 * 1024 * 1024
    body = os.urandom(size)
    path = create(srv, size)
    raw = RawH2(srv)
    try:
        f = raw.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        settings = dict(struct.unpack(">HI", f[3][i:i + 6]) for i in range(0, len(f[3]), 6))
        assert settings.get(4) == 1024 * 1024, settings  # SETTINGS_INITIAL_WINDOW_SIZE
        assert settings.get(3) == 100, settings  # SETTINGS_MAX_CONCURRENT_STREAMS
        f = raw.until(lambda f: f[0] == WINDOW_UPDATE and f[2] == 0)
        assert f is not None
        conn = 65535 + (int.from_bytes(f[3], "big") & 0x7FFFFFFF)
        assert conn == 16 * 1024 * 1024, conn
        raw.send(raw.request_headers(1, "PATCH", path, [("upload-offset", "0"),
                                                       ("content-type", OCTET),
                                                       ("content-length", str(size))]))
        state = {"sent": 0, "credit": settings[4], "conn": conn}
        updates = []
        while True:
            while state["sent"] < size:
                n = min(16384, state["credit"], state["conn"], size - state["sent"])
                if n <= 0:
                    break
                end = END_STREAM if state["sent"] + n == size else 0
                raw.send(frame(DATA, end, 1, body[state["sent"]:state["sent"] + n]))
                state["sent"] += n
                state["credit"] -= n
                state["conn"] -= n
            f = raw.read_frame()
            assert f is not None, "connection closed"
            if f[0] == WINDOW_UPDATE:
                inc = int.from_bytes(f[3], "big") & 0x7FFFFFFF
                if f[2] == 1:
                    updates.append(inc)
                    state["credit"] += inc
                else:
                    state["conn"] += inc
                continue
            assert f[0] == HEADERS and f[2] == 1, f
            break
        assert f[4][":status"] == "204", f
        assert f[4]["upload-offset"] == str(size), f
        assert updates and min(updates) >= 512 * 1024, updates
        assert len(updates) <= 8, updates
    finally:
        raw.close()
    assert srv.request("GET", path, tus=False).body == body


def test_reset_mid_patch_keeps_the_bytes(tusc):
    srv = tusc("-enable-h2c")
    path = create(srv, 1 << 20)
    raw = RawH2(srv)
    try:
        # The server's SETTINGS (stream window) and its connection WINDOW_UPDATE first.
        f = raw.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        window = 65535
        for i in range(0, len(f[3]), 6):
            ident, value = struct.unpack(">HI", f[3][i:i + 6])
            if ident == 4:
                window = value
        assert window > 65535, "a stream window larger than the default"
        assert raw.until(lambda f: f[0] == WINDOW_UPDATE and f[2] == 0) is not None
        body = os.urandom(window - 16384)
        req = raw.request_headers(1, "PATCH", path, [("upload-offset", "0"),
                                                    ("content-type", OCTET),
                                                    ("content-length", str(1 << 20))])
        chunks = b"".join(frame(DATA, 0, 1, body[i:i + 16384]) for i in range(0, len(body), 16384))
        raw.send(req + chunks)
        # The window opens again only by what the handler took (half a window at least
        # before nghttp2 says so): those bytes reached the store.
        f = raw.until(lambda f: f[0] == WINDOW_UPDATE and f[2] == 1)
        assert f is not None, "connection closed"
        acked = int.from_bytes(f[3], "big")
        raw.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))  # CANCEL
        deadline_poll(lambda: srv.request("HEAD", path).status == 200 and
                      acked <= offset(srv, path) <= len(body), IO_TIMEOUT,
                      what="the reset PATCH's bytes are kept")
        deadline_poll(lambda: len(log_lines(srv, "PATCH")) == 1, IO_TIMEOUT,
                      what="the aborted PATCH's access log line")
        lines = log_lines(srv, "PATCH")
        assert "aborted=true" in lines[0] and "proto=HTTP/2.0" in lines[0], lines
        got = srv.request("GET", path, tus=False)
        assert body.startswith(got.body) and len(got.body) >= acked
    finally:
        raw.close()
    healthy(srv)


def test_rapid_reset_gets_goaway(tusc):
    srv = tusc("-enable-h2c")
    raw = RawH2(srv)
    try:
        burst = b""
        for i in range(1000):
            sid = 1 + 2 * i
            burst += raw.request_headers(sid, "PATCH", "/files/none", [("upload-offset", "0"),
                                                                       ("content-type", OCTET)])
            burst += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
        try:
            raw.send(burst)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert goaway_or_eof(raw) == ENHANCE_YOUR_CALM
    finally:
        raw.close()
    healthy(srv)
    assert "too many streams reset" in srv.all_stderr()


def test_header_list_too_large_resets_the_stream(tusc):
    srv = tusc("-enable-h2c", "-max-header-size", "4096")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", [("x-big", "a" * 8000)],
                                     end_stream=True))
        f = raw.until(lambda f: f[2] == 1 and f[0] in (RST_STREAM, HEADERS))
        assert f is not None and f[0] == RST_STREAM, f
        # The connection is still good for the next stream.
        raw.send(raw.request_headers(3, "OPTIONS", "/files/", end_stream=True))
        f = raw.until(lambda f: f[2] == 3 and f[0] == HEADERS)
        assert f is not None, "the next stream is answered"
    finally:
        raw.close()
    healthy(srv)


def test_settings_flood_is_cut_off(tusc):
    srv = tusc("-enable-h2c")
    raw = RawH2(srv)
    try:
        try:  # thousands of SETTINGS (each wants an ACK) without reading the ACKs
            raw.send(frame(SETTINGS, 0, 0) * 20000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        code = goaway_or_eof(raw)
        assert code in (None, ENHANCE_YOUR_CALM), code
    finally:
        raw.close()
    healthy(srv)


def test_continuation_flood_is_cut_off(tusc):
    srv = tusc("-enable-h2c")
    raw = RawH2(srv)
    try:
        first = raw.request_headers(1, "OPTIONS", "/files/")
        first = first[:4] + bytes([0]) + first[5:]  # no END_HEADERS
        cont = b"".join(frame(CONTINUATION, 0, 1, hpack([("x-c", "v")])) for _ in range(200))
        try:
            raw.send(first + cont)
        except (BrokenPipeError, ConnectionResetError):
            pass
        code = goaway_or_eof(raw)
        assert code in (None, ENHANCE_YOUR_CALM), code
    finally:
        raw.close()
    healthy(srv)


def test_graceful_stop_sends_goaway_to_idle_h2_connections(tusc):
    srv = tusc("-enable-h2c")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", end_stream=True))
        assert raw.until(lambda f: f[0] == HEADERS and f[2] == 1) is not None
        # The connection stays open and idle; stopping the server must not wait for it.
        assert srv.stop() == 0
        assert goaway_or_eof(raw) in (None, 0)
    finally:
        raw.close()


# --- per-stream timeouts ----------------------------------------------------------------


def frame_within(raw, pred, seconds, between=None):
    """Reads frames until pred(frame) (returns it), EOF (None) or `seconds` pass
    (AssertionError); between() runs each time nothing arrived for a moment (a client
    that keeps another stream busy)."""
    end = time.monotonic() + seconds
    raw.s.settimeout(0.25)
    try:
        while time.monotonic() < end:
            try:
                f = raw.read_frame()
            except TimeoutError:
                if between is not None:
                    between()
                continue
            if f is None or pred(f):
                return f
    finally:
        raw.s.settimeout(IO_TIMEOUT)
    raise AssertionError(f"no such frame within {seconds}s")


def test_stalled_stream_body_is_reset_alone(tusc):
    """A stream whose body stops is reset after -network-timeout (its bytes kept, like a
    dropped HTTP/1.1 connection), while another stream on the same connection that keeps
    sending is not: the read timeout runs per stream, not per connection."""
    srv = tusc("-enable-h2c", "-network-timeout", "2s")
    stalled, busy = create(srv, 100_000), create(srv, 100_000)
    raw = RawH2(srv)
    try:
        first = os.urandom(1000)
        raw.send(raw.request_headers(1, "PATCH", stalled, [("upload-offset", "0"),
                                                           ("content-type", OCTET),
                                                           ("content-length", "100000")]) +
                 frame(DATA, 0, 1, first))
        raw.send(raw.request_headers(3, "PATCH", busy, [("upload-offset", "0"),
                                                        ("content-type", OCTET),
                                                        ("content-length", "100000")]))
        sent = {"n": 0}
        piece = b"b" * 100

        def dribble():  # stream 3 makes progress all the time
            if sent["n"] + len(piece) < 50_000:
                raw.send(frame(DATA, 0, 3, piece))
                sent["n"] += len(piece)

        f = frame_within(raw, lambda f: f[0] in (RST_STREAM, GOAWAY) or
                         (f[0] == HEADERS and f[2] in (1, 3)), 20, dribble)
        assert f is not None, "the connection was closed"
        assert f[0] == RST_STREAM and f[2] == 1, f
        assert int.from_bytes(f[3], "big") == 8  # CANCEL
        # Stream 3 was kept alive by its bytes: it ends normally on the same connection.
        rest = b"b" * (100_000 - sent["n"])
        raw.send(b"".join(frame(DATA, 0, 3, rest[i:i + 16384])
                          for i in range(0, len(rest), 16384)))
        raw.send(frame(DATA, END_STREAM, 3))
        f = raw.until(lambda f: f[2] == 3 and f[0] in (HEADERS, RST_STREAM))
        assert f is not None and f[0] == HEADERS, f
        deadline_poll(lambda: offset(srv, busy) == 100_000, IO_TIMEOUT,
                      what="the busy stream's upload")
        deadline_poll(lambda: offset(srv, stalled) == len(first), IO_TIMEOUT,
                      what="the timed-out stream's bytes are kept")
        deadline_poll(lambda: any("aborted=true" in l and f"path={stalled}" in l
                                  for l in log_lines(srv, "PATCH")), IO_TIMEOUT,
                      what="the timed-out PATCH's access log line")
    finally:
        raw.close()
    healthy(srv)


def test_download_the_client_does_not_read_is_reset_alone(tusc):
    """A response whose stream window the client never opens (here: initial window 0)
    is reset after -network-timeout, like an HTTP/1.1 client that stops reading; the
    download's handler gets its writes failed and ends, and the connection goes on."""
    srv = tusc("-enable-h2c", "-network-timeout", "1s")
    path = create(srv, 300_000)
    assert srv.patch(path, 0, os.urandom(300_000)).status == 204
    raw = RawH2(srv)
    try:
        raw.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)))  # INITIAL_WINDOW_SIZE 0
        raw.send(raw.request_headers(1, "GET", path, end_stream=True))
        f = raw.until(lambda f: f[2] == 1 and f[0] in (HEADERS, RST_STREAM))
        assert f is not None and f[0] == HEADERS and f[4][":status"] == "200", f
        t0 = time.monotonic()
        f = raw.until(lambda f: f[0] in (RST_STREAM, GOAWAY))
        assert f is not None and f[0] == RST_STREAM and f[2] == 1, f
        assert int.from_bytes(f[3], "big") == 8  # CANCEL
        assert time.monotonic() - t0 < 10
        raw.send(raw.request_headers(3, "OPTIONS", "/files/", end_stream=True))
        f = raw.until(lambda f: f[2] == 3 and f[0] in (HEADERS, RST_STREAM))
        assert f is not None and f[0] == HEADERS, f
        deadline_poll(lambda: len(log_lines(srv, "GET")) == 1, IO_TIMEOUT,
                      what="the cut download's access log line")
    finally:
        raw.close()
    healthy(srv)


def test_idle_h2_connection_closed_by_network_timeout(tusc):
    """The connection's idle timeout closes an h2 connection without streams (after the
    last answer), like an idle HTTP/1.1 keep-alive connection."""
    srv = tusc("-enable-h2c", "-network-timeout", "1s")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", end_stream=True))
        assert raw.until(lambda f: f[0] == HEADERS and f[2] == 1) is not None
        t0 = time.monotonic()
        assert goaway_or_eof(raw) in (None, 0)
        assert time.monotonic() - t0 < 10
    finally:
        raw.close()


def test_pings_do_not_keep_an_idle_h2_connection_open(tusc):
    """PING frames carry no request: an h2 connection without streams is closed by
    -network-timeout however often the client pings (an HTTP/1.1 keep-alive connection
    cannot be held open without requests either)."""
    srv = tusc("-enable-h2c", "-network-timeout", "1s")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", end_stream=True))
        assert raw.until(lambda f: f[0] == HEADERS and f[2] == 1) is not None
        t0 = time.monotonic()

        def ping():
            try:
                raw.send(frame(PING, 0, 0, b"12345678"))
            except OSError:
                pass

        f = frame_within(raw, lambda f: f[0] == GOAWAY, 15, ping)
        assert f is None or int.from_bytes(f[3][4:8], "big") == 0, f
        assert time.monotonic() - t0 < 10
    finally:
        raw.close()


def test_stalled_header_block_closes_the_connection(tusc):
    """A header block that does not end (HEADERS without END_HEADERS, no CONTINUATION)
    stops the whole connection (RFC 9113 6.10: no other frame may come), so the header
    timeout closes it, as it closes an HTTP/1.1 connection with a partial head."""
    srv = tusc("-enable-h2c", "-header-timeout", "1s", "-network-timeout", "60s")
    raw = RawH2(srv)
    try:
        raw.send(raw.request_headers(1, "OPTIONS", "/files/", end_stream=True))
        assert raw.until(lambda f: f[0] == HEADERS and f[2] == 1) is not None
        head = raw.request_headers(3, "OPTIONS", "/files/", end_stream=True)
        raw.send(head[:4] + bytes([END_STREAM]) + head[5:])  # no END_HEADERS
        t0 = time.monotonic()
        assert goaway_or_eof(raw) in (None, 0, 1, 0xB)
        assert time.monotonic() - t0 < 10, "the stalled head was not cut by -header-timeout"
    finally:
        raw.close()
    healthy(srv)


# --- storage back-pressure ---------------------------------------------------------------


def pool_thread_in_fifo_open(pid):
    """Whether a thread of process `pid` waits in open() of a FIFO for a writer."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                if f.read().strip() == "wait_for_partner":
                    return True
        except OSError:
            pass
    return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


@pytest.mark.parametrize("frame_size", [16384, 8], ids=["16KiB-frames", "8B-frames"])
def test_stalled_store_closes_the_stream_window(tusc, monkeypatch, frame_size):
    """A store that cannot write shrinks the stream's window instead of buffering: the
    server grants no WINDOW_UPDATE beyond what the store took (its two append buffers
    and the inline tail) plus one window, however long the client waits, and its memory
    grows by less than half the 8 MiB body; once the store moves again the window
    reopens and the upload completes. With 8-byte DATA frames too: the bytes the server
    holds cost what they weigh, not an allocation per frame.

    The stall is real and deterministic: libuv's thread pool has one thread
    (UV_THREADPOOL_SIZE=1), and that thread is parked in open() of a FIFO — a finished
    partial upload's list of waiting finals (.concat/<shard>/<id>), which the store reads
    on the pool — until the test opens the FIFO's other end."""
    monkeypatch.setenv("UV_THREADPOOL_SIZE", "1")
    srv = tusc("-enable-h2c")
    r = srv.request("POST", "/files/", {"Upload-Length": "1", "Upload-Concat": "partial"})
    assert r.status == 201, r
    pid_ = urllib.parse.urlsplit(r.header("Location")).path.rsplit("/", 1)[1]
    data_file = next(os.path.join(root, n) for root, _, names in os.walk(srv.upload_dir)
                     for n in names if n == pid_)
    fifo = os.path.join(srv.upload_dir, ".concat", os.path.relpath(data_file, srv.upload_dir))
    os.makedirs(os.path.dirname(fifo), exist_ok=True)
    os.mkfifo(fifo)
    released = False

    def release():
        nonlocal released
        if not released:
            released = True
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF: no finals wait

    size = 8 * 1024 * 1024
    body = os.urandom(size)
    path = create(srv, size)
    raw = RawH2(srv)
    try:
        # The finished partial sends the pool's one thread into the FIFO.
        assert srv.patch(urllib.parse.urlsplit(r.header("Location")).path, 0, b"a").status == 204
        deadline_poll(lambda: pool_thread_in_fifo_open(srv.proc.pid), IO_TIMEOUT,
                      what="the thread pool parked on the FIFO")
        f = raw.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        window = 65535
        for i in range(0, len(f[3]), 6):
            ident, value = struct.unpack(">HI", f[3][i:i + 6])
            if ident == 4:
                window = value
        rss_before = rss_kib(srv.proc.pid)
        raw.send(raw.request_headers(1, "PATCH", path, [("upload-offset", "0"),
                                                       ("content-type", OCTET),
                                                       ("content-length", str(size))]))
        state = {"sent": 0, "credit": window, "conn": 65535}

        def on_frame(f):
            if f[0] == WINDOW_UPDATE:
                inc = int.from_bytes(f[3], "big") & 0x7FFFFFFF
                state["credit" if f[2] == 1 else "conn"] += inc if f[2] in (0, 1) else 0
            return f[0] in (RST_STREAM, GOAWAY) or (f[0] == HEADERS and f[2] == 1)

        def pump(fs=frame_size):
            """Sends what the windows allow; reads what the server says meanwhile."""
            frames = []
            while state["sent"] < size:
                n = min(fs, state["credit"], state["conn"], size - state["sent"])
                if n <= 0:
                    break
                end = END_STREAM if state["sent"] + n == size else 0
                frames.append(frame(DATA, end, 1, body[state["sent"]:state["sent"] + n]))
                state["sent"] += n
                state["credit"] -= n
                state["conn"] -= n
            raw.send(b"".join(frames))
            return None

        # Send while the server grants; then wait: a stalled store grants nothing more.
        raw.s.settimeout(2)
        while True:
            pump()
            try:
                f = raw.read_frame()
            except TimeoutError:
                break  # two seconds without a frame: the windows stay shut
            assert f is not None and not on_frame(f), f
        raw.s.settimeout(IO_TIMEOUT)
        bound = 2 * 1024 * 1024 + 64 * 1024 + window + 64 * 1024
        assert state["sent"] <= bound, (state, bound)
        assert state["sent"] < size
        assert state["credit"] <= 0 or state["conn"] <= 0, state
        # Nothing beyond those bytes is held: the server grew by less than the body.
        grown = rss_kib(srv.proc.pid) - rss_before
        assert grown * 1024 < size // 2, (grown, size)
        # The store moves again: the window reopens and the upload completes.
        release()
        while True:
            pump(16384)
            f = raw.read_frame()
            assert f is not None, "connection closed"
            if on_frame(f):
                break
        assert f[0] == HEADERS and f[4][":status"] == "204", f
        assert f[4]["upload-offset"] == str(size), f
    finally:
        release()
        raw.close()
    assert offset(srv, path) == size
    assert srv.request("GET", path, tus=False).body == body
