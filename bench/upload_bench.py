#!/usr/bin/env python3
"""tusc-upload bench (bench/README.md, "Uploader"): tusc-upload and tus-js-client's Node
uploader doing the same work against one tusc, side by side in one run:

  (u1) 1,000 files of 64 KiB      (u2) one 2 GiB file
  (u3) the same small files and (u4) one big file through the test proxy
       (tests/upload/faultproxy.py) adding 50 ms each way, with a 2 MiB window per
       connection and direction, to show what -j and --parts gain on a long path.

For each run: seconds, uploads/s, MB/s, the uploader's CPU seconds (user+sys) and peak
RSS (GNU time, package `time`). Every process it starts is stopped by PID and every temp dir removed.

  TUSC_BIN=build/tusc python3 bench/upload_bench.py      (make -C bench upload)

Environment: MANY_N=1000 MANY_SIZE=65536 BIG_SIZE=2G DELAY_MS=50 DELAY_BIG_SIZE=512M
WINDOW=2M BENCH_DIR=/var/tmp SKIP_NODE=1 (leave out tus-js-client).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "upload"))
from faultproxy import FaultProxy  # noqa: E402

TUSC_BIN = os.environ.get("TUSC_BIN", str(REPO / "build" / "tusc"))
UPLOAD_BIN = os.environ.get("TUSC_UPLOAD_BIN", str(Path(TUSC_BIN).with_name("tusc-upload")))
NODE_DIR = HERE / "node"


def size_env(name, default):
    v = os.environ.get(name, default)
    m = re.fullmatch(r"(\d+)([KMG]?)", v)
    if not m:
        sys.exit(f"bench: {name}={v} is not a size")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


MANY_N = int(os.environ.get("MANY_N", "1000"))
MANY_SIZE = size_env("MANY_SIZE", "65536")
BIG_SIZE = size_env("BIG_SIZE", "2G")
DELAY_BIG_SIZE = size_env("DELAY_BIG_SIZE", "512M")
DELAY = int(os.environ.get("DELAY_MS", "50")) / 1000.0
WINDOW = size_env("WINDOW", "2M")
SKIP_NODE = os.environ.get("SKIP_NODE") == "1"

PROCS = []


def start_tusc(work, name):
    updir = work / name
    updir.mkdir()
    p = subprocess.Popen([TUSC_BIN, "-port", "0", "-host", "127.0.0.1", "-upload-dir",
                          str(updir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    line = p.stdout.readline().decode()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        sys.exit(f"bench: tusc did not start: {line!r}")
    threading.Thread(target=lambda: p.stdout.read(), daemon=True).start()
    return p, int(m.group(1)), updir


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def measure(cmd, cwd=None):
    """Runs cmd under GNU time; returns (seconds, cpu seconds, peak RSS in MiB, exit code).

    GNU time, not wait4 here: a child forked from this Python process starts with
    Python's resident set, and Linux keeps that in the child's ru_maxrss after exec."""
    fd, rpath = tempfile.mkstemp(prefix="tusc-upbench-time.")
    os.close(fd)
    try:
        p = subprocess.run(["/usr/bin/time", "-o", rpath, "-f", "%e %U %S %M", *cmd], cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        fields = Path(rpath).read_text().split()[-4:]
    finally:
        os.unlink(rpath)
    if p.returncode != 0:
        print(f"bench: {' '.join(cmd)} exited {p.returncode}\n{p.stderr.decode()[-2000:]}",
              file=sys.stderr)
    secs, user, sys_, rss_kib = (float(x) for x in fields)
    return secs, user + sys_, rss_kib / 1024, p.returncode


def write_files(d, n, size):
    d.mkdir()
    base = os.urandom(size)
    for i in range(n):
        sub = d / f"d{i % 20}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(i.to_bytes(8, "big") + base[8:])


def write_big(path, size):
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for i in range(size >> 20):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
        f.write(os.urandom(size & ((1 << 20) - 1)))


ROWS = []


def row(case, who, files, nbytes, res):
    secs, cpu, rss, rc = res
    ROWS.append((case, who, secs, files / secs, nbytes / secs / 1e6, cpu, rss,
                 "" if rc == 0 else f" (exit {rc})"))
    r = ROWS[-1]
    print(f"{r[0]:<34} {r[1]:<34} {r[2]:7.2f} s {r[3]:8.1f}/s {r[4]:8.1f} MB/s "
          f"cpu {r[5]:6.2f} s  rss {r[6]:6.1f} MiB{r[7]}", flush=True)


def tusc_upload(url, paths, state, *args):
    paths = paths if isinstance(paths, list) else [paths]
    return [UPLOAD_BIN, "--state", str(state), "--progress", "none", *args, url,
            *[str(p) for p in paths]]


def js_upload(url, path, *args):
    return ["node", str(NODE_DIR / "js_upload.js"), url, str(path), *args]


def main():
    # SIGTERM ends the run through the finally below (servers stopped, scratch removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for b in (TUSC_BIN, UPLOAD_BIN, "/usr/bin/time"):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: no binary at {b} (make build)")
    node = not SKIP_NODE and (NODE_DIR / "node_modules" / "tus-js-client").exists()
    if not SKIP_NODE and not node:
        sys.exit("bench: bench/node/node_modules missing (cd bench/node && npm ci), "
                 "or SKIP_NODE=1")
    base = Path(os.environ.get("BENCH_DIR", "/var/tmp"))
    work = Path(tempfile.mkdtemp(prefix="tusc-upbench.", dir=base))
    n_case = [0]

    def fresh_server():
        n_case[0] += 1
        return start_tusc(work, f"up{n_case[0]}")

    def done_with(srv):
        p, _, updir = srv
        stop(p)
        shutil.rmtree(updir, ignore_errors=True)

    try:
        small = work / "small"
        write_files(small, MANY_N, MANY_SIZE)
        big = work / "big.bin"
        write_big(big, BIG_SIZE)
        small_bytes = MANY_N * MANY_SIZE
        print(f"bench: {MANY_N} x {MANY_SIZE} B, {BIG_SIZE} B big file, in {work}",
              flush=True)

        # (u1) many small files, loopback
        case = f"u1 {MANY_N} x {MANY_SIZE >> 10} KiB"
        for who, mk in [
            ("tusc-upload -j 4", lambda u, s: tusc_upload(u, small, s)),
            ("tusc-upload -j 16", lambda u, s: tusc_upload(u, small, s, "-j", "16")),
            ("tus-js-client jobs 4", lambda u, s: js_upload(u, small, "--jobs", "4")),
            ("tus-js-client jobs 16", lambda u, s: js_upload(u, small, "--jobs", "16")),
        ]:
            if who.startswith("tus-js") and not node:
                continue
            srv = fresh_server()
            url = f"http://127.0.0.1:{srv[1]}/files/"
            row(case, who, MANY_N, small_bytes, measure(mk(url, work / f"j{n_case[0]}")))
            done_with(srv)

        # (u2) one big file, loopback
        case = f"u2 1 x {BIG_SIZE >> 20} MiB"
        for who, mk in [
            ("tusc-upload (sha256 per 64M PATCH)", lambda u, s: tusc_upload(u, big, s)),
            ("tusc-upload --checksum none", lambda u, s: tusc_upload(u, big, s, "--checksum",
                                                                     "none")),
            ("tusc-upload --parts 4", lambda u, s: tusc_upload(u, big, s, "--parts", "4",
                                                               "--checksum", "none")),
            ("tus-js-client", lambda u, s: js_upload(u, big)),
        ]:
            if who.startswith("tus-js") and not node:
                continue
            srv = fresh_server()
            url = f"http://127.0.0.1:{srv[1]}/files/"
            row(case, who, 1, BIG_SIZE, measure(mk(url, work / f"j{n_case[0]}")))
            done_with(srv)

        # (u3) many small files, 50 ms each way
        case = f"u3 {MANY_N} x {MANY_SIZE >> 10} KiB, +{int(DELAY * 1000)} ms each way"
        # -j 1 pays two round trips per file (POST, PATCH): it gets 100 of the files
        # (two of the 20 directories), or it alone would take minutes.
        few = [small / "d0", small / "d1"]
        n_few = sum(1 for d in few for _ in d.iterdir())
        srv = fresh_server()
        proxy = FaultProxy(srv[1], delay=DELAY, window=WINDOW)
        try:
            row(case, "tusc-upload -j 1 (100 files)", n_few, n_few * MANY_SIZE,
                measure(tusc_upload(proxy.url(), few, work / f"j{n_case[0]}", "-j", "1")))
        finally:
            proxy.close()
        done_with(srv)
        for who, mk in [
            ("tusc-upload -j 4", lambda u, s: tusc_upload(u, small, s, "-j", "4")),
            ("tusc-upload -j 16", lambda u, s: tusc_upload(u, small, s, "-j", "16")),
            ("tusc-upload -j 64", lambda u, s: tusc_upload(u, small, s, "-j", "64")),
            ("tus-js-client jobs 16", lambda u, s: js_upload(u, small, "--jobs", "16")),
        ]:
            if who.startswith("tus-js") and not node:
                continue
            srv = fresh_server()
            proxy = FaultProxy(srv[1], delay=DELAY, window=WINDOW)
            try:
                row(case, who, MANY_N, small_bytes,
                    measure(mk(proxy.url(), work / f"j{n_case[0]}")))
            finally:
                proxy.close()
            done_with(srv)

        # (u4) one big file, 50 ms each way, WINDOW per connection
        dbig = work / "dbig.bin"
        write_big(dbig, DELAY_BIG_SIZE)
        case = (f"u4 1 x {DELAY_BIG_SIZE >> 20} MiB, +{int(DELAY * 1000)} ms each way, "
                f"{WINDOW >> 20} MiB window")
        for who, mk in [
            ("tusc-upload", lambda u, s: tusc_upload(u, dbig, s, "--checksum", "none")),
            ("tusc-upload --parts 4", lambda u, s: tusc_upload(u, dbig, s, "--parts", "4", "--parts-min-size", "1M",
                                                               "--checksum", "none")),
            ("tusc-upload --parts 8", lambda u, s: tusc_upload(u, dbig, s, "--parts", "8", "--parts-min-size", "1M",
                                                               "--checksum", "none")),
            ("tus-js-client", lambda u, s: js_upload(u, dbig)),
            ("tus-js-client parallelUploads 4", lambda u, s: js_upload(u, dbig, "--parts", "4")),
        ]:
            if who.startswith("tus-js") and not node:
                continue
            srv = fresh_server()
            proxy = FaultProxy(srv[1], delay=DELAY, window=WINDOW)
            try:
                row(case, who, 1, DELAY_BIG_SIZE,
                    measure(mk(proxy.url(), work / f"j{n_case[0]}")))
            finally:
                proxy.close()
            done_with(srv)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| case | uploader | s | uploads/s | MB/s | CPU s | RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in ROWS:
        print(f"| {r[0]} | {r[1]}{r[7]} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} "
              f"| {r[6]:.1f} |")


if __name__ == "__main__":
    main()
