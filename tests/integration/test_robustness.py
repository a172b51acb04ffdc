"""Concurrency, timeouts, persistence across restarts, tusd's flat directory, extreme
lengths."""
import json
import os
import random
import re
import threading
import time
import urllib.parse

from conftest import OCTET, RawConn, b64, build_request, deadline_poll, sha256

TUS = [("Tus-Resumable", "1.0.0")]


def test_many_concurrent_uploads(server):
    """16 clients at once, each its own upload in random-sized chunks over keep-alive."""
    errors = []
    results = {}

    def client(i):
        rnd = random.Random(i)
        data = os.urandom(rnd.randint(100_000, 1_500_000))
        try:
            with server.raw(timeout=60) as c:
                c.send(build_request("POST", "/files/", TUS + [("Upload-Length", str(len(data)))]))
                r = c.read_response("POST")
                assert r.status == 201, r
                up = urllib.parse.urlsplit(r.header("Location")).path
                off = 0
                while off < len(data):
                    n = rnd.randint(1, 300_000)
                    chunk = data[off:off + n]
                    c.send(build_request("PATCH", up, TUS + [("Upload-Offset", str(off)),
                                                             ("Content-Type", OCTET)], chunk))
                    r = c.read_response("PATCH")
                    assert r.status == 204, r
                    off += len(chunk)
                    assert r.header("Upload-Offset") == str(off), r
            results[up] = sha256(data)
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert not errors, errors
    assert len(results) == 16
    for up, digest in results.items():
        assert sha256(server.download(up).body) == digest, up


def test_racing_patches_same_offset(server):
    """Two PATCHes for the same upload and offset at the same moment: whatever the
    order, the stored bytes are one of them, never a mix, and the offset is right."""
    for _ in range(5):
        up = server.create(length=200_000)
        a, b = b"A" * 200_000, b"B" * 200_000
        conns = [server.raw(timeout=30), server.raw(timeout=30)]
        reqs = [build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET)],
                              body) for body in (a, b)]
        try:
            ts = [threading.Thread(target=c.send, args=(r,)) for c, r in zip(conns, reqs)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=30)
            resps = []
            for c in conns:
                try:
                    resps.append(c.read_final_response("PATCH")[0])
                except Exception:  # noqa: BLE001 — a closed connection counts as failed
                    resps.append(None)
        finally:
            for c in conns:
                c.close()
        statuses = [r.status if r else None for r in resps]
        assert all(s in (204, 400, 409, None) for s in statuses), resps
        off = server.offset(up)
        body = server.download(up).body
        assert len(body) == off
        # A's bytes then B's (after a lock release) or the other way round; never
        # interleaved, never past the length.
        assert re.fullmatch(rb"A*B*|B*A*", body), (statuses, body[:50])
        assert off <= 200_000
        if 204 in statuses:
            assert off == 200_000 or statuses.count(204) == 1, statuses


def test_stalled_headers_closed_by_network_timeout(tusc):
    srv = tusc("-network-timeout", "1s")
    with srv.raw(timeout=20) as c:
        c.send(b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n")
        t0 = time.monotonic()
        data = c.read_until_close()
        took = time.monotonic() - t0
        assert took < 10, f"stalled header connection kept open {took:.1f}s"
        if data:
            assert data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5"), data[:100]
    assert srv.request("OPTIONS", "/files/", tus=False).status == 200


def test_idle_keepalive_closed_by_network_timeout(tusc):
    srv = tusc("-network-timeout", "1s")
    with srv.raw(timeout=20) as c:
        c.send(build_request("OPTIONS", "/files/", []))
        assert c.read_response("OPTIONS").status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(15), "idle keep-alive connection never closed"
        assert time.monotonic() - t0 < 10


def test_state_survives_restart(tusc):
    srv = tusc()
    meta = f"filename {b64('keep.txt')},filetype {b64('text/plain')}"
    up = srv.create(length=10, metadata=meta)
    assert srv.patch(up, 0, b"01234").status == 204
    r = srv.request("POST", "/files/", {"Upload-Defer-Length": "1"})
    deferred = urllib.parse.urlsplit(r.header("Location")).path
    assert srv.patch(deferred, 0, b"xy").status == 204
    assert srv.stop() == 0
    srv2 = tusc(upload_dir=srv.upload_dir)
    h = srv2.head(up)
    assert h.status == 200, h
    assert h.header("Upload-Offset") == "5" and h.header("Upload-Length") == "10", h
    assert set(h.header("Upload-Metadata").split(",")) == set(meta.split(",")), h
    h = srv2.head(deferred)
    assert h.header("Upload-Defer-Length") == "1" and h.header("Upload-Offset") == "2", h
    assert srv2.patch(up, 5, b"56789").status == 204
    g = srv2.download(up)
    assert g.body == b"0123456789"
    assert g.header("Content-Type").startswith("text/plain"), g


def test_serves_flat_tusd_directory(tusc, tmp_path):
    """An upload dir written by tusd (flat <id> + <id>.info) is served as it is."""
    d = tmp_path / "tusd-data"
    d.mkdir()
    uid = "9f3c5d1e2b4a69780f1e2d3c4b5a6978"
    (d / uid).write_bytes(b"tusd")
    info = {"ID": uid, "Size": 10, "SizeIsDeferred": False, "Offset": 0,
            "MetaData": {"filename": "old.bin", "filetype": "application/octet-stream"},
            "IsPartial": False, "IsFinal": False, "PartialUploads": None,
            "Storage": {"Type": "filestore", "Path": str(d / uid),
                        "InfoPath": str(d / (uid + ".info"))}}
    (d / (uid + ".info")).write_text(json.dumps(info))
    srv = tusc(upload_dir=d)
    up = f"/files/{uid}"
    h = srv.head(up)
    assert h.status == 200, h
    assert h.header("Upload-Offset") == "4" and h.header("Upload-Length") == "10", h
    assert f"filename {b64('old.bin')}" in h.header("Upload-Metadata"), h
    r = srv.patch(up, 4, b"-data!")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "10", r
    assert srv.download(up).body == b"tusd-data!"
    assert srv.request("DELETE", up).status == 204
    assert not (d / uid).exists() and not (d / (uid + ".info")).exists()


def test_huge_upload_length(server):
    big = str(2**63 - 1)
    r = server.request("POST", "/files/", {"Upload-Length": big})
    assert r.status == 201, r
    up = urllib.parse.urlsplit(r.header("Location")).path
    assert server.head(up).header("Upload-Length") == big
    r = server.patch(up, 0, b"abc")
    assert r.status == 204, r
    r = server.request("PATCH", up, {"Upload-Offset": str(2**63 - 2), "Content-Type": OCTET},
                       b"zzzz")
    assert r.status == 409, r
    assert server.offset(up) == 3


def test_abandoned_patch_does_not_hold_lock(server):
    up = server.create(length=100)
    with RawConn(server.port) as c:
        c.send(build_request("PATCH", up, TUS + [("Upload-Offset", "0"), ("Content-Type", OCTET)],
                             content_length=100) + b"x")
        # Be sure the server has this request (and its lock) before abandoning it.
        deadline_poll(lambda: server.offset(up) == 1, 10, what="offset 1")
    # The abandoned request must not hold the upload: the next PATCH goes through.
    t0 = time.monotonic()
    r = server.patch(up, 1, b"x" * 99)
    assert r.status == 204, r
    assert time.monotonic() - t0 < 10
