"""The seed's deployment for real: Debian's haproxy, configured from deploy/haproxy.cfg
(ports, paths, the password hash and the tusc address substituted), doing TLS offload,
Basic auth and the Host check in front of `tusc -behind-proxy -trusted-proxies
127.0.0.1/32`. Also checks that the systemd units' ExecStart lines are accepted by
tusc as written."""
import hashlib
import http.client
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

from conftest import IO_TIMEOUT, OCTET, REPO, Response, deadline_poll

HOST = "uploads.example.com"
USER, PASSWORD = "httpuser", "s3cret-Pa55"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=IO_TIMEOUT):
    def ok():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    deadline_poll(ok, timeout, what=f"port {port}")


def haproxy_config(tmp, p80, p443, pem, tusc_port, pw_hash):
    """deploy/haproxy.cfg with what a test cannot use replaced; everything else as
    shipped."""
    text = (REPO / "deploy" / "haproxy.cfg").read_text()
    out = []
    for line in text.splitlines():
        s = line.strip()
        # Process management the test does itself (foreground, no chroot, no syslog).
        if re.match(r"^(chroot|user haproxy|group haproxy|daemon|stats socket|stats timeout|"
                    r"log /dev/log)\b", s):
            continue
        out.append(line)
    cfg = "\n".join(out) + "\n"
    subs = [
        (r"bind :80\b", f"bind 127.0.0.1:{p80}"),
        (r"bind :443 ssl crt \S+", f"bind 127.0.0.1:{p443} ssl crt {pem}"),
        (r"(user httpuser password )\S+", r"\g<1>" + pw_hash.replace("\\", "\\\\")),
        (r"server tusc1 127\.0\.0\.1:1080", f"server tusc1 127.0.0.1:{tusc_port}"),
    ]
    for pat, rep in subs:
        cfg, n = re.subn(pat, rep, cfg)
        assert n == 1, f"deploy/haproxy.cfg no longer has {pat!r}"
    assert HOST in cfg
    path = tmp / "haproxy.cfg"
    path.write_text(cfg)
    return path


@pytest.fixture
def haproxy_stack(tusc, tmp_path):
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                          if os.path.exists("/usr/sbin/haproxy") else None)
    if haproxy is None:
        pytest.fail("haproxy not installed (scripts/install-deps.sh test)", pytrace=False)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", f"/CN={HOST}", "-addext",
                    f"subjectAltName=DNS:{HOST}"], cwd=tmp_path, check=True,
                   capture_output=True)
    pem = tmp_path / "haproxy.pem"
    pem.write_text((tmp_path / "cert.pem").read_text() + (tmp_path / "key.pem").read_text())
    pw_hash = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True,
                             check=True).stdout.decode().strip()
    srv = tusc("-behind-proxy", "-trusted-proxies", "127.0.0.1/32")
    p80, p443 = free_port(), free_port()
    cfg = haproxy_config(tmp_path, p80, p443, pem, srv.port, pw_hash)
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    log = open(tmp_path / "haproxy.log", "wb")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        wait_port(p443)
        wait_port(p80)
        yield {"tusc": srv, "p80": p80, "p443": p443, "ca": str(tmp_path / "cert.pem")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def via_haproxy(stack, method, path, headers=None, body=None, auth=True, host=HOST):
    ctx = ssl.create_default_context(cafile=stack["ca"])
    raw = socket.create_connection(("127.0.0.1", stack["p443"]), timeout=IO_TIMEOUT)
    sock = ctx.wrap_socket(raw, server_hostname=HOST)
    conn = http.client.HTTPConnection(HOST, stack["p443"], timeout=IO_TIMEOUT)
    conn.sock = sock
    hs = {"Host": host, "Tus-Resumable": "1.0.0"}
    if auth:
        import base64
        hs["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{auth if isinstance(auth, str) else PASSWORD}".encode()).decode()
    hs.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=hs)
        r = conn.getresponse()
        return Response(r.status, r.reason, list(r.getheaders()), r.read())
    finally:
        conn.close()


def requests_seen(srv):
    return srv.stderr().count("event=ResponseOutgoing")


def test_seed_layout_through_haproxy(haproxy_stack):
    st = haproxy_stack
    srv = st["tusc"]

    # No credentials (or wrong ones): HAProxy's challenge with the seed's realm.
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": "10"}, auth=False)
    assert r.status == 401, r
    assert 'realm="UserAuth"' in (r.header("WWW-Authenticate") or ""), r
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": "10"}, auth="wrong")
    assert r.status == 401, r

    # With them: created, and the Location is the public https URL.
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": "10"})
    assert r.status == 201, r
    loc = r.header("Location")
    assert re.fullmatch(rf"https://{re.escape(HOST)}/files/[0-9a-f]{{32}}", loc), loc
    path = urllib.parse.urlsplit(loc).path
    assert r.header("Strict-Transport-Security"), r

    body = os.urandom(10)
    r = via_haproxy(st, "PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, body[:4])
    assert r.status == 204 and r.header("Upload-Offset") == "4", r
    r = via_haproxy(st, "HEAD", path)
    assert r.status == 200 and r.header("Upload-Offset") == "4", r
    r = via_haproxy(st, "PATCH", path, {"Upload-Offset": "4", "Content-Type": OCTET}, body[4:])
    assert r.status == 204 and r.header("Upload-Offset") == "10", r
    assert srv.data_file(path).read_bytes() == body
    # tusc logged the real client (X-Forwarded-For from HAProxy), and it was HTTPS.
    deadline_poll(lambda: "UploadFinished" in srv.stderr(), IO_TIMEOUT, what="UploadFinished")

    # CORS preflight needs no credentials.
    r = via_haproxy(st, "OPTIONS", "/files/", {"Origin": "https://app.example",
                                               "Access-Control-Request-Method": "POST"},
                    auth=False)
    assert r.status in (200, 204), r

    # A wrong Host never reaches tusc. (Five requests reached it so far; its access log
    # line may trail the response a little.)
    deadline_poll(lambda: requests_seen(srv) == 5, IO_TIMEOUT, what="5 access log lines")
    before = requests_seen(srv)
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": "10"}, host="evil.example")
    assert r.status == 403, r
    r = via_haproxy(st, "GET", path, host="evil.example", auth=False)
    assert r.status == 403, r
    time.sleep(0.3)
    assert requests_seen(srv) == before
    assert "evil.example" not in srv.stderr()

    # Plain HTTP on :80 is redirected to https with a 308 (method and body kept).
    with socket.create_connection(("127.0.0.1", st["p80"]), timeout=IO_TIMEOUT) as s:
        s.sendall(f"POST /files/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode())
        head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 308"), head
    assert f"location: https://{HOST}/files/" in head.lower(), head


def test_bigger_upload_streams_through_haproxy(haproxy_stack):
    st = haproxy_stack
    data = os.urandom(8 * 1024 * 1024)
    r = via_haproxy(st, "POST", "/files/", {"Upload-Length": str(len(data))})
    path = urllib.parse.urlsplit(r.header("Location")).path
    r = via_haproxy(st, "PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, data)
    assert r.status == 204, r
    got = st["tusc"].data_file(path).read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------
# the systemd units' command lines


def exec_start(unit):
    text = (REPO / "deploy" / unit).read_text()
    m = re.search(r"^ExecStart=(.*?)(?<!\\)$", text.replace("\\\n", " "), re.M)
    assert m, unit
    return shlex.split(m.group(1))


@pytest.mark.parametrize("unit", ["tusc.service", "tusc-behind-haproxy.service"])
def test_systemd_unit_flags_are_accepted(tusc, tmp_path, unit):
    argv = exec_start(unit)
    assert argv[0] == "/usr/local/bin/tusc"
    text = (REPO / "deploy" / unit).read_text()
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/srv/tusc/uploads",
                "LimitNOFILE=", "LimitFSIZE=", "LimitCPU=", "LimitAS=", "LimitNPROC=",
                "TasksMax=", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert key in text, (unit, key)
    # Point the paths at test files; keep every flag.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-days", "2", "-subj", "/CN=x"], cwd=tmp_path, check=True,
                   capture_output=True)
    (tmp_path / "htpasswd").write_text(
        "httpuser:" + subprocess.run(["openssl", "passwd", "-6", "pw"], capture_output=True,
                                     check=True).stdout.decode().strip() + "\n")
    (tmp_path / "hooks").mkdir()
    repl = {"/etc/tusc/tls/fullchain.pem": str(tmp_path / "c.pem"),
            "/etc/tusc/tls/privkey.pem": str(tmp_path / "k.pem"),
            "/etc/tusc/htpasswd": str(tmp_path / "htpasswd"),
            "/etc/tusc/hooks": str(tmp_path / "hooks"),
            "/srv/tusc/uploads": str(tmp_path / "up")}
    args = [repl.get(a, a) for a in argv[1:]]
    for flag, value in (("-port", "0"), ("-host", "127.0.0.1")):
        args[args.index(flag) + 1] = value
    if "-http-redirect-port" in args:
        args[args.index("-http-redirect-port") + 1] = str(free_port())
    srv = tusc(start=False)
    srv.start(command=[srv.command()[0]] + args)
    assert srv.running()
