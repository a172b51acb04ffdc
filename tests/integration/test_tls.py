"""HTTPS served by tusc itself: -tls-certificate/-tls-key/-tls-mode, chains, encrypted
keys, SIGHUP reload, ALPN, -hsts, -http-redirect-port, and real clients over TLS.

Certificates are made by the openssl CLI in a temporary directory per module: a root
CA, an intermediate CA and leaf certificates for 127.0.0.1/localhost with distinct
serial numbers, so a test can tell which certificate a connection got."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

from conftest import IO_TIMEOUT, OCTET, REPO, TUS_HEADERS, Response, deadline_poll

CLIENTS = REPO / "tests" / "clients"
SUBJ_ALT = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr.decode()}"
    return p.stdout


class Pki:
    """Files under `d`: see make_pki."""

    def __init__(self, d):
        self.d = d

    def path(self, name):
        return str(self.d / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ext = d / "ext.cnf"
    ext.write_text("[leaf]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    # Two self-signed leaves with their own keys and known serials.
    for name, serial in (("a", "0xA1A1"), ("b", "0xB2B2")):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days",
                "3", "-subj", "/CN=localhost", "-addext", SUBJ_ALT, "-set_serial", serial, cwd=d)
    (d / "ab-bundle.crt").write_text((d / "a.crt").read_text() + (d / "b.crt").read_text())
    # A chain: root → intermediate → leaf. Clients trust the root only.
    openssl("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.crt", "-days", "3",
            "-subj", "/CN=tusc test root", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "inter.key", "-out", "inter.csr", "-subj",
            "/CN=tusc test intermediate", cwd=d)
    openssl("x509", "-req", "-in", "inter.csr", "-CA", "root.crt", "-CAkey", "root.key",
            "-set_serial", "0x1C", "-days", "3", "-extfile", "ext.cnf", "-extensions", "ca",
            "-out", "inter.crt", cwd=d)
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost",
            cwd=d)
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "inter.crt", "-CAkey", "inter.key",
            "-set_serial", "0xC3C3", "-days", "3", "-extfile", "ext.cnf", "-extensions", "leaf",
            "-out", "leaf.crt", cwd=d)
    (d / "chain.crt").write_text((d / "leaf.crt").read_text() + (d / "inter.crt").read_text())
    # The same key as a.key, under a passphrase (PKCS#8 and traditional PEM).
    openssl("pkey", "-in", "a.key", "-aes256", "-passout", "pass:secret", "-out", "a-enc.key",
            cwd=d)
    openssl("ec", "-in", "a.key", "-aes256", "-passout", "pass:secret", "-out",
            "a-enc-trad.key", cwd=d)
    return Pki(d)


def client_ctx(cafile, minimum=None, maximum=None, alpn=None, ciphers=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_sock(srv, ctx, host="127.0.0.1"):
    raw = socket.create_connection((srv.host, srv.port), timeout=IO_TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=host)


def https_request(srv, ctx, method, path, headers=None, body=None, tus=True):
    hs = dict(TUS_HEADERS) if tus else {}
    hs.update(headers or {})
    conn = http.client.HTTPSConnection(srv.host, srv.port, timeout=IO_TIMEOUT, context=ctx)
    try:
        conn.request(method, path, body=body, headers=hs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, list(r.getheaders()), data)
    finally:
        conn.close()


def tls_server(tusc, pki, cert="a.crt", key="a.key", *extra, **kw):
    srv = tusc("-tls-certificate", pki.path(cert), "-tls-key", pki.path(key), *extra, **kw)
    return srv


def peer_serial(sock):
    return sock.getpeercert()["serialNumber"].upper()


# --------------------------------------------------------------------------------------


def test_upload_over_tls_location_is_https(tusc, pki):
    srv = tls_server(tusc, pki)
    ctx = client_ctx(pki.path("a.crt"))
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": "11"})
    assert r.status == 201, r
    loc = r.header("Location")
    assert loc.startswith(f"https://127.0.0.1:{srv.port}/files/"), loc
    path = urllib.parse.urlsplit(loc).path
    r = https_request(srv, ctx, "PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET},
                      b"hello ")
    assert r.status == 204 and r.header("Upload-Offset") == "6", r
    r = https_request(srv, ctx, "HEAD", path)
    assert r.header("Upload-Offset") == "6", r
    r = https_request(srv, ctx, "PATCH", path, {"Upload-Offset": "6", "Content-Type": OCTET},
                      b"world")
    assert r.status == 204 and r.header("Upload-Offset") == "11", r
    r = https_request(srv, ctx, "GET", path, tus=False)
    assert r.status == 200 and r.body == b"hello world", r
    assert srv.data_file(path).read_bytes() == b"hello world"
    # No HSTS unless asked for.
    assert r.header("Strict-Transport-Security") is None


def test_plain_http_to_tls_port_is_dropped(tusc, pki):
    srv = tls_server(tusc, pki)
    with socket.create_connection((srv.host, srv.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in data  # at most a TLS alert, never a plaintext answer
    ctx = client_ctx(pki.path("a.crt"))
    assert https_request(srv, ctx, "OPTIONS", "/files/").status in (200, 204)


def test_keep_alive_and_pipelining_over_tls(tusc, pki):
    srv = tls_server(tusc, pki)
    ctx = client_ctx(pki.path("a.crt"))
    with tls_sock(srv, ctx) as s:
        req = (b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\n"
               b"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
               b"Upload-Length: 3\r\nContent-Length: 0\r\n\r\n")
        s.sendall(req * 3)
        data = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while data.count(b"HTTP/1.1 201") < 3 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", data)
    assert statuses.count(b"201") == 3 and len(statuses) == 6, data[:2000]
    assert data.count(b"Location: https://") == 3


def test_alpn_prefers_h2_and_keeps_http11(tusc, pki):
    srv = tls_server(tusc, pki)
    # The server prefers h2 whenever the client offers it (test_h2.py speaks it).
    with tls_sock(srv, client_ctx(pki.path("a.crt"), alpn=["http/1.1", "h2"])) as s:
        assert s.selected_alpn_protocol() == "h2"
    with tls_sock(srv, client_ctx(pki.path("a.crt"), alpn=["h2"])) as s:
        assert s.selected_alpn_protocol() == "h2"
    # A client offering only HTTP/1.1 gets it.
    with tls_sock(srv, client_ctx(pki.path("a.crt"), alpn=["http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 ")
    # No ALPN at all: HTTP/1.1.
    with tls_sock(srv, client_ctx(pki.path("a.crt"))) as s:
        assert s.selected_alpn_protocol() is None
        s.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 ")


def test_tls13_mode_refuses_tls12_client(tusc, pki):
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-tls-mode", "tls13")
    with pytest.raises(ssl.SSLError):
        tls_sock(srv, client_ctx(pki.path("a.crt"), maximum=ssl.TLSVersion.TLSv1_2)).close()
    with tls_sock(srv, client_ctx(pki.path("a.crt"))) as s:
        assert s.version() == "TLSv1.3"


def handshake_ok(srv, ctx):
    try:
        with tls_sock(srv, ctx) as s:
            return s.version(), s.cipher()[0]
    except ssl.SSLError:
        return None


# tusd's modes (cmd/tusd/cli/serve.go): tls12 = TLS 1.2+ with six ECDHE AEAD suites for
# 1.2; tls12-strong = TLS 1.2 only, ECDHE AES-256-GCM only; tls13 = TLS 1.3 only.
@pytest.mark.parametrize("mode,client,expect", [
    ("tls12", {}, ("TLSv1.3", None)),
    # The server's order wins, and tusd lists AES-128-GCM first.
    ("tls12", {"maximum": ssl.TLSVersion.TLSv1_2}, ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")),
    ("tls12", {"maximum": ssl.TLSVersion.TLSv1_2, "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"},
     ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")),
    ("tls12", {"maximum": ssl.TLSVersion.TLSv1_2, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"},
     ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")),
    ("tls12", {"maximum": ssl.TLSVersion.TLSv1_2, "ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"},
     ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")),
    ("tls12", {"maximum": ssl.TLSVersion.TLSv1_2,
               "ciphers": "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA"}, None),
    ("tls12-strong", {}, ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")),
    ("tls12-strong", {"minimum": ssl.TLSVersion.TLSv1_3}, None),
    ("tls12-strong", {"maximum": ssl.TLSVersion.TLSv1_2,
                      "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"},
     None),
    ("tls13", {"maximum": ssl.TLSVersion.TLSv1_2}, None),
    ("tls13", {}, ("TLSv1.3", None)),
])
def test_tls_modes_match_tusd(tusc, pki, mode, client, expect):
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-tls-mode", mode)
    got = handshake_ok(srv, client_ctx(pki.path("a.crt"), **client))
    if expect is None:
        assert got is None, got
    else:
        assert got is not None and got[0] == expect[0], got
        if expect[1] is not None:
            assert got[1] == expect[1], got


def test_certificate_chain(tusc, pki):
    srv = tls_server(tusc, pki, "chain.crt", "leaf.key")
    # The client knows only the root: verification needs the intermediate from us.
    ctx = client_ctx(pki.path("root.crt"))
    with tls_sock(srv, ctx, host="localhost") as s:
        assert peer_serial(s) == "C3C3"
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 201, r


@pytest.mark.parametrize("key", ["a-enc.key", "a-enc-trad.key"])
def test_encrypted_key_refused(tusc, pki, key):
    srv = tusc("-tls-certificate", pki.path("a.crt"), "-tls-key", pki.path(key), start=False)
    p = subprocess.run(srv.command(), capture_output=True, timeout=60, cwd=srv.workdir)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert "encrypted" in err and key in err, err
    assert "tusc: listening" not in p.stdout.decode()


@pytest.mark.parametrize("cert,key,words", [
    ("a.crt", "b.key", "does not match"),
    ("missing.crt", "a.key", "cannot read certificate"),
    ("a.crt", "missing.key", "cannot read private key"),
    ("ext.cnf", "a.key", "cannot load certificate chain"),
])
def test_bad_tls_files_refused(tusc, pki, cert, key, words):
    srv = tusc("-tls-certificate", pki.path(cert), "-tls-key", pki.path(key), start=False)
    p = subprocess.run(srv.command(), capture_output=True, timeout=60, cwd=srv.workdir)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert words in err, err


@pytest.mark.parametrize("flags", [["-hsts"], ["-http-redirect-port", "1"]])
def test_tls_only_flags_need_a_certificate(tusc, flags):
    srv = tusc(*flags, start=False)
    p = subprocess.run(srv.command(), capture_output=True, timeout=60, cwd=srv.workdir)
    assert p.returncode == 2
    assert "-tls-certificate" in p.stderr.decode()


def test_hsts_header(tusc, pki):
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-hsts")
    ctx = client_ctx(pki.path("a.crt"))
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": "1"})
    assert r.header("Strict-Transport-Security") == "max-age=31536000", r
    r = https_request(srv, ctx, "HEAD", "/files/nope")
    assert r.status == 404 and r.header("Strict-Transport-Security"), r
    srv2 = tls_server(tusc, pki, "a.crt", "a.key", "-hsts", "-hsts-max-age", "600")
    r = https_request(srv2, ctx, "OPTIONS", "/files/")
    assert r.header("Strict-Transport-Security") == "max-age=600", r


@pytest.mark.parametrize("raw,status", [
    (b"GET /files/ HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"OPTIONS /files/ HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n", 431),
    (b"OPTIONS /files/ HTTP/2.1\r\nHost: a\r\n\r\n", 505),
    (b"OPTIONS /files/ HTTP/1.1\r\nHost: a\r\nExpect: nope\r\n\r\n", 417),
], ids=["400", "431", "505", "417"])
def test_hsts_on_http_layer_rejections(tusc, pki, raw, status):
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-hsts")
    ctx = client_ctx(pki.path("a.crt"))
    with tls_sock(srv, ctx) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.split(" ")[1] == str(status), head
    assert "\r\nStrict-Transport-Security: max-age=31536000" in head, head


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_request(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    status = int(head.split(" ")[1])
    headers = dict((k.lower(), v.strip()) for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:]))
    return status, headers


def test_http_redirect_listener(tusc, pki):
    rport = free_port()
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-http-redirect-port", str(rport))
    status, h = plain_request(rport, b"GET /files/abc?x=1&y=2 HTTP/1.1\r\nHost: 127.0.0.1:"
                              + str(rport).encode() + b"\r\n\r\n")
    assert status == 308
    assert h["location"] == f"https://127.0.0.1:{srv.port}/files/abc?x=1&y=2"
    # A POST with a body: 308 keeps the method; the body is never read.
    status, h = plain_request(rport, b"POST /files/ HTTP/1.1\r\nHost: uploads.example\r\n"
                              b"Content-Length: 5\r\nUpload-Length: 5\r\n\r\nhello")
    assert status == 308 and h["location"] == f"https://uploads.example:{srv.port}/files/"
    status, h = plain_request(rport, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
    assert status == 308 and h["location"] == f"https://[::1]:{srv.port}/"
    for bad in (b"a b", b"x/y", b"x\"y", b""):
        status, h = plain_request(rport, b"GET / HTTP/1.1\r\nHost: " + bad + b"\r\n\r\n")
        assert status == 400, bad
        assert "location" not in h
    # The follow-up on the https port works.
    assert https_request(srv, client_ctx(pki.path("a.crt")), "OPTIONS", "/files/").status < 300


def test_http_redirect_allowed_hosts(tusc, pki):
    rport = free_port()
    tls_server(tusc, pki, "a.crt", "a.key", "-http-redirect-port", str(rport),
               "-allowed-hosts", "uploads.example,127.0.0.1")
    status, h = plain_request(rport, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert status == 421 and "location" not in h
    status, h = plain_request(rport, b"GET / HTTP/1.1\r\nHost: UPLOADS.example:8080\r\n\r\n")
    assert status == 308 and h["location"].startswith("https://UPLOADS.example:")


def test_handshake_must_finish_within_network_timeout(tusc, pki):
    srv = tls_server(tusc, pki, "a.crt", "a.key", "-network-timeout", "1s")
    with socket.create_connection((srv.host, srv.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        start = time.monotonic()
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 8


# --------------------------------------------------------------------------------------
# SIGHUP


def wait_log(srv, text, timeout=IO_TIMEOUT):
    deadline_poll(lambda: text in srv.stderr(), timeout, what=f"{text!r} in the log")


def replace_file(dst, src):
    tmp = str(dst) + ".new"
    with open(src, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.replace(tmp, dst)


def test_sighup_swaps_certificate_without_dropping_uploads(tusc, pki, tmp_path):
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    replace_file(cert, pki.path("a.crt"))
    replace_file(key, pki.path("a.key"))
    srv = tusc("-tls-certificate", str(cert), "-tls-key", str(key))
    ctx = client_ctx(pki.path("ab-bundle.crt"))
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": "200000"})
    path = urllib.parse.urlsplit(r.header("Location")).path
    body = os.urandom(200000)

    old = tls_sock(srv, ctx)
    assert peer_serial(old) == "A1A1"
    old.sendall((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                 f"Upload-Offset: 0\r\nContent-Type: {OCTET}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:100000])

    replace_file(cert, pki.path("b.crt"))
    replace_file(key, pki.path("b.key"))
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "serial=B2B2")
    with tls_sock(srv, ctx) as s:
        assert peer_serial(s) == "B2B2"

    # The old connection finishes its upload on the old certificate's session.
    old.sendall(body[100000:])
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = old.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 204"), data
    assert b"Upload-Offset: 200000" in data
    assert peer_serial(old) == "A1A1"
    old.close()
    assert srv.data_file(path).read_bytes() == body

    # A broken file on the next reload: the current certificate stays, and why is logged.
    cert.write_text("not a certificate\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "ReloadFailed")
    assert "cannot load certificate chain" in srv.stderr()
    with tls_sock(srv, ctx) as s:
        assert peer_serial(s) == "B2B2"
    # Mismatched pair: also refused.
    replace_file(cert, pki.path("a.crt"))
    srv.proc.send_signal(signal.SIGHUP)
    deadline_poll(lambda: srv.stderr().count("ReloadFailed") >= 2, IO_TIMEOUT, what="2nd failure")
    assert "does not match" in srv.stderr()
    with tls_sock(srv, ctx) as s:
        assert peer_serial(s) == "B2B2"
    assert srv.running()


def test_sighup_without_tls_keeps_running(server):
    server.proc.send_signal(signal.SIGHUP)
    wait_log(server, "ReloadRequested")
    assert server.request("OPTIONS", "/files/").status in (200, 204)


# --------------------------------------------------------------------------------------
# real clients


@pytest.fixture(scope="module")
def mid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tlsclients") / "random-12MB.bin"
    data = os.urandom(12 * 1024 * 1024)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def run_client(cmd, env):
    p = subprocess.run(cmd, cwd=CLIENTS, capture_output=True, timeout=300, env=env)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, f"{cmd}: {p.returncode}\n{out}\n{p.stderr.decode()}"
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def check_stored(srv, url, digest):
    assert url.startswith("https://"), url
    path = urllib.parse.urlsplit(url).path
    h = hashlib.sha256(srv.data_file(path).read_bytes()).hexdigest()
    assert h == digest


def test_tus_js_client_resume_over_tls(tusc, pki, mid_file, tmp_path):
    import shutil
    node = shutil.which("node")
    if not (CLIENTS / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("tests/clients/node_modules missing: run `make clients`", pytrace=False)
    path, digest = mid_file
    srv = tls_server(tusc, pki)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=pki.path("a.crt"))
    endpoint = f"https://127.0.0.1:{srv.port}/files/"
    ev = run_client([node, "upload.js", endpoint, str(path), "--abort-at", str(4 << 20),
                     "--url-storage", str(tmp_path / "urls.json")], env)
    assert [e["event"] for e in ev] == ["created", "aborted", "resume", "done"], ev
    assert 0 < ev[2]["offset"] < 12 * 1024 * 1024
    check_stored(srv, ev[-1]["url"], digest)


def test_tuspy_resume_over_tls(tusc, pki, mid_file):
    path, digest = mid_file
    srv = tls_server(tusc, pki)
    env = dict(os.environ, REQUESTS_CA_BUNDLE=pki.path("a.crt"))
    endpoint = f"https://127.0.0.1:{srv.port}/files/"
    ev = run_client(["/usr/bin/python3", str(CLIENTS / "tuspy_upload.py"), endpoint, str(path),
                     "--chunk-size", str(1 << 20), "--stop-at", str(5 << 20)], env)
    kinds = [e["event"] for e in ev]
    assert kinds[:2] == ["created", "resume"] and kinds[-1] == "done", ev
    assert ev[1]["offset"] >= 5 << 20
    check_stored(srv, ev[0]["url"], digest)
    # Without the CA the client refuses the server: verification really happens.
    env.pop("REQUESTS_CA_BUNDLE")
    p = subprocess.run(["/usr/bin/python3", str(CLIENTS / "tuspy_upload.py"), endpoint, str(path)],
                       capture_output=True, timeout=120, env=env)
    assert p.returncode != 0


# --------------------------------------------------------------------------------------
# -user / -group


def status_ids(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = v.split()
    return out


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


@pytest.fixture
def nobody_dir():
    """An upload dir owned by nobody, on a path nobody can traverse (pytest's own
    tmp dirs are root-only)."""
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="tusc-nobody-")
    os.chmod(base, 0o711)
    up = os.path.join(base, "uploads")
    os.mkdir(up)
    os.chown(up, nobody.pw_uid, nobody.pw_gid)
    yield up
    shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_user_group_drop_after_binding(tusc, pki, nobody_dir):
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    up = nobody_dir
    # Root-only key files: read before the switch, so start-up still works.
    srv = tusc("-tls-certificate", pki.path("a.crt"), "-tls-key", pki.path("a.key"),
               "-user", "nobody", "-group", group, upload_dir=up)
    ids = status_ids(srv.proc.pid)
    assert ids["Uid"] == [str(nobody.pw_uid)] * 4, ids
    assert ids["Gid"] == [str(nobody.pw_gid)] * 4, ids
    assert "0" not in ids.get("Groups", []), ids
    ctx = client_ctx(pki.path("a.crt"))
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": "3", "Content-Type": OCTET},
                      b"abc")
    assert r.status == 201, r
    path = urllib.parse.urlsplit(r.header("Location")).path
    data = srv.data_file(path)
    assert data.read_bytes() == b"abc" and data.stat().st_uid == nobody.pw_uid
    assert "Running as uid" in srv.stderr()


@needs_root
def test_user_drop_refuses_unusable_upload_dir(tusc, tmp_path):
    up = tmp_path / "root-uploads"
    up.mkdir(mode=0o755)
    srv = tusc("-user", "nobody", upload_dir=up, start=False)
    p = subprocess.run(srv.command(), capture_output=True, timeout=60, cwd=srv.workdir)
    err = p.stderr.decode()
    assert p.returncode != 0 and "tusc: listening" not in p.stdout.decode()
    assert "upload directory unusable after switching to user nobody" in err, err


def test_unknown_user_refused(tusc):
    srv = tusc("-user", "no-such-user-tusc", start=False)
    p = subprocess.run(srv.command(), capture_output=True, timeout=60, cwd=srv.workdir)
    assert p.returncode != 0
    assert "unknown user no-such-user-tusc" in p.stderr.decode()


@needs_root
def test_user_drop_gives_unix_socket_to_the_user(tusc, nobody_dir):
    import pwd
    nobody = pwd.getpwnam("nobody")
    sock = os.path.join(os.path.dirname(nobody_dir), "tusc.sock")
    srv = tusc("-unix-sock", sock, "-user", "nobody", upload_dir=nobody_dir, start=False)
    cmd = [a for a in srv.command()]
    # -port/-host are ignored with -unix-sock; keep the harness's command otherwise.
    srv.start(command=cmd)
    st = os.stat(sock)
    assert st.st_uid == nobody.pw_uid
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    s.connect(sock)
    s.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 2")
    s.close()


def test_big_download_and_range_over_tls(tusc, pki):
    srv = tls_server(tusc, pki)
    ctx = client_ctx(pki.path("a.crt"))
    data = os.urandom(9 * 1024 * 1024 + 123)
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": str(len(data)),
                                                    "Content-Type": OCTET}, data)
    assert r.status == 201 and r.header("Upload-Offset") == str(len(data)), r
    path = urllib.parse.urlsplit(r.header("Location")).path
    # Read slowly at first so the server's streamed writes meet back-pressure.
    conn = http.client.HTTPSConnection(srv.host, srv.port, timeout=IO_TIMEOUT, context=ctx)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    got = bytearray(resp.read(1000))
    time.sleep(0.3)
    got += resp.read()
    conn.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    r = https_request(srv, ctx, "GET", path, {"Range": "bytes=100-199"}, tus=False)
    assert r.status == 206 and r.body == data[100:200], r


def negotiated_suite(srv, pki, *args):
    """The suite openssl s_client reports after a handshake with `args`."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-CAfile",
                        pki.path("a.crt"), *args], input=b"", capture_output=True,
                       timeout=IO_TIMEOUT)
    m = re.search(rb"^New, \S+, Cipher is (\S+)", p.stdout, re.M)
    assert m, (p.stdout + p.stderr).decode(errors="replace")
    return m.group(1).decode()


@pytest.mark.parametrize("args, expect", [
    # AES-128-GCM wins whenever the client offers it, even listed after AES-256 (OpenSSL's
    # and so curl's default order): it costs less CPU per byte with AES-NI.
    (["-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"],
     "TLS_AES_128_GCM_SHA256"),
    ([], "TLS_AES_128_GCM_SHA256"),
    # A client that lists ChaCha20 first (no AES-NI) gets ChaCha20.
    (["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"],
     "TLS_CHACHA20_POLY1305_SHA256"),
    (["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"],
     "TLS_CHACHA20_POLY1305_SHA256"),
    # ChaCha20 offered but not first (OpenSSL's default order): the client has AES-NI.
    (["-ciphersuites",
      "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"],
     "TLS_AES_128_GCM_SHA256"),
    (["-ciphersuites", "TLS_AES_256_GCM_SHA384"], "TLS_AES_256_GCM_SHA384"),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"],
     "ECDHE-ECDSA-AES128-GCM-SHA256"),
    # The same over TLS 1.2: ChaCha20 first wins, ChaCha20 later does not.
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"],
     "ECDHE-ECDSA-CHACHA20-POLY1305"),
    (["-tls1_2", "-cipher",
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"],
     "ECDHE-ECDSA-AES128-GCM-SHA256"),
])
def test_cipher_preference(tusc, pki, args, expect):
    srv = tls_server(tusc, pki)
    assert negotiated_suite(srv, pki, *args) == expect


def test_big_upload_over_tls_in_odd_pieces(tusc, pki):
    """Records cut at every possible place by the socket reads: the server decrypts in
    place in its read buffer, and a record begun in one read and finished in the next
    must not overwrite ciphertext not yet read."""
    srv = tls_server(tusc, pki)
    ctx = client_ctx(pki.path("a.crt"))
    body = os.urandom(6 * 1024 * 1024 + 12345)
    r = https_request(srv, ctx, "POST", "/files/", {"Upload-Length": str(len(body))})
    assert r.status == 201, r
    path = urllib.parse.urlsplit(r.header("Location")).path
    with tls_sock(srv, ctx) as s:
        s.sendall(f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                  f"Upload-Offset: 0\r\nContent-Type: {OCTET}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        off, step = 0, 1
        while off < len(body):
            s.sendall(body[off:off + step])  # one TLS record per call, sizes 1 .. 70001
            off += step
            step = step * 7 % 70001 + 1
        data = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 204"), data[:500]
    got = srv.data_file(path).read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
