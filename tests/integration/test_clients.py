"""Real clients against the real server: tus-js-client under node and tuspy.

Each uploads a 50 MB random file; the stored bytes must equal the source (sha256 of
the GET download and of the data file in the upload dir). tus-js-client also aborts
mid-way and resumes."""
import hashlib
import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from conftest import REPO, random_file

CLIENTS = REPO / "tests" / "clients"
SIZE = 50 * 1024 * 1024
CLIENT_TIMEOUT = 300


@pytest.fixture(scope="session")
def node_clients():
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node/npm not found (needed for tus-js-client)", pytrace=False)
    if not (CLIENTS / "node_modules" / "tus-js-client").is_dir():
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=CLIENTS, capture_output=True, timeout=300)
        assert p.returncode == 0, p.stderr.decode()
    return node


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clients") / "random-50MB.bin"
    return path, random_file(path, SIZE)


def events(stdout):
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def stored_sha256(srv, url):
    path = urllib.parse.urlsplit(url).path
    h = hashlib.sha256()
    import http.client
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200, (r.status, r.read()[:200])
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
            h.update(chunk)
        assert n == SIZE, n
    finally:
        conn.close()
    fh = hashlib.sha256()
    with open(srv.data_file(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            fh.update(chunk)
    assert fh.hexdigest() == h.hexdigest(), "data file differs from the download"
    return h.hexdigest()


def run_client(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=CLIENT_TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return events(out)


def test_tus_js_client_upload(tusc, node_clients, big_file):
    path, digest = big_file
    srv = tusc()
    ev = run_client([node_clients, "upload.js", srv.url("/files/"), str(path),
                     "--chunk-size", str(8 * 1024 * 1024)], CLIENTS)
    done = [e for e in ev if e["event"] == "done"]
    assert done and done[0]["url"], ev
    assert stored_sha256(srv, done[0]["url"]) == digest


@pytest.mark.parametrize("resume", ["url", "storage"])
def test_tus_js_client_abort_and_resume(tusc, node_clients, big_file, tmp_path, resume):
    path, digest = big_file
    srv = tusc()
    abort_at = 20 * 1024 * 1024
    # No chunk size: one PATCH for the whole file, so the abort cuts a request body
    # in the middle and the server must keep what it got.
    ev = run_client([node_clients, "upload.js", srv.url("/files/"), str(path),
                     "--abort-at", str(abort_at), "--resume", resume,
                     "--url-storage", str(tmp_path / "urls.json")], CLIENTS)
    kinds = [e["event"] for e in ev]
    assert kinds == ["created", "aborted", "resume", "done"], ev
    resumed = [e for e in ev if e["event"] == "resume"][0]["offset"]
    assert 0 < resumed < SIZE, ev
    done = ev[-1]
    assert done["resumed"] is True
    assert done["url"] == ev[0]["url"], ev
    assert stored_sha256(srv, done["url"]) == digest


def test_tuspy_upload(tusc, big_file):
    path, digest = big_file
    srv = tusc()
    ev = run_client(["/usr/bin/python3", str(CLIENTS / "tuspy_upload.py"), srv.url("/files/"),
                     str(path), "--chunk-size", str(5 * 1024 * 1024)], CLIENTS)
    done = [e for e in ev if e["event"] == "done"]
    assert done and done[0]["offset"] == SIZE, ev
    assert stored_sha256(srv, done[0]["url"]) == digest


def test_tuspy_stop_and_resume(tusc, big_file):
    path, digest = big_file
    srv = tusc()
    ev = run_client(["/usr/bin/python3", str(CLIENTS / "tuspy_upload.py"), srv.url("/files/"),
                     str(path), "--chunk-size", str(5 * 1024 * 1024),
                     "--stop-at", str(23 * 1024 * 1024)], CLIENTS)
    kinds = [e["event"] for e in ev]
    assert kinds == ["created", "resume", "done"], ev
    assert ev[1]["offset"] == ev[0]["offset"] >= 23 * 1024 * 1024, ev
    assert stored_sha256(srv, ev[-1]["url"]) == digest
