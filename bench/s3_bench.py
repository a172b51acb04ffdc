#!/usr/bin/python3
"""s3_bench — tusc's S3 store and Redis lock against a real single-node Ceph RGW and a
real redis-server (bench/README.md, "S3 and Redis"). Called by bench/s3.sh.

  (i)   1 GiB through tusc into RGW (loadgen big: POST, then PATCHes of BIG_CHUNK on one
        connection) vs the same bytes sent straight to RGW as a multipart upload by a
        plain client (boto3: 16 MiB parts, 4 in parallel, UNSIGNED-PAYLOAD like tusc),
        alternating rounds, best of REPEAT each; the ratio (goal >= 0.8).
  (ii)  MANY_N x 64 KiB uploads/s (loadgen many: POST + one PATCH each, MANY_C at a
        time), tusc on S3 with its local lock and with -redis-url.
  (iii) peak RSS of tusc with RSS_N concurrent S3 uploads of RSS_SIZE, against the
        -s3-max-buffer-memory budget.
  (iv)  Redis lock acquire/release round trips per second (bench/build/redis_lock).

Every figure gets a fresh RGW (memstore keeps everything in RAM, and frees deleted data
only after a while), started and stopped by PID under a scratch directory. Numbers are
printed as a table; nothing is asserted on time.
"""
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "s3"))
import rgw as rgwmod  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30


def size_env(name, default):
    v = os.environ.get(name, default)
    m = re.fullmatch(r"(\d+)([KMG]?)", v)
    if not m:
        sys.exit(f"s3_bench: {name}={v}: not a size")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


BIG_SIZE = size_env("BIG_SIZE", "1G")
BIG_CHUNK = size_env("BIG_CHUNK", "256M")
PART = size_env("S3_PART", "16M")
PAR = int(os.environ.get("S3_PARALLEL", "4"))
REPEAT = int(os.environ.get("REPEAT", "2"))
MANY_N = int(os.environ.get("MANY_N", "1000"))
MANY_SIZE = size_env("MANY_SIZE", "64K")
MANY_C = int(os.environ.get("MANY_C", "64"))
RSS_N = int(os.environ.get("RSS_N", "100"))
RSS_SIZE = size_env("RSS_SIZE", "12M")
RSS_PART = size_env("RSS_PART", "5M")
RSS_BUDGET = size_env("RSS_BUDGET", "128M")
REDIS_SECONDS = os.environ.get("REDIS_SECONDS", "3")
ONLY = os.environ.get("ONLY", "i ii iii iv").split()

TUSC_BIN = os.environ["TUSC_BIN"]
LOADGEN = os.environ["LOADGEN"]
REDIS_LOCK = os.environ.get("REDIS_LOCK", "")
WORK = tempfile.mkdtemp(prefix="tusc-s3-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
PROCS = []


def note(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def field(key, line):
    m = re.search(rf"\b{key}=(\S+)", line)
    return m.group(1) if m else None


def kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Rgw:
    """A fresh RGW for one measurement, with the credentials in os.environ for tusc."""

    def __init__(self, min_part=5 * MiB):
        self.dir = tempfile.mkdtemp(prefix="rgw-", dir=WORK)
        self.g = rgwmod.Rgw.start(self.dir, min_part_size=min_part, quiet=True)
        for k, v in self.g.env().items():
            os.environ[k] = v

    def stop(self):
        self.g.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Tusc:
    def __init__(self, rgw, *flags, name="tusc"):
        self.log = os.path.join(WORK, f"{name}-{uuid.uuid4().hex[:6]}.log")
        self.prefix = "b" + uuid.uuid4().hex[:10] + "/"
        cmd = [TUSC_BIN, "-host", "127.0.0.1", "-port", "0",
               "-s3-bucket", rgwmod.BUCKET, "-s3-endpoint", rgw.g.endpoint,
               "-s3-object-prefix", self.prefix] + list(flags)
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)
        PROCS.append(self.proc)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            self.stop()
            sys.exit(f"s3_bench: tusc did not start: {line}\n{open(self.log).read()}")
        self.port = int(m.group(1))
        # Keep reading stdout so that tusc never blocks on it.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        PROCS.remove(self.proc)


class Redis:
    def __init__(self):
        self.sock = os.path.join(WORK, f"r-{uuid.uuid4().hex[:6]}.sock")
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", self.sock,
                                      "--save", "", "--appendonly", "no", "--dir", WORK],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        PROCS.append(self.proc)
        end = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if time.monotonic() > end or self.proc.poll() is not None:
                sys.exit("s3_bench: redis-server did not start")
            time.sleep(0.01)
        self.url = "unix://" + self.sock

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        PROCS.remove(self.proc)


def loadgen(*args, timeout=900):
    p = subprocess.run([LOADGEN, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    out = (p.stdout + p.stderr).strip().splitlines()
    line = out[-1] if out else ""
    if p.returncode != 0:
        note(f"  loadgen {' '.join(map(str, args))} failed: {p.stdout}{p.stderr}")
        return None
    note(f"  {line}")
    return line


# --- (i) 1 GiB: tusc vs a plain multipart client ---------------------------------------------


def plain_multipart(rgw, data):
    """boto3's transfer manager: PART-sized parts, PAR in parallel, UNSIGNED-PAYLOAD
    (botocore would otherwise hash every byte over http:// where tusc does not).
    MB/s from the first request to CompleteMultipartUpload's answer."""
    import botocore.auth
    from boto3.s3.transfer import TransferConfig
    botocore.auth.S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False
    c = rgw.g.client()
    cfg = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                         max_concurrency=PAR, use_threads=True)
    key = "plain-" + uuid.uuid4().hex
    t0 = time.monotonic()
    c.upload_fileobj(io.BytesIO(data), rgwmod.BUCKET, key, Config=cfg)
    took = time.monotonic() - t0
    size = c.head_object(Bucket=rgwmod.BUCKET, Key=key)["ContentLength"]
    if size != len(data):
        sys.exit(f"s3_bench: plain upload stored {size} bytes of {len(data)}")
    mbps = len(data) / took / 1e6
    note(f"  plain boto3 multipart: {len(data)} bytes in {took:.2f} s = {mbps:.1f} MB/s")
    return mbps


def fig_big():
    note(f"(i) {BIG_SIZE >> 20} MiB: plain boto3 multipart ({PART >> 20} MiB parts, {PAR} in "
         f"parallel) vs tusc (loadgen big, {BIG_CHUNK >> 20} MiB PATCHes); {REPEAT} rounds")
    data = os.urandom(BIG_SIZE) if BIG_SIZE <= 64 * MiB else (os.urandom(64 * MiB) * (BIG_SIZE // (64 * MiB)))
    plain, tusc = [], []
    hwm = 0
    for _ in range(REPEAT):
        rgw = Rgw()
        try:
            plain.append(plain_multipart(rgw, data))
        finally:
            rgw.stop()
        rgw = Rgw()
        try:
            t = Tusc(rgw, "-s3-part-size", str(PART), "-s3-concurrent-part-uploads", str(PAR))
            line = loadgen("big", "-port", t.port, "-size", BIG_SIZE, "-chunk", BIG_CHUNK)
            if line:
                tusc.append(float(field("mbps", line)))
            hwm = max(hwm, kib(t.proc.pid, "VmHWM") or 0)
            t.stop()
        finally:
            rgw.stop()
    return plain, tusc, hwm


# --- (ii) many small uploads ------------------------------------------------------------------


def plain_small(rgw, multipart):
    """RGW's own rate for MANY_N objects of MANY_SIZE from a plain client (boto3, 16
    threads): one PutObject each, or CreateMultipartUpload + UploadPart +
    CompleteMultipartUpload each (what a tus upload costs at the least)."""
    import botocore.auth
    from botocore.config import Config
    botocore.auth.S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False
    threads = 16
    body = os.urandom(MANY_SIZE)
    c = rgw.g.client()
    c = __import__("boto3").client("s3", endpoint_url=rgw.g.endpoint,
                                   aws_access_key_id=rgwmod.ACCESS_KEY,
                                   aws_secret_access_key=rgwmod.SECRET_KEY,
                                   region_name=rgwmod.REGION,
                                   config=Config(s3={"addressing_style": "path"},
                                                 max_pool_connections=threads))
    todo = list(range(MANY_N))
    lock = threading.Lock()
    errors = []

    def work():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            key = f"small-{multipart}-{i}"
            try:
                if multipart:
                    up = c.create_multipart_upload(Bucket=rgwmod.BUCKET, Key=key)["UploadId"]
                    et = c.upload_part(Bucket=rgwmod.BUCKET, Key=key, UploadId=up, PartNumber=1,
                                       Body=body)["ETag"]
                    c.complete_multipart_upload(Bucket=rgwmod.BUCKET, Key=key, UploadId=up,
                                                MultipartUpload={"Parts": [
                                                    {"ETag": et, "PartNumber": 1}]})
                else:
                    c.put_object(Bucket=rgwmod.BUCKET, Key=key, Body=body)
            except Exception as e:  # counted, not fatal: a bench, not a test
                errors.append(e)
    t0 = time.monotonic()
    ths = [threading.Thread(target=work) for _ in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    rate = MANY_N / (time.monotonic() - t0)
    note(f"  plain boto3 ({threads} threads), {'multipart' if multipart else 'PutObject'}: "
         f"{rate:.1f} objects/s, {len(errors)} errors")
    return rate


def fig_many():
    note(f"(ii) {MANY_N} x {MANY_SIZE >> 10} KiB uploads, {MANY_C} at a time: tusc on S3, "
         f"local lock and Redis lock; RGW's own rate from a plain client")
    res = {}
    for kind in ("put", "multipart"):
        rgw = Rgw()
        try:
            res[kind] = plain_small(rgw, kind == "multipart")
        finally:
            rgw.stop()
    for kind in ("local", "redis"):
        rgw = Rgw()
        redis = Redis() if kind == "redis" else None
        try:
            flags = ["-redis-url", redis.url] if redis else []
            t = Tusc(rgw, *flags)
            line = loadgen("many", "-port", t.port, "-n", MANY_N, "-size", MANY_SIZE,
                           "-c", MANY_C)
            res[kind] = float(field("per_sec", line)) if line else None
            t.stop()
        finally:
            if redis:
                redis.stop()
            rgw.stop()
    return res


# --- (iii) memory with many concurrent uploads --------------------------------------------------


def fig_rss(budget):
    note(f"(iii) {RSS_N} concurrent uploads of {RSS_SIZE >> 20} MiB, parts of "
         f"{RSS_PART >> 20} MiB, -s3-max-buffer-memory {budget >> 20} MiB")
    rgw = Rgw()
    try:
        t = Tusc(rgw, "-s3-part-size", str(RSS_PART), "-s3-max-buffer-memory", str(budget))
        base = kib(t.proc.pid, "VmRSS")
        peak = [base]
        stop = threading.Event()

        def sample():  # VmHWM is the peak anyway; this also shows when it happens
            while not stop.is_set():
                v = kib(t.proc.pid, "VmRSS")
                if v:
                    peak[0] = max(peak[0], v)
                stop.wait(0.05)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        line = loadgen("many", "-port", t.port, "-n", RSS_N, "-size", RSS_SIZE, "-c", RSS_N)
        stop.set()
        th.join()
        hwm = kib(t.proc.pid, "VmHWM")
        t.stop()
    finally:
        rgw.stop()
    return base, max(hwm, peak[0]), line


# --- (iv) Redis lock --------------------------------------------------------------------------


def fig_redis():
    note(f"(iv) Redis lock round trips, {REDIS_SECONDS} s each")
    if not REDIS_LOCK or not os.access(REDIS_LOCK, os.X_OK):
        note("  no bench/build/redis_lock (make -C bench redis-lock builds it)")
        return {}
    p = subprocess.run([REDIS_LOCK, REDIS_SECONDS], capture_output=True, text=True, timeout=120)
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
            note(f"  {line}")
    if p.returncode != 0:
        note(f"  redis_lock failed: {p.stderr}")
    return out


def ratio_of(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def main():
    t_start = time.monotonic()
    plain = tusc = []
    hwm_big = None
    many = {}
    rss = []
    locks = {}
    if "i" in ONLY:
        plain, tusc, hwm_big = fig_big()
    if "ii" in ONLY:
        many = fig_many()
    if "iii" in ONLY:
        rss = [(b, fig_rss(b)) for b in (RSS_BUDGET // 2, RSS_BUDGET)]
    if "iv" in ONLY:
        locks = fig_redis()

    best_plain = max(plain) if plain else None
    best_tusc = max(tusc) if tusc else None
    ratio = f"{best_tusc / best_plain:.2f}" if best_plain and best_tusc else "n/a"

    def f(v, fmt="{:.1f}"):
        return fmt.format(v) if v is not None else "n/a"
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    ceph = subprocess.run(["ceph", "--version"], capture_output=True, text=True).stdout.split()
    lines = [
        f"# tusc S3 + Redis bench — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} cores, Linux {os.uname().release}; RGW: Ceph "
        f"{ceph[2] if len(ceph) > 2 else '?'} single node, memstore OSD, fresh for every "
        f"figure; tusc commit {commit}; took {time.monotonic() - t_start:.0f} s.",
        "",
        "| figure | tusc | reference | ratio | goal |",
        "|---|---|---|---|---|",
        f"| (i) {BIG_SIZE >> 20} MiB into RGW, MB/s (best of {REPEAT}) | {f(best_tusc)} "
        f"(loadgen big, {BIG_CHUNK >> 20} MiB PATCHes, -s3-part-size {PART >> 20}M, "
        f"-s3-concurrent-part-uploads {PAR}) | plain multipart client: {f(best_plain)} "
        f"(boto3, {PART >> 20} MiB parts, {PAR} in parallel) | {ratio} | >= 0.8 |",
        f"| (ii) {MANY_N} x {MANY_SIZE >> 10} KiB uploads, {MANY_C} at a time, uploads/s "
        f"| local lock: {f(many.get('local'))}; Redis lock: {f(many.get('redis'))} "
        f"| RGW from a plain client (boto3, 16 threads), objects/s: PutObject "
        f"{f(many.get('put'))}, multipart create+part+complete {f(many.get('multipart'))} "
        f"| {ratio_of(many.get('redis'), many.get('multipart'))} (Redis lock / multipart) | — |",
    ]
    for budget, (base, peak, line) in rss:
        rate = field("per_sec", line or "") or "n/a"
        lines.append(
            f"| (iii) peak RSS, {RSS_N} concurrent uploads of {RSS_SIZE >> 20} MiB "
            f"({RSS_PART >> 20} MiB parts; {rate} uploads/s) | {peak // 1024} MiB (idle "
            f"{base // 1024} MiB, +{(peak - base) // 1024} MiB) | -s3-max-buffer-memory "
            f"{budget >> 20} MiB | growth = {(peak - base) / (budget >> 10):.2f} x the budget "
            f"| bounded by the budget (all data: {RSS_N * RSS_SIZE >> 20} MiB) |")
    for k, (v, unit) in locks.items():
        lines.append(f"| (iv) {k.replace('redis_lock_', 'Redis lock, ').replace('_', ' ')} "
                     f"| {v} {unit} | — | — | — |")
    lines += ["",
              f"All rounds of (i): plain {', '.join(f'{v:.1f}' for v in plain) or 'none'}; "
              f"tusc {', '.join(f'{v:.1f}' for v in tusc) or 'none'} MB/s. "
              f"tusc peak RSS in (i): {f(hwm_big and hwm_big / 1024, '{:.0f}')} MiB. "
              "MB = 10^6 bytes."]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "s3-latest.md"), "w") as fh:
        fh.write(text)
    print()
    print(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in list(PROCS):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(WORK, ignore_errors=True)
