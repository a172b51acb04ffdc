"""Limits: -max-connections and -max-connections-per-ip (a quick 503 or a plain close
beyond them), the header timeout that defeats slowloris (1,000 connections dribbling a
header byte per second do not delay a normal 10 MB upload, and are cut once the header
timeout passes), -max-metadata-size, and -min-upload-rate.

Connections from 127.0.0.2 (routed to lo by Linux) count as another client address."""
import os
import resource
import select
import socket
import threading
import time

import pytest

from conftest import (OCTET, ConnectionClosed, RawConn, assert_error, b64, build_request,
                      deadline_poll, upload_id)

HEAD_START = b"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def connect(srv, source=None, timeout=15):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect((srv.host, srv.port))
    c = RawConn.__new__(RawConn)
    c.sock, c.buf, c.eof = sock, b"", False
    return c


def post_on(c, length=1):
    c.send(build_request("POST", "/files/", [("Tus-Resumable", "1.0.0"),
                                             ("Upload-Length", str(length))]))
    r, _ = c.read_final_response("POST")
    return r


def refused(srv, source=None):
    """True when a new connection is turned away: a 503 and close, or just a close."""
    try:
        c = connect(srv, source)
    except (ConnectionResetError, ConnectionRefusedError):
        return True
    try:
        r = post_on(c)
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        c.close()
    if r.status == 503:
        assert r.error_code() == "ERR_TOO_MANY_CONNECTIONS", r
        return True
    assert r.status == 201, r
    return False


# --- connection limits ---------------------------------------------------------------


def test_max_connections_per_ip(tusc):
    srv = tusc("-max-connections-per-ip", "3", "-header-timeout", "60s")
    held = [connect(srv) for _ in range(3)]
    try:
        # the three are served normally (and stay open: keep-alive)
        for c in held:
            assert post_on(c).status == 201
        assert refused(srv)
        # another address has its own allowance
        assert not refused(srv, "127.0.0.2")
        # closing one frees a slot for this address
        held.pop().close()
        deadline_poll(lambda: not refused(srv), 10, what="slot freed")
    finally:
        for c in held:
            c.close()


def test_max_connections_total(tusc):
    srv = tusc("-max-connections", "4", "-header-timeout", "60s")
    held = [connect(srv, "127.0.0.1" if i % 2 else "127.0.0.3") for i in range(4)]
    try:
        for c in held:
            assert post_on(c).status == 201
        assert refused(srv)
        assert refused(srv, "127.0.0.2")  # the total counts every address
        held.pop().close()
        deadline_poll(lambda: not refused(srv, "127.0.0.2"), 10, what="slot freed")
    finally:
        for c in held:
            c.close()


# --- header timeout / slowloris -------------------------------------------------------


def test_partial_head_and_silent_connection_cut_by_header_timeout(tusc):
    srv = tusc("-header-timeout", "1s", "-network-timeout", "60s")
    with srv.raw() as silent, srv.raw() as partial, srv.raw() as keepalive:
        assert post_on(keepalive).status == 201
        partial.send(HEAD_START)
        t0 = time.monotonic()
        # keep dribbling: per-byte progress must not extend the deadline
        for _ in range(4):
            time.sleep(0.3)
            try:
                partial.send(b"a")
            except OSError:
                break
        assert partial.closed_by_peer(5)
        assert silent.closed_by_peer(5)
        assert time.monotonic() - t0 < 8
        # an idle keep-alive connection after a request waits for -network-timeout
        assert not keepalive.closed_by_peer(1)
        assert post_on(keepalive).status == 201


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target < 2200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} too low for 1,000 connections")
    if soft < target:
        # The server is started after this and inherits the raised limit.
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, hard


def timed_upload(srv, data):
    t0 = time.monotonic()
    r = srv.request("POST", "/files/", {"Upload-Length": str(len(data))}, timeout=120)
    assert r.status == 201, r
    up = r.header("Location")
    r = srv.patch(up, 0, data)
    assert r.status == 204 and r.header("Upload-Offset") == str(len(data)), r
    return time.monotonic() - t0


def test_slowloris_1000_dribblers_do_not_delay_upload(tusc):
    old = raise_nofile(4096)
    try:
        # The loaded upload must end before the dribblers' heads time out; 12 s leaves
        # room for a slow ASan run on a busy machine.
        header_timeout = 12
        srv = tusc("-header-timeout", f"{header_timeout}s", "-network-timeout", "60s")
        data = os.urandom(10 * 1024 * 1024)
        baseline = timed_upload(srv, data)

        socks = []
        for i in range(1000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.{1 + i % 4}.{1 + i // 4 % 250}", 0))
            s.connect((srv.host, srv.port))
            s.setblocking(False)
            socks.append(s)
        started = time.monotonic()
        stop = threading.Event()
        sent = {"bytes": 0, "errors": 0}
        head = HEAD_START + b"a" * 64

        def dribble():
            pos = 0
            while not stop.is_set() and pos < len(head):
                for s in socks:
                    try:
                        s.send(head[pos:pos + 1])
                        sent["bytes"] += 1
                    except OSError:
                        sent["errors"] += 1
                pos += 1
                stop.wait(1.0)

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            deadline_poll(lambda: sent["bytes"] + sent["errors"] >= len(socks), 20,
                          what="every dribbler has begun its head")
            loaded = timed_upload(srv, data)
            assert sent["bytes"] >= 1000
            assert time.monotonic() - started < header_timeout, \
                "upload outlasted the header timeout"
            print("slowloris baseline %.2fs loaded %.2fs" % (baseline, loaded))
            assert loaded < max(3 * baseline, baseline + 5.0), (baseline, loaded)

            # the dribblers are cut once their head is header_timeout old
            def all_closed():
                r, _, _ = select.select(socks, [], [], 0.5)
                closed = 0
                for s in socks:
                    try:
                        if s.recv(1) == b"":
                            closed += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed += 1
                return closed == len(socks)

            deadline_poll(all_closed, 20, interval=0.5, what="dribblers closed")
            assert time.monotonic() - started > header_timeout - 1, \
                "dribblers closed before the header timeout"
        finally:
            stop.set()
            t.join(5)
            for s in socks:
                s.close()
        # still healthy
        assert timed_upload(srv, data[:1024]) < 30
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


# --- metadata --------------------------------------------------------------------------


def test_metadata_size_cap(tusc):
    srv = tusc("-max-metadata-size", "64")
    fits = "filename " + b64("x" * 30)          # 9 + 40 = 49 bytes
    exact = "a " + b64("y" * 45)                # 2 + 60 = 62 bytes
    exact += "," + "b"                          # 64 bytes
    assert len(exact) == 64
    too_big = "filename " + b64("x" * 60)       # 9 + 80 = 89 bytes
    assert srv.request("POST", "/files/", {"Upload-Length": "1",
                                           "Upload-Metadata": fits}).status == 201
    assert srv.request("POST", "/files/", {"Upload-Length": "1",
                                           "Upload-Metadata": exact}).status == 201
    r = srv.request("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": too_big})
    assert_error(r, 400, "ERR_INVALID_METADATA")
    assert len(list(srv.upload_dir.rglob("*.info"))) == 2


def test_metadata_default_cap_64k(server):
    big = "k " + b64("v" * 60000)  # ~80 KB
    r = server.request("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": big})
    assert r.status in (400, 431), r
    assert not any(server.upload_dir.rglob("*.info"))


# --- minimum upload rate -------------------------------------------------------------


def test_min_upload_rate_cuts_slow_patch_and_keeps_bytes(tusc):
    srv = tusc("-min-upload-rate", "10000", "-min-upload-rate-window", "1s")
    up = srv.create(length=100000)
    with srv.raw() as c:
        t0 = time.monotonic()
        c.send(build_request("PATCH", up, [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                                           ("Content-Type", OCTET)], content_length=100000))
        c.send(b"z" * 100)
        r, _ = c.read_final_response("PATCH")
        took = time.monotonic() - t0
    assert_error(r, 408, "ERR_READ_TIMEOUT")
    assert 0.8 < took < 6, took
    assert srv.offset(up) == 100
    # the client resumes at a fine pace
    assert srv.patch(up, 100, b"z" * 99900).status == 204


def test_min_upload_rate_leaves_fast_uploads_alone(tusc):
    srv = tusc("-min-upload-rate", "10000", "-min-upload-rate-window", "1s")
    up = srv.create(length=100000)
    with srv.raw() as c:
        c.send(build_request("PATCH", up, [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                                           ("Content-Type", OCTET)], content_length=100000))
        for _ in range(5):  # 20 KB every 0.4 s = 50 KB/s over 2 s
            c.send(b"f" * 20000)
            time.sleep(0.4)
        r, _ = c.read_final_response("PATCH")
    assert r.status == 204 and r.header("Upload-Offset") == "100000", r


def test_min_upload_rate_off_by_default(server):
    up = server.create(length=200)
    with server.raw() as c:
        c.send(build_request("PATCH", up, [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                                           ("Content-Type", OCTET)], content_length=200))
        c.send(b"s" * 100)
        time.sleep(2.5)
        c.send(b"s" * 100)
        r, _ = c.read_final_response("PATCH")
    assert r.status == 204, r
