"""Command line: the seed's systemd command line starts, bad flags exit 2, -help 0."""
import subprocess

import pytest

from conftest import SANITIZER_MARKERS, STOP_TIMEOUT, TUSC_BIN, deadline_poll, sanitizer_env


def run(args, tmp_path, timeout=STOP_TIMEOUT):
    p = subprocess.run([TUSC_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, env=sanitizer_env(), cwd=tmp_path)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKERS:
        assert m not in err, err
    return p.returncode, out, err


def test_seed_command_line_starts(tusc, tmp_path):
    data = tmp_path / "tusupload"
    hooks = tmp_path / "hooks"
    data.mkdir()
    hooks.mkdir()
    srv = tusc(start=False)
    srv.start(command=[TUSC_BIN, "-dir", str(data), "-hooks-dir", str(hooks), "-behind-proxy",
                       "-port", "0", "-host", "127.0.0.1"])
    r = srv.request("OPTIONS", "/files/", tus=False)
    assert r.status == 200, r
    up = srv.create(length=4)
    assert srv.patch(up, 0, b"seed").status == 204
    uid = up.rsplit("/", 1)[1]
    found = [p for p in data.rglob(uid + "*")]
    assert found, "upload files should be under -dir"
    r = srv.request("POST", "/files/", {"Upload-Length": "1", "X-Forwarded-Host": "seed.example",
                                        "X-Forwarded-Proto": "https"})
    assert r.header("Location").startswith("https://seed.example/files/"), r


def test_go_flag_syntax_variants(tusc, tmp_path):
    data = tmp_path / "d"
    srv = tusc(start=False)
    srv.start(command=[TUSC_BIN, "--upload-dir=" + str(data), "-port=0", "--host", "127.0.0.1",
                       "-max-size=100", "-behind-proxy=false", "-workers", "1"])
    r = srv.request("OPTIONS", "/files/", tus=False)
    assert r.header("Tus-Max-Size") == "100", r


def test_unknown_flag_exits_2_with_usage(tmp_path):
    rc, out, err = run(["-no-such-flag", "-port", "0"], tmp_path)
    assert rc == 2, (rc, out, err)
    assert "no-such-flag" in err, err
    assert "upload-dir" in err, "usage should be printed on stderr"


@pytest.mark.parametrize("args,flag", [
    (["-port", "abc"], "port"),
    (["-port", "70000"], "port"),
    (["-max-size", "-5"], "max-size"),
    (["-max-size", "lots"], "max-size"),
    (["-network-timeout", "forever"], "network-timeout"),
    (["-shutdown-timeout", "5parsecs"], "shutdown-timeout"),
    (["-upload-dir"], "upload-dir"),
])
def test_bad_flag_value_exits_2_naming_flag(tmp_path, args, flag):
    rc, out, err = run(args, tmp_path)
    assert rc == 2, (rc, out, err)
    assert flag in err, err


@pytest.mark.parametrize("flag", ["-help", "--help", "-h"])
def test_help_exits_0(tmp_path, flag):
    rc, out, err = run([flag], tmp_path)
    assert rc == 0, (rc, out, err)
    assert "upload-dir" in out + err
    assert "base-path" in out + err


def test_version_exits_0(tmp_path):
    rc, out, err = run(["-version"], tmp_path)
    assert rc == 0, (rc, out, err)
    assert (out + err).strip()


def test_port_file(tusc, tmp_path):
    pf = tmp_path / "port"
    srv = tusc("-port-file", str(pf))
    # The file may appear just after the stdout line; a reader must never see it
    # half-written, so any content it has must be the whole port.
    def content():
        return pf.exists() and pf.read_text()
    text = deadline_poll(content, 10, what="the port file")
    assert text.strip() == str(srv.port), text


def test_unix_socket(tusc, tmp_path):
    from conftest import RawConn, build_request
    sock_path = tmp_path / "tusc.sock"
    srv = tusc("-unix-sock", str(sock_path))
    assert srv.unix_path == str(sock_path)
    with RawConn.unix(sock_path) as c:
        c.send(build_request("POST", "/files/", [("Host", "uploads.example"),
                                                 ("Tus-Resumable", "1.0.0"),
                                                 ("Upload-Length", "2")]))
        r = c.read_response("POST")
        assert r.status == 201, r
        assert r.header("Location").startswith("http://uploads.example/files/"), r
        up = r.header("Location")[len("http://uploads.example"):]
        c.send(build_request("PATCH", up, [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                                           ("Content-Type", "application/offset+octet-stream")],
                             b"ok"))
        r = c.read_response("PATCH")
        assert r.status == 204, r


def test_ipv6_loopback(tusc):
    import socket as so
    try:
        s = so.socket(so.AF_INET6, so.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv = tusc("-host", "::1")
    assert srv.host == "::1"
    r = srv.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 201, r
    assert r.header("Location").startswith(f"http://[::1]:{srv.port}/files/"), r
