"""Two tusc instances on one upload directory (a shared filesystem standing in for NFS)
with -redis-url: the Redis lock (src/lock/redis.c) against a real redis-server that the
test starts on a unix socket and stops by PID.

- A PATCH through B asks A, which holds the upload, to let go: A ends its PATCH keeping
  its bytes, B proceeds, the file is byte-exact.
- A is killed (SIGKILL) holding the lock: B proceeds once A's lease ran out.
- Redis stopped: a PATCH in flight ends keeping its bytes, new PATCHes get 503 with a
  clear body and change nothing; Redis back: the same processes work again.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import assert_error, build_request, deadline_poll, sha256, OCTET

TUS = [("Tus-Resumable", "1.0.0")]
LEASE = "1s"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


class Redis:
    """redis-server on <dir>/r.sock, no persistence; stopped by PID."""

    def __init__(self, workdir):
        self.dir = workdir
        self.sock = str(workdir / "r.sock")
        self.url = "unix://" + self.sock
        self.proc = None

    def _answers(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline_poll(lambda: self.proc.poll() is None and self._answers(), 10,
                      interval=0.01, what="redis-server to accept")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis(tmp_path):
    d = tmp_path / "redis"
    d.mkdir()
    r = Redis(d)
    r.start()
    yield r
    r.stop()


def pair(tusc, redis, *extra):
    a = tusc("-redis-url", redis.url, "-redis-lock-lease", LEASE, *extra)
    b = tusc("-redis-url", redis.url, "-redis-lock-lease", LEASE, *extra,
             upload_dir=a.upload_dir)
    return a, b


def patch_head(up, offset, length):
    return build_request("PATCH", up, TUS + [("Upload-Offset", str(offset)),
                                             ("Content-Type", OCTET)],
                         content_length=length)


def wait_offset(srv, up, target, timeout=20):
    deadline_poll(lambda: srv.offset(up) == target, timeout, what=f"Upload-Offset {target}")


def final_response(conn):
    try:
        r, _ = conn.read_final_response("PATCH")
        return r
    except Exception:  # closed without an answer
        return None


def test_patch_through_b_asks_a_to_let_go(redis, tusc):
    a, b = pair(tusc, redis, "-acquire-lock-timeout", "60s")
    n = 1_000_000
    data = os.urandom(n)
    up = a.create(length=n)
    c1 = a.raw(timeout=30)
    try:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:300_000])
        wait_offset(a, up, 300_000)
        # B sees the bytes A has (shared directory), and takes over the upload.
        t0 = time.monotonic()
        r2 = b.patch(up, 300_000, data[300_000:])
        took = time.monotonic() - t0
        assert r2.status == 204, r2
        assert r2.header("Upload-Offset") == str(n), r2
        assert took < 20, f"B's PATCH took {took:.1f}s: A was not asked to let go"
        r1 = final_response(c1)
        assert r1 is not None, "A's interrupted PATCH got no response"
        assert_error(r1, 400, "ERR_UPLOAD_INTERRUPTED")
    finally:
        c1.close()
    for srv in (a, b):
        assert srv.offset(up) == n
        assert sha256(srv.download(up).body) == sha256(data)
    # And back: A continues another upload B held, through the same Redis.
    up2 = b.create(length=3)
    assert b.patch(up2, 0, b"ab").status == 204
    assert a.patch(up2, 2, b"c").status == 204
    assert a.download(up2).body == b"abc"


def test_killed_holder_b_proceeds_after_lease(redis, tusc):
    a, b = pair(tusc, redis, "-acquire-lock-timeout", "30s")
    n = 600_000
    data = os.urandom(n)
    up = a.create(length=n)
    c1 = a.raw(timeout=30)
    try:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:200_000])
        wait_offset(a, up, 200_000)
        a.expect_exit = -signal.SIGKILL
        a.stop(sig=signal.SIGKILL)
    finally:
        c1.close()
    off = b.offset(up)  # HEAD takes no lock
    assert 0 <= off <= 200_000, off
    t0 = time.monotonic()
    r = b.patch(up, off, data[off:])
    took = time.monotonic() - t0
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(n), r
    assert took < 20, took
    assert sha256(b.download(up).body) == sha256(data)


def test_redis_down_503_then_back(redis, tusc):
    a, b = pair(tusc, redis, "-acquire-lock-timeout", "10s")
    n = 400_000
    data = os.urandom(n)
    up = a.create(length=n)
    assert a.patch(up, 0, data[:100_000]).status == 204

    # A PATCH in flight when Redis goes: it ends keeping what it got.
    c1 = a.raw(timeout=30)
    try:
        c1.send(patch_head(up, 100_000, n - 100_000))
        c1.send(data[100_000:150_000])
        wait_offset(a, up, 150_000)
        redis.stop(signal.SIGKILL)
        r1 = final_response(c1)
        assert r1 is not None, "the PATCH in flight got no response"
        assert_error(r1, 400, "ERR_UPLOAD_INTERRUPTED")
    finally:
        c1.close()
    assert a.offset(up) == 150_000

    # While Redis is down: 503 with a clear body, nothing written.
    for srv in (a, b):
        r = srv.patch(up, 150_000, data[150_000:250_000])
        assert_error(r, 503, "ERR_LOCK_UNAVAILABLE")
        assert "Redis" in r.text, r
        assert r.header("Retry-After") is not None, r
        assert srv.offset(up) == 150_000

    # Redis back (empty): the same processes reconnect by themselves.
    redis.start()

    def patched():
        r = b.patch(up, 150_000, data[150_000:250_000])
        if r.status == 503:
            return None
        return r
    r = deadline_poll(patched, 20, interval=0.05, what="a PATCH through B after Redis came back")
    assert r.status == 204, r
    r = deadline_poll(lambda: (lambda x: x if x.status != 503 else None)(
        a.patch(up, 250_000, data[250_000:])), 20, interval=0.05,
        what="a PATCH through A after Redis came back")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(n), r
    for srv in (a, b):
        assert sha256(srv.download(up).body) == sha256(data)


def test_sigterm_with_a_held_lock_releases_it(redis, tusc):
    """SIGTERM while a PATCH holds the lock: the process exits cleanly (its Redis
    connections close once the request let go), the bytes stay, and the lock was
    released in Redis, not left to expire: B gets the upload long before the lease."""
    a = tusc("-redis-url", redis.url, "-redis-lock-lease", "60s")
    b = tusc("-redis-url", redis.url, "-redis-lock-lease", "60s", "-acquire-lock-timeout", "50s",
             upload_dir=a.upload_dir)
    n = 300_000
    data = os.urandom(n)
    up = a.create(length=n)
    c1 = a.raw(timeout=30)
    try:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:100_000])
        wait_offset(a, up, 100_000)
        assert a.stop(sig=signal.SIGTERM) == 0
    finally:
        c1.close()
    off = b.offset(up)
    assert off == 100_000, off
    t0 = time.monotonic()
    r = b.patch(up, off, data[off:])
    took = time.monotonic() - t0
    assert r.status == 204, r
    assert took < 30, f"B waited {took:.1f}s: A's lock was left to expire"
    assert sha256(b.download(up).body) == sha256(data)


def test_lease_taken_over_mid_patch_keeps_nothing_of_the_chunk(redis, tusc):
    """A lease lost while a PATCH streams (here: the key overwritten behind the holder's
    back, as if the lease had expired and another instance had taken it): the holder
    stores nothing more of the chunk and does not acknowledge it: 503 ERR_LOCK_LOST, and
    the offset is where the chunk began, so that the new holder's writes are not mixed
    with this one's."""
    a = tusc("-redis-url", redis.url, "-redis-lock-lease", LEASE)
    n = 400_000
    data = os.urandom(n)
    up = a.create(length=n)
    assert a.patch(up, 0, data[:1000]).status == 204
    c = a.raw(timeout=30)
    try:
        c.send(patch_head(up, 1000, n - 1000))
        c.send(data[1000:200_000])
        wait_offset(a, up, 200_000)
        key = "tusc:lock:{%s}" % up.rsplit("/", 1)[1]
        out = subprocess.run(["redis-cli", "-s", redis.sock, "SET", key, "someone-else x"],
                             capture_output=True, text=True, timeout=10)
        assert out.stdout.strip() == "OK", out
        r = final_response(c)
        assert r is not None, "the PATCH got no response"
        assert_error(r, 503, "ERR_LOCK_LOST")
    finally:
        c.close()
    assert a.offset(up) == 1000
