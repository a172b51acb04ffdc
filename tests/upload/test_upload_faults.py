"""tusc-upload under real faults: a proxy that drops, resets and stalls connections or
answers 429/503 itself; the server killed with SIGKILL mid-run; the uploader killed with
SIGKILL mid-run and run again (nothing finished is sent again); uploads gone from the
server; two uploaders on one journal."""
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from uploadlib import (deadline_poll, make_tree, random_file, run_upload, sanitizer_env,
                      server_files, upload_cmd, check_sanitizer, Upload)

MiB = 1 << 20


def metric(srv, name):
    with urllib.request.urlopen(srv.url("/metrics"), timeout=15) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_connection_dropped_or_reset_mid_patch_resumes(tusc, upload, proxy_factory, tmp_path,
                                                       mode):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    f = tmp_path / "f.bin"
    digest = random_file(f, 24 * MiB)
    # Three connections die after 5 MiB each; the uploader HEADs and continues.
    proxy.inject(mode, after=5 * MiB, faults=3)
    up = upload(proxy.url(), [f], "--checksum", "none", "-v")
    assert up.rc == 0, up
    assert proxy.injected == 3
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    # The server kept the bytes of each cut PATCH: nothing was sent twice.
    assert metric(srv, "tusd_bytes_received") == 24 * MiB
    assert up.files[0]["sent"] == 24 * MiB


def test_checksummed_patch_cut_is_sent_again(tusc, upload, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    f = tmp_path / "f.bin"
    digest = random_file(f, 12 * MiB)
    proxy.inject("drop", after=3 * MiB, faults=2)
    up = upload(proxy.url(), [f], "--checksum", "sha256", "--checksum-chunk", "4M", "-v")
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    patches = [l for l in srv.stderr().splitlines()
               if "event=ResponseOutgoing" in l and "method=PATCH" in l and "status=204" in l]
    assert len(patches) == 3, patches  # 4M + 4M + 4M, each acknowledged once


def test_stalled_transfer_is_detected_and_retried(tusc, upload, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    f = tmp_path / "f.bin"
    digest = random_file(f, 8 * MiB)
    proxy.inject("stall", after=2 * MiB, faults=1)
    up = upload(proxy.url(), [f], "--checksum", "none", "--speed-time", "2", "-v")
    assert up.rc == 0, up
    assert proxy.injected == 1
    assert re.search(r"(Operation too slow|Timeout).*retry 1", up.err), up
    assert server_files(srv.upload_dir) == {"f.bin": digest}


def test_429_with_retry_after_is_honoured(tusc, upload, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    src = tmp_path / "src"
    expect = make_tree(src, 3, 1000)
    resp = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nslow\n")
    proxy.inject("respond", faults=2, response=resp)
    up = upload(proxy.url(), [src], "-j", "1", "-v")
    assert up.rc == 0, up
    assert proxy.injected == 2
    assert up.err.count("retry 1 in 2.0 s") + up.err.count("retry 2 in 2.0 s") == 2, up
    assert server_files(srv.upload_dir) == expect


def test_5xx_that_never_ends_fails_after_retries(tusc, upload, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    f = tmp_path / "f.txt"
    f.write_text("x")
    resp = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n"
            b"\r\nbusy now\n")
    proxy.inject("respond", faults=1000, response=resp)
    up = upload(proxy.url(), [f], "--retries", "2")
    assert up.rc == 1, up
    assert proxy.injected == 3  # OPTIONS: the first try and two retries


def test_server_killed_mid_run_uploader_carries_on(tusc, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    src = tmp_path / "src"
    expect = make_tree(src, 200, 4096, large_sizes=(16 * MiB,))
    state = tmp_path / "journal"
    cmd = upload_cmd(proxy.url(), [src], state, "-j", "4", "--limit-rate", "8M", "-v")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=sanitizer_env())
    try:
        deadline_poll(lambda: len(list(Path(srv.upload_dir).rglob("*.info"))) >= 40, 60,
                      what="40 uploads on the server")
        srv.proc.kill()  # SIGKILL, by PID
        srv.proc.wait()
        srv.start()  # same upload dir, new port
        proxy.retarget(srv.port)
        out, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    up = Upload(p.returncode, out.decode(), err.decode())
    check_sanitizer(up.err)
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == expect


def journal_records(state):
    recs = []
    for line in Path(state).read_text().splitlines():
        op, key, url = line.split(" ")
        recs.append((op, key, url))
    return recs


def test_uploader_killed_mid_run_rerun_sends_nothing_twice(tusc, tmp_path):
    srv = tusc()
    src = tmp_path / "src"
    expect = make_tree(src, 300, 65536, large_sizes=(20 * MiB,))
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    state = tmp_path / "journal"
    cmd = upload_cmd(srv.url("/files/"), [src], state, "-j", "4", "--limit-rate", "6M",
                     "--checksum", "none")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=sanitizer_env())
    try:
        deadline_poll(lambda: state.exists() and
                      sum(1 for r in journal_records(state) if r[0] == "D") >= 60, 90,
                      what="60 finished files in the journal")
    finally:
        p.kill()  # SIGKILL, by PID: no chance to clean up
        p.wait()
    done_urls = {r[2] for r in journal_records(state) if r[0] == "D"}
    log_mark = len(srv.stderr().splitlines())

    up = run_upload(srv.url("/files/"), [src], state, "-j", "4", "--checksum", "none")
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == expect
    # Every file finished before the kill was skipped from the journal ...
    skipped = {f["url"] for f in up.by_outcome("skipped")}
    assert done_urls <= skipped
    assert all(f["sent"] == 0 for f in up.by_outcome("skipped"))
    # ... the rerun sent no request at all to those uploads ...
    later = srv.stderr().splitlines()[log_mark:]
    done_paths = {u.split("://", 1)[1].split("/", 1)[1] for u in done_urls}
    touched = [l for l in later if "event=ResponseOutgoing" in l and
               any(f"path=/{d}" in l for d in done_paths)]
    assert touched == []
    # ... and no byte reached the server twice (cut PATCHes keep what arrived).
    assert metric(srv, "tusd_bytes_received") == total


def test_upload_gone_on_server_starts_again(tusc, tmp_path):
    srv = tusc()
    f = tmp_path / "f.bin"
    digest = random_file(f, 16 * MiB)
    state = tmp_path / "journal"
    cmd = upload_cmd(srv.url("/files/"), [f], state, "--limit-rate", "2M", "--checksum", "none")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=sanitizer_env())
    try:
        deadline_poll(lambda: state.exists() and journal_records(state), 30,
                      what="the upload URL in the journal")
    finally:
        p.kill()
        p.wait()
    (_, _, url), = journal_records(state)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    assert srv.request("DELETE", path).status == 204
    up = run_upload(srv.url("/files/"), [f], state, "--checksum", "none")
    assert up.rc == 0, up
    assert up.files[0]["url"] != url
    assert server_files(srv.upload_dir) == {"f.bin": digest}


def test_two_uploaders_share_one_journal(tusc, tmp_path):
    srv = tusc()
    a, b = tmp_path / "a", tmp_path / "b"
    # Distinct relative paths (ta/..., tb/...) so the server side can be checked by name.
    expect = {f"ta/{k}": v for k, v in make_tree(a / "ta", 150, 512, seed=1).items()}
    expect.update({f"tb/{k}": v for k, v in make_tree(b / "tb", 150, 512, seed=2).items()})
    state = tmp_path / "journal"
    procs = [subprocess.Popen(upload_cmd(srv.url("/files/"), [d], state, "-j", "4"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
             for d in (a, b)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        check_sanitizer(err.decode())
        assert p.returncode == 0, err.decode()
    recs = journal_records(state)  # every line whole and well-formed
    assert sum(1 for r in recs if r[0] == "D") == 300
    assert all(re.fullmatch(r"[0-9a-f]{64}", r[1]) for r in recs)
    assert server_files(srv.upload_dir) == expect
    again = run_upload(srv.url("/files/"), [a, b], state)
    assert again.rc == 0 and again.summary["skipped"] == 300, again


def test_sigint_exits_130_and_rerun_finishes(tusc, tmp_path):
    srv = tusc()
    f = tmp_path / "f.bin"
    digest = random_file(f, 12 * MiB)
    state = tmp_path / "journal"
    cmd = upload_cmd(srv.url("/files/"), [f], state, "--limit-rate", "2M", "--checksum", "none")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
    try:
        deadline_poll(lambda: state.exists() and journal_records(state), 30,
                      what="the upload URL in the journal")
        # Interrupt only once bytes have arrived: otherwise a rerun rightly sends all.
        deadline_poll(lambda: metric(srv, "tusd_bytes_received") >= 1 * MiB, 30,
                      what="some bytes on the server")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check_sanitizer(err.decode())
    first = Upload(p.returncode, out.decode(), err.decode())
    assert first.rc == 130, first
    assert first.summary["interrupted"] is True
    up = run_upload(srv.url("/files/"), [f], state, "--checksum", "none")
    assert up.rc == 0, up
    assert up.files[0]["sent"] < 12 * MiB  # continued, not started over
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    assert metric(srv, "tusd_bytes_received") == 12 * MiB


def test_parts_resume_after_uploader_kill(tusc, tmp_path):
    srv = tusc()
    f = tmp_path / "f.bin"
    digest = random_file(f, 32 * MiB)
    state = tmp_path / "journal"
    args = ("--parts", "4", "--parts-min-size", "1M", "--checksum", "none")
    cmd = upload_cmd(srv.url("/files/"), [f], state, "--limit-rate", "8M", *args)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=sanitizer_env())
    try:
        deadline_poll(lambda: state.exists() and len(journal_records(state)) >= 4, 30,
                      what="four partial uploads in the journal")
        deadline_poll(lambda: metric(srv, "tusd_bytes_received") >= 4 * MiB, 30,
                      what="some bytes of the parts on the server")
    finally:
        p.kill()
        p.wait()
    parts = {r[2] for r in journal_records(state)}
    up = run_upload(srv.url("/files/"), [f], state, *args)
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    assert metric(srv, "tusd_bytes_received") == 32 * MiB
    # The rerun continued the same four partial uploads.
    created = [l for l in srv.stderr().splitlines() if "event=UploadCreated" in l]
    assert len(created) == 5, created
    assert len(parts) == 4


def test_409_reads_the_offset_and_continues(tusc, upload, proxy_factory, tmp_path):
    srv = tusc()
    proxy = proxy_factory(srv.port)
    f = tmp_path / "f.bin"
    digest = random_file(f, 300 * 1024)
    resp = (b"HTTP/1.1 409 Conflict\r\nTus-Resumable: 1.0.0\r\nContent-Length: 40\r\n"
            b"Connection: close\r\n\r\nERR_MISMATCHED_OFFSET: mismatched offset")
    proxy.inject("respond", faults=1, response=resp, method=b"PATCH")
    up = upload(proxy.url(), [f], "--checksum", "none", "-v")
    assert up.rc == 0, up
    assert proxy.injected == 1
    assert "server answered 409: ERR_MISMATCHED_OFFSET" in up.err, up
    heads = [l for l in srv.stderr().splitlines()
             if "event=ResponseOutgoing" in l and "method=HEAD" in l]
    assert len(heads) == 1, heads  # the offset was read again
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    assert metric(srv, "tusd_bytes_received") == 300 * 1024
