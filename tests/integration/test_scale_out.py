"""Scale-out (issue 12): three tusc instances on one S3 bucket and one Redis, behind a
real HAProxy doing plain round-robin. Everything is real and started by the test:
single-node Ceph RGW (tests/s3/rgw.py; the session's, shared with test_s3.py),
redis-server on a unix socket, three tusc processes (-s3-bucket/-s3-endpoint/-redis-url)
on fixed loopback ports (so a killed one can come back on its address), and HAProxy
configured from
deploy/scale-out/haproxy.cfg with only the listen address and the server addresses
substituted. Nothing here is skipped: a missing component fails with what to install.

- tus-js-client uploads 20 files in chunks; the instances' access logs show every
  file's chunks on more than one instance; each file is byte-exact through every
  instance's GET and in the bucket (boto3).
- kill -9 of the instance that is receiving a PATCH: the upload resumes through
  another instance once the lease runs out, no acknowledged byte lost.
- The same upload PATCHed through two instances at once: the newer request wins, the
  older ends with ERR_UPLOAD_INTERRUPTED keeping its bytes; a true race corrupts
  nothing.
- radosgw stopped mid-PATCH: a 5xx, never a 204; radosgw restarted (only that process:
  the data lives in the OSD, which keeps running): the upload resumes, nothing lost.
- Termination and expiry (three sweepers on one bucket) leave no object and no
  multipart upload behind.

RGW's multipart minimum is lowered to 64 KiB so that uploads of a few MiB span many
parts. Waits are deadlines on conditions, never fixed sleeps.
"""
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from conftest import (IO_TIMEOUT, OCTET, REPO, ConnectionClosed, RawConn, TuscServer,
                      assert_error, build_request, deadline_poll, upload_id)
from test_redis_lock import Redis

sys.path.insert(0, str(REPO / "tests" / "s3"))
import rgw as rgwmod  # noqa: E402

CLIENTS = REPO / "tests" / "clients"
MIN_PART = 64 * 1024
PART = 256 * 1024
LEASE = "2s"
CLIENT_TIMEOUT = 300
SLOW = 60  # deadline for conditions that wait on S3, a lease or HAProxy's retries
NAMES = ("tusc-a", "tusc-b", "tusc-c")
TUS = [("Tus-Resumable", "1.0.0")]

ACCESS_RE = re.compile(r"event=ResponseOutgoing method=(\S+) path=(\S+) status=(\d+)")


def haproxy_bin():
    return shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                       if os.path.exists("/usr/sbin/haproxy") else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def pattern(n, seed=0):
    """Deterministic bytes, different at every offset and for every seed."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


# --- components ----------------------------------------------------------------------


@pytest.fixture
def rgw64(request):
    """The session's RGW with a 64 KiB multipart minimum (conftest's rgw_factory, shared
    with test_s3.py). Checked first: a missing Ceph fails here instead of skipping."""
    if not rgwmod.ceph_installed():
        pytest.fail("Ceph (ceph-mon ceph-osd radosgw ceph-common) is not installed; "
                    "run scripts/install-deps.sh test", pytrace=False)
    return request.getfixturevalue("rgw_factory")(MIN_PART)


@pytest.fixture
def redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; run scripts/install-deps.sh test",
                    pytrace=False)
    d = tmp_path / "redis"
    d.mkdir()
    r = Redis(d)
    r.start()
    yield r
    r.stop()


class Front:
    """HAProxy's frontend, with TuscServer's HTTP helpers (create, patch, head, ...)."""
    origin = TuscServer.origin
    url = TuscServer.url
    request = TuscServer.request
    raw = TuscServer.raw
    create = TuscServer.create
    patch = TuscServer.patch
    head = TuscServer.head
    offset = TuscServer.offset
    download = TuscServer.download

    def __init__(self, port):
        self.host = "127.0.0.1"
        self.port = port
        self.base_path = "/files/"


def haproxy_config(path, front_port, ports):
    """deploy/scale-out/haproxy.cfg with the listen address and the three servers'
    addresses replaced, and the process management the test does itself (foreground,
    no chroot, no syslog, no stats socket) left out; everything else as shipped."""
    text = (REPO / "deploy" / "scale-out" / "haproxy.cfg").read_text()
    out = []
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"^(chroot|user haproxy|group haproxy|daemon|stats socket|stats timeout|"
                    r"log /dev/log)\b", s):
            continue
        out.append(line)
    cfg = "\n".join(out) + "\n"
    for pat in (r"^\s*no option http-buffer-request$", r"^\s*retry-on conn-failure$",
                r"^\s*http-request disable-l7-retry$", r"^\s*balance roundrobin$"):
        assert re.search(pat, cfg, re.M), f"deploy/scale-out/haproxy.cfg lost {pat!r}"
    assert "http-buffer-request\n" not in cfg.replace("no option http-buffer-request\n", "")
    cfg, n = re.subn(r"bind :80\b", f"bind 127.0.0.1:{front_port}", cfg)
    assert n == 1
    # Quick health checks: the test waits on them after a restart.
    cfg, n = re.subn(r"default-server check inter \S+ fall \d+ rise \d+",
                     "default-server check inter 300ms fall 2 rise 1", cfg)
    assert n == 1
    # A check may take long on a loaded machine (ASan); without this it times out
    # after `inter`.
    cfg, n = re.subn(r"^(\s*)timeout queue\s+\S+$", r"\g<0>\n\1timeout check 10s", cfg,
                     flags=re.M)
    assert n == 1
    for name, port in zip(NAMES, ports):
        cfg, n = re.subn(rf"server {name} \S+", f"server {name} 127.0.0.1:{port}", cfg)
        assert n == 1, f"deploy/scale-out/haproxy.cfg has no server {name}"
    path.write_text(cfg)
    return path


class Cluster:
    def __init__(self, rgw, redis, tusc, tmp_path, extra):
        self.rgw = rgw
        self.redis = redis
        self.bucket = rgwmod.BUCKET
        self.prefix = "so" + uuid.uuid4().hex[:12] + "/"
        self.s3 = rgw.client()
        self.inst = []
        for name in NAMES:
            srv = tusc(*self.flags(*extra), name=name, start=False)
            cmd = srv.command()
            cmd[cmd.index("-port") + 1] = str(free_port())
            srv.start(command=cmd)
            self.inst.append(srv)
        self.by_name = {s.name: s for s in self.inst}
        self.front = Front(free_port())
        self.hap_proc = None
        self.hap_log = None
        self._start_haproxy(tmp_path)

    def flags(self, *extra):
        return ("-s3-bucket", self.bucket, "-s3-endpoint", self.rgw.endpoint,
                "-s3-object-prefix", self.prefix, "-s3-part-size", str(PART),
                "-s3-min-part-size", str(MIN_PART), "-redis-url", self.redis.url,
                "-redis-lock-lease", LEASE, "-behind-proxy",
                "-trusted-proxies", "127.0.0.1/32") + tuple(extra)

    def _start_haproxy(self, tmp_path):
        hap = haproxy_bin()
        if hap is None:
            pytest.fail("haproxy is not installed; run scripts/install-deps.sh test",
                        pytrace=False)
        cfg = haproxy_config(tmp_path / "haproxy.cfg", self.front.port,
                             [s.port for s in self.inst])
        check = subprocess.run([hap, "-c", "-f", str(cfg)], capture_output=True)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        self.hap_log = open(tmp_path / "haproxy.log", "wb")
        self.hap_proc = subprocess.Popen([hap, "-db", "-f", str(cfg)], stdout=self.hap_log,
                                         stderr=self.hap_log, stdin=subprocess.DEVNULL)
        deadline_poll(lambda: self.hap_proc.poll() is None and port_open(self.front.port),
                      IO_TIMEOUT, what="HAProxy to listen")
        self.wait_all_up()

    def wait_all_up(self):
        """Every instance answers through HAProxy (health checks passed): three OPTIONS
        in a row reach three different instances."""
        def all_answer():
            before = [self.count(s, "OPTIONS") for s in self.inst]
            for _ in range(3):
                if self.front.request("OPTIONS", "/files/", tus=False).status != 200:
                    return False
            return deadline_poll(
                lambda: all(self.count(s, "OPTIONS") > b for s, b in zip(self.inst, before)),
                IO_TIMEOUT, what="access log lines") and True
        deadline_poll(lambda: self._safe(all_answer), SLOW, interval=0.1,
                      what="all three instances serving through HAProxy")

    @staticmethod
    def _safe(fn):
        try:
            return fn()
        except AssertionError:
            return False

    def stop(self):
        if self.hap_proc is not None and self.hap_proc.poll() is None:
            self.hap_proc.terminate()
            try:
                self.hap_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.hap_proc.kill()
                self.hap_proc.wait()
        if self.hap_log is not None:
            self.hap_log.close()

    # -- access logs (the instances' stderr) --------------------------------------------

    @staticmethod
    def access(srv):
        """(method, path, status) of every request this instance answered, in order
        (all its processes, a killed one's included)."""
        return [(m, p, int(st)) for m, p, st in ACCESS_RE.findall(srv.all_stderr())]

    def count(self, srv, method):
        return sum(1 for m, _p, _s in self.access(srv) if m == method)

    def patches(self, uid):
        """instance name -> statuses of the PATCHes of upload `uid` it answered."""
        out = {}
        for srv in self.inst:
            sts = [st for m, p, st in self.access(srv) if m == "PATCH" and p.endswith("/" + uid)]
            if sts:
                out[srv.name] = sts
        return out

    def receiving(self, uid, offset):
        """The instance that began a chunk of `uid` at `offset` (ChunkWriteStart)."""
        pat = re.compile(rf"event=ChunkWriteStart id={uid} offset={offset}\b")
        hits = [s for s in self.inst if pat.search(s.all_stderr())]
        return hits[0] if len(hits) == 1 else None

    # -- the bucket ------------------------------------------------------------------------

    def key(self, path):
        return self.prefix + upload_id(path)

    def keys(self):
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def multipart_uploads(self):
        out = []
        for page in self.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix):
            out += page.get("Uploads", [])
        return out

    def s3_get(self, key):
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def check_exact(self, path, data, instances=None):
        """Byte-exact through every (running) instance's GET and a direct S3 GET; only
        the object and its .info remain; no multipart upload is left for it."""
        for srv in instances or self.inst:
            r = srv.download(path)
            assert r.status == 200, (srv.name, r)
            assert len(r.body) == len(data), (srv.name, len(r.body), len(data))
            assert r.body == data, f"{srv.name}: GET differs from what was sent"
        key = self.key(path)
        assert self.s3_get(key) == data, "the S3 object differs from what was sent"
        assert [k for k in self.keys() if k.startswith(key)] == [key, key + ".info"]
        assert [u for u in self.multipart_uploads() if u["Key"] == key] == []


@pytest.fixture
def cluster_factory(rgw64, redis, tusc, tmp_path, monkeypatch):
    rgw = rgw64
    for k, v in rgw.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    made = []

    def make(*extra):
        c = Cluster(rgw, redis, tusc, tmp_path, extra)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory()


def node_bin():
    node = shutil.which("node")
    if node is None or not (CLIENTS / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("node and tests/clients/node_modules (npm ci in tests/clients) are needed",
                    pytrace=False)
    return node


def patch_head(path, offset, length):
    return build_request("PATCH", path, TUS + [("Upload-Offset", str(offset)),
                                               ("Content-Type", OCTET)],
                         content_length=length)


def final_response(conn):
    """The final response to a PATCH, or None if the connection closed without one."""
    try:
        r, _ = conn.read_final_response("PATCH")
        return r
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError, TimeoutError,
            socket.timeout):
        return None


def send_quietly(conn, data):
    """Sends what the peer still takes; a server that has answered and closed is fine."""
    try:
        conn.send(data)
    except OSError:
        pass


def send_and_answer(conn, body):
    """Sends `body` while reading the final response, so that an answer sent before
    the body is through is read before the peer's close can reset the connection."""
    t = threading.Thread(target=send_quietly, args=(conn, body), daemon=True)
    t.start()
    r = final_response(conn)
    try:
        conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a send the peer no longer reads
    except OSError:
        pass
    t.join(IO_TIMEOUT)
    return r


def resume(front, path, data, what="the resuming PATCH"):
    """HEAD for the offset, PATCH the rest; again while S3, Redis or a lease is in the
    way (5xx), or when an attempt cut short stored bytes after the offset it was sent
    with (409). Returns the final 204."""
    def once():
        h = front.head(path)
        if h.status >= 500:
            return None
        assert h.status == 200, h
        off = int(h.header("Upload-Offset"))
        r = front.patch(path, off, data[off:])
        if r.status >= 500 or r.status == 409:
            return None
        return r
    r = deadline_poll(once, SLOW, interval=0.1, what=what)
    assert r.status == 204 and r.header("Upload-Offset") == str(len(data)), r
    return r


def retry_5xx(fn, what):
    """fn() until it answers something other than 5xx (S3 or Redis coming back)."""
    def once():
        r = fn()
        return r if r.status < 500 else None
    return deadline_poll(once, SLOW, interval=0.1, what=what)


# --- (a) tus-js-client: 20 files, chunks on every instance ---------------------------------


def test_js_client_twenty_files_round_robin(cluster, tmp_path):
    node = node_bin()
    chunk = 100 * 1024  # < PART: PATCHes end mid-part, so tails move between instances
    sizes = [2 * chunk + 1, 3 * chunk, 4 * PART, 4 * PART + 1, 5 * chunk - 1]
    sizes += [2 * chunk + 7919 * i for i in range(1, 16)]
    assert len(sizes) == 20
    files = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"file{i:02d}.bin"
        data = pattern(size, seed=1000 + i)
        p.write_bytes(data)
        files.append((p, data))
    uploads = []
    # One after another: HAProxy's round-robin then sends consecutive requests of an
    # upload to consecutive instances, so every file is spread by construction.
    for p, data in files:
        proc = subprocess.run([node, "upload.js", cluster.front.url("/files/"), str(p),
                               "--chunk-size", str(chunk)], cwd=CLIENTS, capture_output=True,
                              timeout=CLIENT_TIMEOUT)
        out = proc.stdout.decode("utf-8", "replace")
        assert proc.returncode == 0, f"upload.js {p.name}: {out}\n{proc.stderr.decode()}"
        done = [l for l in out.splitlines() if '"event":"done"' in l]
        assert done, out
        url = re.search(r'"url":"([^"]+)"', done[0]).group(1)
        assert url.startswith(cluster.front.origin + "/files/"), url  # Location via HAProxy
        uploads.append(("/files/" + upload_id(url), data))

    def logged():
        for path, data in uploads:
            want = -(-len(data) // chunk)
            if sum(len(v) for v in cluster.patches(upload_id(path)).values()) < want:
                return False
        return True
    deadline_poll(logged, IO_TIMEOUT, what="every PATCH in the access logs")
    served = set()
    for path, data in uploads:
        per = cluster.patches(upload_id(path))
        n = sum(len(v) for v in per.values())
        assert n == -(-len(data) // chunk), (path, per)  # no PATCH was repeated
        assert all(st == 204 for v in per.values() for st in v), (path, per)
        assert len(per) >= 2, f"{path}: all chunks on one instance: {per}"
        served |= set(per)
    assert served == set(NAMES), served
    for path, data in uploads:
        cluster.check_exact(path, data)


# --- (b) kill -9 of the instance receiving a PATCH ----------------------------------------


def test_kill_9_mid_patch_resumes_through_another(cluster):
    c = cluster
    n = 12 * PART + 12345
    data = pattern(n, seed=2)
    path = c.front.create(length=n)
    uid = upload_id(path)
    acked = 2 * PART + 777
    r = c.front.patch(path, 0, data[:acked])
    assert r.status == 204 and r.header("Upload-Offset") == str(acked), r

    conn = c.front.raw(timeout=SLOW)
    try:
        conn.send(patch_head(path, acked, n - acked))
        victim = deadline_poll(lambda: c.receiving(uid, acked), IO_TIMEOUT,
                               what="the instance receiving the second PATCH")
        others = [s for s in c.inst if s is not victim]
        conn.send(data[acked:acked + 3 * PART])
        # Mid-body: some of this PATCH's bytes are in S3 parts (HEAD elsewhere sees
        # them), and the rest of the body has not been sent.
        deadline_poll(lambda: others[0].offset(path) >= 4 * PART, SLOW,
                      what="a part of the second PATCH in S3")
        victim.expect_exit = -signal.SIGKILL
        victim.stop(sig=signal.SIGKILL)
        r = final_response(conn)
        assert r is None or r.status >= 500, r  # HAProxy: 502, or the connection cut
    finally:
        conn.close()
    # HAProxy did not replay the PATCH (or its head) on another instance.
    assert [s.name for s in others
            if re.search(rf"event=ChunkWriteStart id={uid} offset={acked}\b",
                         s.all_stderr())] == []

    # The client resumes through HAProxy (a request to the dead instance is
    # redispatched); whoever serves it waits for the dead holder's lease.
    off = retry_5xx(lambda: c.front.head(path), "HEAD after the kill")
    assert off.status == 200, off
    off = int(off.header("Upload-Offset"))
    assert 4 * PART <= off <= acked + 3 * PART, off  # nothing acknowledged or in S3 lost
    before = c.patches(uid)
    resume(c.front, path, data)
    after = c.patches(uid)
    assert victim.name not in after or after[victim.name] == before.get(victim.name), after

    # The killed instance comes back on its address and serves the upload too.
    victim.expect_exit = None
    victim.start(command=victim.cmd)
    c.check_exact(path, data)


# --- (c) one upload through two instances at once ---------------------------------------


def test_newer_patch_through_another_instance_wins(cluster):
    c = cluster
    a, b = c.inst[0], c.inst[1]
    n = 6 * PART + 999
    data = pattern(n, seed=3)
    path = a.create(length=n)
    uid = upload_id(path)
    c1 = a.raw(timeout=SLOW)
    try:
        # A client stalls after one part (it thinks the connection is dead) ...
        c1.send(patch_head(path, 0, n))
        c1.send(data[:PART])
        deadline_poll(lambda: b.offset(path) == PART, SLOW, what="A's part in S3")
        # ... and resumes through B while A still holds the upload: B asks A to let go.
        r2 = b.patch(path, PART, data[PART:])
        assert r2.status == 204, r2
        assert r2.header("Upload-Offset") == str(n), r2
        r1 = final_response(c1)
        assert r1 is not None, "A's PATCH got no answer"
        assert_error(r1, 400, "ERR_UPLOAD_INTERRUPTED")
    finally:
        c1.close()
    # Each instance answered once: the access log lines may trail the responses.
    deadline_poll(lambda: c.patches(uid) == {a.name: [400], b.name: [204]}, IO_TIMEOUT,
                  what=f"A's 400 and B's 204 in the access logs ({c.patches(uid)})")
    c.check_exact(path, data)


def test_race_through_two_instances_corrupts_nothing(cluster):
    c = cluster
    a, b = c.inst[1], c.inst[2]
    n = 10 * PART + 4321
    datas = {a.name: pattern(n, seed=40), b.name: pattern(n, seed=41)}
    path = c.front.create(length=n)
    results = {}
    start = threading.Barrier(2)

    def send(srv):
        conn = srv.raw(timeout=SLOW)
        try:
            start.wait(IO_TIMEOUT)
            conn.send(patch_head(path, 0, n))
            body = datas[srv.name]
            for off in range(0, n, 64 * 1024):
                send_quietly(conn, body[off:off + 64 * 1024])
            results[srv.name] = final_response(conn)
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SLOW * 2)
    assert set(results) == {a.name, b.name}, results
    wins = [name for name, r in results.items() if r is not None and r.status == 204]
    assert len(wins) <= 1, results
    for name, r in results.items():
        if r is not None and r.status != 204:
            # The documented answers: interrupted by the other request, or the offset
            # moved under it (the other request stored bytes first).
            assert (r.status, r.error_code()) in ((400, "ERR_UPLOAD_INTERRUPTED"),
                                                  (409, "ERR_MISMATCHED_OFFSET")), (name, r)
    off = c.front.offset(path)
    if wins:
        assert off == n, results
    # Finish with A's bytes: the result is A's data, or B's prefix followed by A's rest;
    # a mix of both writers inside the stored prefix would match neither.
    if off < n:
        r = c.front.patch(path, off, datas[a.name][off:])
        assert r.status == 204, r
    got = c.s3_get(c.key(path))
    cands = [datas[a.name], datas[b.name][:off] + datas[a.name][off:]]
    assert got in cands, f"stored bytes mix both writers (prefix {off} bytes)"
    c.check_exact(path, got)


# --- (d) S3 stopped mid-PATCH ------------------------------------------------------------------


def test_rgw_stopped_mid_patch_5xx_then_resumes(cluster):
    c = cluster
    n = 8 * PART + 101
    data = pattern(n, seed=5)
    path = c.front.create(length=n)
    uid = upload_id(path)
    acked = PART + 100
    r = c.front.patch(path, 0, data[:acked])
    assert r.status == 204, r
    conn = c.front.raw(timeout=SLOW * 2)
    stopped = False
    try:
        conn.send(patch_head(path, acked, n - acked))
        srv = deadline_poll(lambda: c.receiving(uid, acked), IO_TIMEOUT,
                            what="the instance receiving the PATCH")
        conn.send(data[acked:acked + 1000])
        c.rgw.stop_radosgw()
        stopped = True
        r = send_and_answer(conn, data[acked + 1000:])
        assert r is not None, "no answer to the PATCH while S3 was down"
        assert r.status >= 500, r  # never a 204 for bytes S3 did not take
    finally:
        conn.close()
        if stopped:
            c.rgw.start_radosgw()
    # The instance itself answered 5xx (not only HAProxy).
    deadline_poll(lambda: len(c.patches(uid).get(srv.name, [])) >= 1 and
                  c.patches(uid)[srv.name][-1] >= 500, IO_TIMEOUT,
                  what="the instance's 5xx in its access log")
    r = retry_5xx(lambda: c.front.head(path), "HEAD after RGW came back")
    off = int(r.header("Upload-Offset"))
    assert acked <= off < n, off  # no acknowledged byte lost
    resume(c.front, path, data)
    c.check_exact(path, data)


# --- (e) nothing left behind -------------------------------------------------------------


def test_terminate_leaves_nothing(cluster):
    c = cluster
    n = 6 * PART
    path = c.front.create(length=n)
    data = pattern(n, seed=6)
    off = 0
    for step in (PART + 5, 2 * PART - 3):  # through two instances: parts and a tail
        r = c.front.patch(path, off, data[off:off + step])
        assert r.status == 204, r
        off += step
    key = c.key(path)
    assert c.keys() and [u for u in c.multipart_uploads() if u["Key"] == key]
    r = c.front.request("DELETE", path)
    assert r.status == 204, r
    assert c.keys() == []
    assert c.multipart_uploads() == []
    for srv in c.inst:
        assert srv.head(path).status in (404, 410)


def test_expiry_leaves_nothing(cluster_factory):
    c = cluster_factory("-expire-after", "3s")
    # A multipart upload no .info names (a crash between creating it and writing the
    # .info): the sweep aborts it once it is older than the expiry.
    orphan = c.s3.create_multipart_upload(Bucket=c.bucket, Key=c.prefix + "orphan")
    assert orphan["UploadId"]
    paths = []
    for i in range(3):
        n = 4 * PART
        path = c.front.create(length=n)
        r = c.front.patch(path, 0, pattern(PART + 5 + i, seed=70 + i))
        assert r.status == 204, r
        paths.append(path)
    assert len(c.keys()) >= 6
    for path in paths:
        deadline_poll(lambda: c.front.head(path).status in (404, 410), SLOW,
                      interval=0.2, what="the upload to expire")
    deadline_poll(lambda: c.keys() == [] and c.multipart_uploads() == [], SLOW,
                  interval=0.2, what="nothing left in the bucket")


# --- deploy/scale-out as shipped ---------------------------------------------------------


def test_deploy_files_run_an_instance(rgw64, tusc, tmp_path, monkeypatch):
    """deploy/scale-out/tusc-scale-out.service's command line with the values of
    tusc.env (addresses pointed at this test's RGW and a Redis started from redis.conf,
    password included) runs an instance that stores an upload in the bucket."""
    deploy = REPO / "deploy" / "scale-out"
    env = {}
    for line in (deploy / "tusc.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip()
    unit = (deploy / "tusc-scale-out.service").read_text()
    assert "EnvironmentFile=/etc/tusc/scale-out.env" in unit
    m = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit.replace("\\\n", " "), re.M)
    argv = m.group(1).split()
    used = set(re.findall(r"\$\{(\w+)\}", m.group(1)))
    assert used <= set(env), f"tusc.env lacks {used - set(env)}"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env)

    # Redis from the shipped fragment: only the address and the password replaced.
    password = "pw-" + uuid.uuid4().hex[:8]
    rport = free_port()
    conf = (deploy / "redis.conf").read_text()
    for pat, rep in ((r"^bind .*$", "bind 127.0.0.1"), (r"^port \d+$", f"port {rport}"),
                     (r"^requirepass \S+$", f"requirepass {password}")):
        conf, n = re.subn(pat, rep, conf, flags=re.M)
        assert n == 1, pat
    (tmp_path / "redis.conf").write_text(conf + f"dir {tmp_path}\n")
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; run scripts/install-deps.sh test",
                    pytrace=False)
    redis = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline_poll(lambda: redis.poll() is None and port_open(rport), IO_TIMEOUT,
                      what="redis-server from deploy/scale-out/redis.conf")
        prefix = "dep" + uuid.uuid4().hex[:10] + "/"
        env.update(TUSC_LISTEN_HOST="127.0.0.1", TUSC_HAPROXY_CIDR="127.0.0.1/32",
                   TUSC_S3_BUCKET=rgwmod.BUCKET, TUSC_S3_ENDPOINT=rgw64.endpoint,
                   TUSC_REDIS_URL=f"redis://:{password}@127.0.0.1:{rport}/0",
                   AWS_ACCESS_KEY_ID=rgwmod.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=rgwmod.SECRET_KEY,
                   AWS_REGION=rgwmod.REGION)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
            monkeypatch.setenv(k, env[k])
        args = [re.sub(r"\$\{(\w+)\}", lambda mm: env[mm.group(1)], a) for a in argv[1:]]
        args[args.index("-port") + 1] = "0"
        args[args.index("-s3-object-prefix") + 1] = prefix
        srv = tusc(start=False, name="deployed")
        srv.start(command=[srv.command()[0]] + args)
        data = pattern(3 * 1024 * 1024 + 5, seed=9)
        path = srv.create(length=len(data))
        assert srv.patch(path, 0, data).status == 204
        assert srv.download(path).body == data
        s3 = rgw64.client()
        assert s3.get_object(Bucket=rgwmod.BUCKET,
                             Key=prefix + upload_id(path))["Body"].read() == data
        assert "Using Redis for upload locks" in srv.stderr()
        assert srv.stop() == 0
    finally:
        redis.terminate()
        redis.wait(timeout=10)
