"""Host and proxy trust: -allowed-hosts answers 421 for other Host headers and never
echoes them; -trusted-proxies makes X-Forwarded-*/Forwarded count only from listed
peers (the client address then shows in logs), while -behind-proxy alone keeps tusd's
behaviour and warns at start-up.

A second loopback address (127.0.0.2, which Linux routes to lo) stands in for a
client that is not a trusted proxy."""
import socket
import subprocess
import urllib.parse

import pytest

from conftest import TUSC_BIN, RawConn, build_request, deadline_poll, sanitizer_env

HOSTS = "uploads.example,Files.Example:8443,[::1]"


def raw_post(srv, host, extra=None, source=None):
    hs = [("Host", host), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")] + (extra or [])
    data = build_request("POST", "/files/", hs)
    if source is None:
        return srv.raw_request(data, "POST")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(15)
    sock.connect((srv.host, srv.port))
    c = RawConn.__new__(RawConn)
    c.sock, c.buf, c.eof = sock, b"", False
    try:
        c.send(data)
        r, _ = c.read_final_response("POST")
        return r
    finally:
        c.close()


@pytest.mark.parametrize("host,location_host", [
    ("uploads.example", "uploads.example"),
    ("UPLOADS.example", "UPLOADS.example"),
    ("uploads.example:8080", "uploads.example:8080"),
    ("uploads.example.", "uploads.example."),
    ("files.example", "files.example"),   # the port in the list is not compared
    ("[::1]:1080", "[::1]:1080"),
])
def test_allowed_hosts_accepted(tusc, host, location_host):
    srv = tusc("-allowed-hosts", HOSTS)
    r = raw_post(srv, host)
    assert r.status == 201, r
    assert urllib.parse.urlsplit(r.header("Location")).netloc == location_host, r


@pytest.mark.parametrize("host", [
    "evil.example", "uploads.example.evil.example", "evil.example:80", "uploads.examplex",
    "127.0.0.1", "[::2]", "xn--evil-host.example",
])
def test_other_hosts_get_421_and_are_not_echoed(tusc, host):
    srv = tusc("-allowed-hosts", HOSTS)
    r = raw_post(srv, host)
    assert r.status == 421, r
    assert r.reason == "Misdirected Request", r
    assert r.error_code() == "ERR_MISDIRECTED_REQUEST", r
    assert not r.has("Location"), r
    needle = host.strip("[]") if host.startswith("[") else host.split(":")[0]
    assert needle.encode() not in r.body, r
    assert all(needle not in v for _, v in r.headers), r
    # every method, OPTIONS too: the host is wrong for all of them
    for method in ("OPTIONS", "HEAD", "GET", "PATCH", "DELETE"):
        data = build_request(method, "/files/0123456789abcdef0123456789abcdef",
                             [("Host", host), ("Tus-Resumable", "1.0.0")])
        assert srv.raw_request(data, method).status == 421, method
    assert not any(srv.upload_dir.rglob("*.info"))


def test_missing_or_duplicate_host_refused_when_limited(tusc):
    srv = tusc("-allowed-hosts", HOSTS)
    r = srv.raw_request(b"POST /files/ HTTP/1.0\r\nTus-Resumable: 1.0.0\r\n"
                        b"Upload-Length: 1\r\nContent-Length: 0\r\n\r\n", "POST")
    assert r.status == 421, r
    data = build_request("POST", "/files/", [("Host", "uploads.example"),
                                             ("Host", "evil.example"),
                                             ("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")])
    r = srv.raw_request(data, "POST")
    assert r.status in (400, 421), r
    assert b"evil" not in r.body


def test_forwarded_host_from_trusted_proxy_is_checked_too(tusc):
    srv = tusc("-allowed-hosts", HOSTS, "-behind-proxy", "-trusted-proxies", "127.0.0.1")
    r = raw_post(srv, "uploads.example", [("X-Forwarded-Host", "evil.example")])
    assert r.status == 421, r
    r = raw_post(srv, "uploads.example", [("X-Forwarded-Host", "files.example"),
                                          ("X-Forwarded-Proto", "https")])
    assert r.status == 201, r
    assert r.header("Location").startswith("https://files.example/files/"), r


def test_forwarded_host_is_checked_like_x_forwarded_host(tusc):
    """Location may come from Forwarded: host= (it wins over X-Forwarded-Host), so the
    allow list must see that host too, whichever header names it."""
    srv = tusc("-allowed-hosts", HOSTS, "-trusted-proxies", "127.0.0.1")
    for extra in ([("Forwarded", "host=evil.example;proto=https")],
                  [("Forwarded", 'for=192.0.2.1;host="evil.example"')],
                  [("X-Forwarded-Host", "files.example"), ("Forwarded", "host=evil.example")]):
        r = raw_post(srv, "uploads.example", extra)
        assert r.status == 421, (extra, r)
        assert "evil.example" not in repr(r), r
    assert not any(srv.upload_dir.rglob("*.info"))
    # An allowed Forwarded host is used, even over a disallowed X-Forwarded-Host it
    # replaces (that one never reaches a Location).
    r = raw_post(srv, "uploads.example", [("X-Forwarded-Host", "evil.example"),
                                          ("Forwarded", "host=files.example;proto=https")])
    assert r.status == 201, r
    assert r.header("Location").startswith("https://files.example/files/"), r
    # An unparseable Forwarded is ignored (as tusd), so X-Forwarded-Host decides.
    r = raw_post(srv, "uploads.example", [("X-Forwarded-Host", "evil.example"),
                                          ("Forwarded", "host=files.example;;=x")])
    assert r.status == 421, r


def test_no_list_accepts_any_host(server):
    r = raw_post(server, "anything.example")
    assert r.status == 201, r


# --- proxies --------------------------------------------------------------------------

PROXY_HEADERS = [("X-Forwarded-Host", "tus.example"), ("X-Forwarded-Proto", "https"),
                 ("X-Forwarded-For", "203.0.113.7, 10.0.0.1")]


def test_trusted_proxy_headers_honoured(tusc):
    srv = tusc("-behind-proxy", "-trusted-proxies", "10.0.0.0/8, 127.0.0.1/32,::1")
    r = raw_post(srv, "internal:1080", PROXY_HEADERS)
    assert r.status == 201, r
    assert r.header("Location").startswith("https://tus.example/files/"), r
    deadline_poll(lambda: "203.0.113.7" in srv.stderr(), 10, what="client address in log")
    assert "behind-proxy without -trusted-proxies" not in srv.stderr()

    r = raw_post(srv, "internal:1080", [("Forwarded", 'for="[2001:db8::5]";proto=https;'
                                                     "host=fwd.example")])
    assert r.status == 201, r
    assert r.header("Location").startswith("https://fwd.example/files/"), r
    deadline_poll(lambda: "2001:db8::5" in srv.stderr(), 10, what="Forwarded for= in log")


def test_untrusted_peer_headers_ignored(tusc):
    # 127.0.0.2 is not in the list: its forwarding headers are a client's claims
    srv = tusc("-behind-proxy", "-trusted-proxies", "127.0.0.1/32,10.0.0.0/8")
    r = raw_post(srv, "internal:1080", PROXY_HEADERS, source="127.0.0.2")
    assert r.status == 201, r
    assert r.header("Location").startswith("http://internal:1080/files/"), r
    r = raw_post(srv, "internal:1080", PROXY_HEADERS, source="127.0.0.1")
    assert r.header("Location").startswith("https://tus.example/files/"), r
    srv.stop()
    log = srv.stderr()
    assert log.count("203.0.113.7") >= 1
    # the untrusted request is logged with its real peer, never with the claimed one
    lines = [l for l in log.splitlines() if "ResponseOutgoing" in l and "127.0.0.2" in l]
    assert lines and not any("203.0.113.7" in l for l in lines), log


def test_list_without_match_ignores_everyone(tusc):
    srv = tusc("-behind-proxy", "-trusted-proxies", "192.0.2.0/24")
    r = raw_post(srv, "internal:1080", PROXY_HEADERS)
    assert r.header("Location").startswith("http://internal:1080/files/"), r


def test_behind_proxy_without_list_keeps_tusd_behaviour_and_warns(tusc):
    srv = tusc("-behind-proxy")
    r = raw_post(srv, "internal:1080", PROXY_HEADERS, source="127.0.0.2")
    assert r.header("Location").startswith("https://tus.example/files/"), r
    err = srv.stderr()
    assert err.count("-behind-proxy without -trusted-proxies") == 1, err


def test_without_behind_proxy_headers_ignored(server):
    r = raw_post(server, "internal:1080", PROXY_HEADERS)
    assert r.header("Location").startswith("http://internal:1080/files/"), r


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "300.1.1.1", "10.0.0.0/33", "proxy.example"])
def test_bad_trusted_proxies_refused(tmp_path, bad):
    p = subprocess.run([TUSC_BIN, "-port", "0", "-upload-dir", str(tmp_path / "up"),
                        "-behind-proxy", "-trusted-proxies", "127.0.0.1," + bad],
                       capture_output=True, timeout=60, env=sanitizer_env())
    assert p.returncode == 2, p
    assert bad in p.stderr.decode(), p.stderr.decode()
