"""tusc-upload with authentication, TLS and a size limit: the server's refusals fail the
files they concern, with the server's message, and the others go on."""
import base64
import subprocess

import pytest

from uploadlib import make_tree, random_file, server_files

MiB = 1 << 20


def test_over_size_file_fails_with_413_others_succeed(tusc, upload, tmp_path):
    srv = tusc("-max-size", str(1 * MiB))
    src = tmp_path / "src"
    expect = make_tree(src, 5, 1000)
    random_file(src / "huge.bin", 2 * MiB)
    up = upload(srv.url("/files/"), [src])
    assert up.rc == 1, up
    failed = up.by_outcome("failed")
    assert [f["path"].rsplit("/", 1)[-1] for f in failed] == ["huge.bin"]
    assert "413" in failed[0]["error"] and "ERR_MAX_SIZE_EXCEEDED" in failed[0]["error"]
    assert len(up.by_outcome("uploaded")) == 5
    assert server_files(srv.upload_dir) == expect
    assert "huge.bin: failed: server answered 413" in up.err


@pytest.fixture
def htpasswd(tmp_path):
    h = subprocess.run(["openssl", "passwd", "-6", "s3cret"], capture_output=True, check=True,
                       timeout=30).stdout.decode().strip()
    p = tmp_path / "users.htpasswd"
    p.write_text(f"alice:{h}\n")
    return p


def test_basic_auth_and_header(tusc, upload, tmp_path, htpasswd):
    srv = tusc("-auth-htpasswd", str(htpasswd))
    src = tmp_path / "src"
    expect = make_tree(src, 4, 700)
    no = upload(srv.url("/files/"), [src], state=tmp_path / "j0")
    assert no.rc == 1 and no.summary["failed"] == 4, no
    assert "401" in no.files[0]["error"]
    wrong = upload(srv.url("/files/"), [src], "-u", "alice:nope", state=tmp_path / "j1")
    assert wrong.rc == 1 and wrong.summary["failed"] == 4, wrong
    ok = upload(srv.url("/files/"), [src], "-u", "alice:s3cret", state=tmp_path / "j2")
    assert ok.rc == 0, ok
    assert server_files(srv.upload_dir) == expect
    # The same credentials as a header (-H is how bearer tokens are sent).
    token = base64.b64encode(b"alice:s3cret").decode()
    src2 = tmp_path / "src2"
    expect2 = make_tree(src2, 2, 300, seed=7)
    hdr = upload(srv.url("/files/"), [src2], "-H", f"Authorization: Basic {token}",
                 state=tmp_path / "j3")
    assert hdr.rc == 0, hdr


@pytest.fixture
def cert(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "srv.key", "-out",
                    "srv.crt", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], cwd=d, capture_output=True, check=True,
                   timeout=60)
    return d / "srv.crt", d / "srv.key"


def test_tls_with_cacert_insecure_and_refused(tusc, upload, tmp_path, cert):
    crt, key = cert
    srv = tusc("-tls-certificate", str(crt), "-tls-key", str(key))
    url = f"https://127.0.0.1:{srv.port}/files/"
    src = tmp_path / "src"
    expect = make_tree(src, 3, 5000, large_sizes=(3 * MiB,))
    refused = upload(url, [src], "--retries", "0", state=tmp_path / "j0")
    assert refused.rc == 1, refused
    assert "certificate" in refused.err.lower(), refused
    ok = upload(url, [src], "--cacert", str(crt), state=tmp_path / "j1")
    assert ok.rc == 0, ok
    assert all(f["url"].startswith("https://") for f in ok.files)
    assert server_files(srv.upload_dir) == expect
    insecure = upload(url, [src], "-k", state=tmp_path / "j2")
    assert insecure.rc == 0, insecure
