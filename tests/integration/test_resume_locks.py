"""Interrupted PATCHes and resumption, lock release between two PATCHes, HEAD/GET not
taking the lock, graceful stop with an upload in flight."""
import hashlib
import os
import time

from conftest import (OCTET, ConnectionClosed, assert_error, build_request, deadline_poll,
                      sha256)

TUS = [("Tus-Resumable", "1.0.0")]


def patch_head(up, offset, length, extra=()):
    """Request head of a PATCH announcing `length` body bytes (the body is sent apart)."""
    return build_request("PATCH", up, TUS + [("Upload-Offset", str(offset)),
                                             ("Content-Type", OCTET)] + list(extra),
                         content_length=length)


def wait_offset(srv, up, target, timeout=20):
    """Polls HEAD until the offset reaches `target`; returns it. Fails with the last
    offset seen if it never does."""
    seen = []

    def reached():
        off = srv.offset(up)
        seen.append(off)
        return off == target

    try:
        deadline_poll(reached, timeout, what=f"Upload-Offset {target}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last offsets seen: {seen[-5:]}") from None
    return target


def timed_head(srv, up, limit=5.0):
    t0 = time.monotonic()
    r = srv.head(up)
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert took < limit, f"HEAD took {took:.2f}s: it must not wait for the upload's lock"
    return int(r.header("Upload-Offset"))


def read_interrupted_response(conn):
    """The response a PATCH gets when it is stopped, or None if the server closed
    the connection without one."""
    try:
        r, _ = conn.read_final_response("PATCH")
        return r
    except (ConnectionClosed, ConnectionResetError, TimeoutError):
        return None


def test_interrupted_patch_then_resume_identical(server):
    # An odd size and an odd cut, so a server that only keeps whole blocks shows.
    n = 3_000_017
    half = n // 2
    data = os.urandom(n)
    up = server.create(length=n)
    c = server.raw()
    c.send(patch_head(up, 0, n))
    c.send(data[:half])
    c.close()  # clean FIN: every byte sent reaches the server
    # What reached the server must be kept, all of it.
    off = wait_offset(server, up, half)
    assert off == half
    r = server.patch(up, off, data[off:])
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(n), r
    g = server.download(up)
    assert g.status == 200, g
    assert sha256(g.body) == sha256(data)
    assert hashlib.sha256(server.data_file(up).read_bytes()).hexdigest() == sha256(data)


def test_interrupted_twice_resumes_each_time(server):
    n = 1_000_003
    data = os.urandom(n)
    up = server.create(length=n)
    off = 0
    for cut in (333_331, 777_777):
        c = server.raw()
        c.send(patch_head(up, off, n - off))
        c.send(data[off:cut])
        c.close()
        off = wait_offset(server, up, cut)
    r = server.patch(up, off, data[off:])
    assert r.status == 204, r
    assert sha256(server.download(up).body) == sha256(data)


def test_read_timeout_keeps_bytes(tusc):
    srv = tusc("-network-timeout", "1s")
    n = 100_000
    data = os.urandom(n)
    up = srv.create(length=n)
    with srv.raw(timeout=20) as c:
        c.send(patch_head(up, 0, n))
        c.send(data[:40_000])
        # The client stalls; the server gives up after its network timeout.
        r = read_interrupted_response(c)
        if r is not None:
            assert r.status in (400, 408, 500), r
    wait_offset(srv, up, 40_000)
    assert srv.patch(up, 40_000, data[40_000:]).status == 204
    assert srv.download(up).body == data


def test_lock_release_second_patch_proceeds(tusc):
    # A long lock timeout: if the second PATCH waited for it, the test would notice.
    srv = tusc("-acquire-lock-timeout", "60s", "-network-timeout", "60s")
    n = 1_000_000
    data = os.urandom(n)
    up = srv.create(length=n)
    c1 = srv.raw(timeout=30)
    try:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:100_000])
        wait_offset(srv, up, 100_000)
        # HEAD and GET during the stalled PATCH answer at once and do not stop it.
        assert timed_head(srv, up) == 100_000
        t0 = time.monotonic()
        g = srv.download(up)
        assert time.monotonic() - t0 < 5.0, "GET waited for the upload's lock"
        assert g.status < 500, g
        c1.send(data[100_000:200_000])
        wait_offset(srv, up, 200_000)
        assert timed_head(srv, up) == 200_000

        # A second PATCH on another connection asks the holder to let go.
        t0 = time.monotonic()
        r2 = srv.patch(up, 200_000, data[200_000:], )
        took = time.monotonic() - t0
        assert r2.status == 204, r2
        assert r2.header("Upload-Offset") == str(n), r2
        assert took < 10, f"second PATCH took {took:.1f}s (waited for the lock timeout?)"

        r1 = read_interrupted_response(c1)
        assert r1 is not None, "the interrupted PATCH got no response"
        assert_error(r1, 400, "ERR_UPLOAD_INTERRUPTED")
    finally:
        c1.close()
    assert sha256(srv.download(up).body) == sha256(data)


def test_lock_release_second_patch_wrong_offset_409(tusc):
    srv = tusc("-acquire-lock-timeout", "60s")
    n = 50_000
    data = os.urandom(n)
    up = srv.create(length=n)
    with srv.raw(timeout=30) as c1:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:10_000])
        wait_offset(srv, up, 10_000)
        t0 = time.monotonic()
        r2 = srv.patch(up, 0, data)
        assert time.monotonic() - t0 < 10
        assert_error(r2, 409, "ERR_MISMATCHED_OFFSET")
        r1 = read_interrupted_response(c1)
        assert r1 is not None, "the interrupted PATCH got no response"
        assert_error(r1, 400, "ERR_UPLOAD_INTERRUPTED")
    assert srv.offset(up) == 10_000
    assert srv.patch(up, 10_000, data[10_000:]).status == 204
    assert srv.download(up).body == data


def test_delete_during_stalled_patch(tusc):
    srv = tusc("-acquire-lock-timeout", "60s")
    up = srv.create(length=1000)
    with srv.raw(timeout=30) as c1:
        c1.send(patch_head(up, 0, 1000))
        c1.send(b"x" * 100)
        wait_offset(srv, up, 100)
        t0 = time.monotonic()
        r = srv.request("DELETE", up)
        assert time.monotonic() - t0 < 10
        assert r.status == 204, r
        read_interrupted_response(c1)
    assert srv.head(up).status in (404, 410)
    assert srv.files_of(up) == []


def test_many_heads_do_not_disturb_upload(server):
    n = 200_000
    data = os.urandom(n)
    up = server.create(length=n)
    with server.raw(timeout=30) as c:
        c.send(patch_head(up, 0, n))
        step = n // 10
        for i in range(10):
            c.send(data[i * step:(i + 1) * step])
            wait_offset(server, up, (i + 1) * step)
        r, _ = c.read_final_response("PATCH")
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str(n), r
    assert server.download(up).body == data


def test_sigterm_during_stalled_patch_keeps_bytes(tusc):
    srv = tusc("-shutdown-timeout", "3s")
    n = 500_000
    data = os.urandom(n)
    up = srv.create(length=n)
    c1 = srv.raw(timeout=30)
    try:
        c1.send(patch_head(up, 0, n))
        c1.send(data[:123_457])
        wait_offset(srv, up, 123_457)
        t0 = time.monotonic()
        rc = srv.stop()
        took = time.monotonic() - t0
        assert rc == 0, f"exit code {rc} after SIGTERM"
        # 3 s shutdown timeout plus room for ASan's exit-time leak check.
        assert took < 3 + 10, f"took {took:.1f}s to stop"
        r1 = read_interrupted_response(c1)
        if r1 is not None:
            assert r1.status in (400, 503), r1
            if r1.status == 503:
                assert r1.error_code() == "ERR_SERVER_SHUTDOWN", r1
    finally:
        c1.close()
    srv2 = tusc(upload_dir=srv.upload_dir)
    assert srv2.offset(up) == 123_457
    assert srv2.patch(up, 123_457, data[123_457:]).status == 204
    assert sha256(srv2.download(up).body) == sha256(data)


def test_sigterm_with_idle_keepalive_connections(tusc):
    srv = tusc()
    conns = []
    try:
        for _ in range(5):
            c = srv.raw()
            c.send(build_request("OPTIONS", "/files/", []))
            assert c.read_response("OPTIONS").status == 200
            conns.append(c)
        t0 = time.monotonic()
        rc = srv.stop()
        assert rc == 0
        # Idle connections must not hold the process until the shutdown timeout (10 s).
        assert time.monotonic() - t0 < 8
    finally:
        for c in conns:
            c.close()


def test_sigint_clean_exit(tusc):
    import signal
    srv = tusc()
    assert srv.create(length=1)
    assert srv.stop(sig=signal.SIGINT) == 0


def test_sigterm_with_stalled_download(tusc):
    """A client that stops reading a large download does not keep the server from
    stopping cleanly within its shutdown timeout."""
    srv = tusc("-shutdown-timeout", "2s")
    data = os.urandom(20_000_000)
    up = srv.create(length=len(data))
    assert srv.patch(up, 0, data).status == 204
    c = srv.raw(timeout=30)
    try:
        c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        c.send(build_request("GET", up, []))
        c._fill()  # the response has started; now we stop reading
        t0 = time.monotonic()
        rc = srv.stop()
        took = time.monotonic() - t0
        assert rc == 0, f"exit code {rc}"
        assert took < 2 + 10, f"took {took:.1f}s"
    finally:
        c.close()


def test_sigterm_with_many_connections(tusc):
    srv = tusc()
    conns = []
    try:
        for i in range(100):
            c = srv.raw()
            if i % 2:
                c.send(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n")  # half a request
            conns.append(c)
        assert srv.request("OPTIONS", "/files/", tus=False).status == 200
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 10 + 10
    finally:
        for c in conns:
            c.close()


def test_sigkill_mid_patch_then_resume(tusc):
    """A crash (SIGKILL) while a PATCH is in flight: after a restart on the same
    directory every acknowledged byte is there, no stale lock blocks the upload, and
    the resumed upload is byte-identical."""
    import signal
    srv = tusc()
    n = 2_000_000
    data = os.urandom(n)
    up = srv.create(length=n)
    r = srv.patch(up, 0, data[:500_000])
    assert r.status == 204, r
    c = srv.raw(timeout=30)
    try:
        c.send(patch_head(up, 500_000, n - 500_000))
        c.send(data[500_000:900_000])
        wait_offset(srv, up, 900_000)
        srv.expect_exit = -signal.SIGKILL
        srv.stop(sig=signal.SIGKILL)
    finally:
        c.close()
    srv2 = tusc(upload_dir=srv.upload_dir)
    off = srv2.offset(up)
    assert 500_000 <= off <= 900_000, off
    t0 = time.monotonic()
    r = srv2.patch(up, off, data[off:])
    assert r.status == 204, r
    assert time.monotonic() - t0 < 10
    assert sha256(srv2.download(up).body) == sha256(data)
