"""Crash consistency: 50 concurrent uploads while the server is SIGKILLed 5 times.

Half the uploads are tus-js-client (tests/clients/crash_upload.js), half a raw Python
client; sizes are random up to 20 MB, chunk sizes random. A killer thread SIGKILLs
the server each time the uploaded total crosses a random point inside the next sixth
of the work (so every kill lands mid-upload), then restarts it on the same port with
the same upload dir. Clients ride through: connection errors make them ask the
server (HEAD) where to continue.

Checked: every upload ends byte-identical to its source (sha256 of the data file),
and no offset ever goes backwards: for every client, each HEAD reports at least the
largest Upload-Offset any earlier 204 acknowledged. With -fsync=never the same
holds, because a SIGKILL takes the process, not the page cache (docs/reliability.md);
only a power cut or kernel crash could lose acknowledged bytes there.

The seed is printed; TUSC_CRASH_SEED=<n> repeats a run's sizes, chunks and kill
points (the kill moments themselves still depend on timing).
"""
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import OCTET, REPO, TUSC_BIN, TuscServer

CLIENTS = REPO / "tests" / "clients"
UPLOADS = 50
MAX_SIZE = 20 * 1024 * 1024
KILLS = 5
DEADLINE = 600  # seconds for the whole run; only bounds a broken server


class Progress:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = 0

    def add(self, n):
        with self.lock:
            self.acked += n

    def get(self):
        with self.lock:
            return self.acked


class Restartable:
    """A TuscServer that a killer thread SIGKILLs and restarts on the same port."""

    def __init__(self, tmp_path, flags):
        self.srv = TuscServer(tmp_path / "srv", flags, name="crash")
        self.srv.start()
        self.port = self.srv.port
        self.kills = 0
        self.lock = threading.Lock()

    def kill_and_restart(self):
        with self.lock:
            self.srv.proc.send_signal(signal.SIGKILL)
            self.srv.proc.wait(timeout=30)
            self.srv.proc = None
            self.kills += 1
            cmd = self.srv.command() + ["-port", str(self.port)]
            # The old socket's port is free at once (SO_REUSEADDR); retry a moment in
            # case the kernel is still tearing it down.
            for attempt in range(50):
                try:
                    self.srv.start(cmd)
                    return
                except AssertionError:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)


def conn(port, timeout=30):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def tus_request(port, method, path, headers=None, body=None):
    hs = {"Tus-Resumable": "1.0.0"}
    hs.update(headers or {})
    c = conn(port)
    try:
        c.request(method, path, body=body, headers=hs)
        r = c.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        c.close()


def raw_client(port, src, size, chunk, progress, log, stop):
    """Create, then PATCH chunks; on any failure HEAD and continue from there."""
    with open(src, "rb") as f:
        data = f.read()
    path = None
    while path is None and not stop.is_set():
        try:
            st, hs = tus_request(port, "POST", "/files/", {"Upload-Length": str(size)})
            if st == 201:
                path = urllib.parse.urlsplit(hs["Location"]).path
            else:
                time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    log.append(("created", path))
    offset = 0
    acked = 0
    while offset < size and not stop.is_set():
        n = min(chunk, size - offset)
        try:
            st, hs = tus_request(port, "PATCH", path, {"Upload-Offset": str(offset),
                                                      "Content-Type": OCTET},
                                 data[offset:offset + n])
            if st == 204:
                new = int(hs["Upload-Offset"])
                assert new == offset + n, (path, offset, n, new)
                log.append(("ack", new))
                progress.add(new - offset)
                acked = max(acked, new)
                offset = new
                continue
        except (OSError, http.client.HTTPException):
            pass
        # Lost the connection (or got a 5xx/409 during a restart): ask where we are.
        while not stop.is_set():
            try:
                st, hs = tus_request(port, "HEAD", path)
                if st == 200:
                    off = int(hs["Upload-Offset"])
                    log.append(("head", off))
                    progress.add(off - offset)
                    offset = off
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
    log.append(("done", path))


def node_client(port, src, chunk, progress, log, procs):
    p = subprocess.Popen(["node", str(CLIENTS / "crash_upload.js"),
                          f"http://127.0.0.1:{port}/files/", str(src), str(chunk)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    last = 0
    for line in p.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        if ev["event"] == "created":
            log.append(("created", urllib.parse.urlsplit(ev["url"]).path))
        elif ev["event"] in ("ack", "head"):
            log.append((ev["event"], ev["offset"]))
            progress.add(ev["offset"] - last)
            last = ev["offset"]
        elif ev["event"] == "done":
            log.append(("done", urllib.parse.urlsplit(ev["url"]).path))
    p.wait()
    log.append(("exit", p.returncode, p.stderr.read()[-2000:]))


def check_log(name, log):
    """No HEAD below an earlier acknowledgement; the client finished."""
    acked = 0
    path = None
    for ev in log:
        if ev[0] == "created":
            path = ev[1]
        elif ev[0] == "ack":
            assert ev[1] >= acked, f"{name}: ack {ev[1]} after ack {acked}"
            acked = ev[1]
        elif ev[0] == "head":
            assert ev[1] >= acked, f"{name} {path}: HEAD says {ev[1]} after {acked} was acknowledged"
        elif ev[0] == "exit":
            assert ev[1] == 0, f"{name}: tus-js-client failed: {ev[2]}"
    assert any(ev[0] == "done" for ev in log), f"{name}: never finished: {log[-5:]}"
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    seed = int(os.environ.get("TUSC_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test seed {seed}")
    rng = random.Random(seed)
    d = tmp_path_factory.mktemp("crash-src")
    out = []
    for i in range(UPLOADS):
        size = rng.randint(1, MAX_SIZE)
        chunk = rng.choice([rng.randint(1024, 64 * 1024), rng.randint(64 * 1024, 2 << 20),
                            rng.randint(2 << 20, 8 << 20)])
        p = d / f"src-{i:02d}.bin"
        data = rng.randbytes(size)
        p.write_bytes(data)
        out.append((p, size, chunk, hashlib.sha256(data).hexdigest()))
    return seed, rng, out


def run_crash(tmp_path, sources, flags):
    if shutil.which("node") is None or not (CLIENTS / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("node and tests/clients/node_modules (make clients) are needed")
    seed, rng, srcs = sources
    total = sum(s[1] for s in srcs)
    rs = Restartable(tmp_path, flags)
    progress = Progress()
    stop = threading.Event()
    logs = [[] for _ in srcs]
    procs = []
    threads = []
    try:
        for i, (p, size, chunk, _h) in enumerate(srcs):
            if i % 2 == 0:
                t = threading.Thread(target=node_client,
                                     args=(rs.port, p, chunk, progress, logs[i], procs))
            else:
                t = threading.Thread(target=raw_client,
                                     args=(rs.port, p, size, chunk, progress, logs[i], stop))
            t.daemon = True
            t.start()
            threads.append(t)
        # Kill k lands at a random point of the k-th sixth of all bytes.
        marks = [int(total * (k + rng.random()) / (KILLS + 1)) for k in range(KILLS)]
        end = time.monotonic() + DEADLINE
        for mark in marks:
            while progress.get() < mark and any(t.is_alive() for t in threads):
                assert time.monotonic() < end, "uploads stalled"
                time.sleep(0.01)
            if not any(t.is_alive() for t in threads):
                break
            rs.kill_and_restart()
        for t in threads:
            t.join(max(1, end - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "clients did not finish in time"
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert rs.kills == KILLS, f"only {rs.kills} kills happened before the uploads finished"
    for i, (p, size, chunk, digest) in enumerate(srcs):
        name = f"upload {i} ({'node' if i % 2 == 0 else 'raw'}, {size} B, chunks {chunk})"
        path = check_log(name, logs[i])
        st, hs = tus_request(rs.port, "HEAD", path)
        assert st == 200 and int(hs["Upload-Offset"]) == size, (name, st, hs)
        h = hashlib.sha256()
        with open(rs.srv.data_file(path), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        assert h.hexdigest() == digest, f"{name}: stored bytes differ from the source"
    rc = rs.srv.stop()
    reports = rs.srv.sanitizer_reports()
    assert rc == 0 and not reports, f"exit {rc}, sanitizer {reports}\n{rs.srv.all_stderr()[-20000:]}"
    print(f"crash test: {UPLOADS} uploads, {total} bytes, {rs.kills} kills survived, seed {seed}")


def test_crash_fsync_always(tmp_path, sources):
    run_crash(tmp_path, sources, [])


def test_crash_fsync_never(tmp_path, sources):
    """With -fsync=never a process kill still loses nothing acknowledged: the written
    bytes sit in the page cache, which belongs to the kernel, not the process."""
    run_crash(tmp_path, sources, ["-fsync", "never"])


def test_checker_catches_a_lost_ack():
    """The log checker itself must be able to fail."""
    with pytest.raises(AssertionError):
        check_log("x", [("created", "/files/a"), ("ack", 100), ("head", 50), ("done", "/files/a")])
    with pytest.raises(AssertionError):
        check_log("x", [("created", "/files/a"), ("ack", 100)])
    assert check_log("x", [("created", "/files/a"), ("ack", 100), ("head", 100),
                           ("done", "/files/a")]) == "/files/a"


SMALL_UPLOADS = 200
SMALL_THREADS = 40
SMALL_KILLS = 4


def small_client(port, jobs, results, progress, stop):
    """Takes (index, data) jobs; per upload: POST (every third one with the first part
    as its body), then one PATCH of the whole body (half the uploads: two PATCHes). Any error: HEAD and go on from the offset the
    server reports; a create that never got its 201 is simply made again. Records
    every acknowledgement in results[index] as ("created", path) / ("ack", offset)."""
    while not stop.is_set():
        try:
            i, data = jobs.pop()
        except IndexError:
            return
        log = results[i]
        path = None
        split = len(data) // 2 if i % 2 else len(data)
        while not stop.is_set():
            try:
                if path is None:
                    # A third of the uploads are created with their first part as the
                    # body (creation-with-upload): the create's syncs and the chunk's
                    # fdatasync then go through the batch back to back.
                    with_body = i % 3 == 0
                    st, hs = tus_request(port, "POST", "/files/",
                                         {"Upload-Length": str(len(data)),
                                          **({"Content-Type": OCTET} if with_body else {})},
                                         data[:split] if with_body else None)
                    if st != 201:
                        continue  # 503 while the store restarts: ask again
                    path = urllib.parse.urlsplit(hs["Location"]).path
                    log.append(("created", path))
                    if with_body:
                        log.append(("ack", int(hs["Upload-Offset"])))
                    progress.add(1)
                st, hs = tus_request(port, "HEAD", path)
                assert st == 200, (i, path, st, hs)
                off = int(hs["Upload-Offset"])
                log.append(("head", off))
                if off == len(data):
                    log.append(("done", path))
                    break
                end = split if off < split else len(data)
                st, hs = tus_request(port, "PATCH", path,
                                     {"Upload-Offset": str(off), "Content-Type": OCTET},
                                     data[off:end])
                if st == 204:
                    log.append(("ack", int(hs["Upload-Offset"])))
                    progress.add(1)
            except (OSError, http.client.HTTPException):
                continue  # the server was killed mid-request


def test_crash_many_small_uploads_durable(tmp_path):
    """200 concurrent small uploads (1 B .. 64 KiB, 40 at a time) with the default
    fsync while the server is SIGKILLed 4 times, each at a random point of the
    acknowledged requests (creates and PATCHes). Every upload whose creation was
    acknowledged still exists after every restart (HEAD never 404s, offsets never go
    back: check_log), and every upload ends whole (sha256 of the data file).

    What this proves: the server acknowledges a create or a PATCH only after the store
    finished it, also on the batched/concurrent durable path, and a restart finds every
    acknowledged upload and byte. What it cannot prove: SIGKILL keeps the kernel's page
    cache, so it does not show the fsyncs themselves reached the disk; only a power-loss
    test (a VM whose disk is cut off, or dm-log-writes replay) would."""
    seed = int(os.environ.get("TUSC_CRASH_SEED", random.randrange(1 << 30)))
    print(f"small-uploads crash seed {seed}")
    rng = random.Random(seed)
    datas = [rng.randbytes(rng.randint(1, 64 * 1024)) for _ in range(SMALL_UPLOADS)]
    jobs = list(enumerate(datas))
    rng.shuffle(jobs)
    results = [[] for _ in datas]
    rs = Restartable(tmp_path, [])
    progress = Progress()
    stop = threading.Event()
    threads = [threading.Thread(target=small_client,
                                args=(rs.port, jobs, results, progress, stop), daemon=True)
               for _ in range(SMALL_THREADS)]
    # About 2 acknowledgements per upload (three for split ones).
    total = int(SMALL_UPLOADS * 2.5)
    marks = sorted(int(total * (k + rng.random()) / (SMALL_KILLS + 1))
                   for k in range(SMALL_KILLS))
    try:
        for t in threads:
            t.start()
        end = time.monotonic() + DEADLINE
        for mark in marks:
            while progress.get() < mark and any(t.is_alive() for t in threads):
                assert time.monotonic() < end, "uploads stalled"
                time.sleep(0.002)
            if not any(t.is_alive() for t in threads):
                break
            rs.kill_and_restart()
        for t in threads:
            t.join(max(1, end - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "clients did not finish in time"
    finally:
        stop.set()
    assert rs.kills >= 2, f"only {rs.kills} kills happened before the uploads finished"
    for i, data in enumerate(datas):
        name = f"small upload {i} ({len(data)} B)"
        path = check_log(name, results[i])
        st, hs = tus_request(rs.port, "HEAD", path)
        assert st == 200 and int(hs["Upload-Offset"]) == len(data), (name, st, hs)
        got = rs.srv.data_file(path).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
    rc = rs.srv.stop()
    reports = rs.srv.sanitizer_reports()
    assert rc == 0 and not reports, f"exit {rc}, sanitizer {reports}\n{rs.srv.all_stderr()[-20000:]}"
    print(f"small-uploads crash test: {SMALL_UPLOADS} uploads, {rs.kills} kills survived")
