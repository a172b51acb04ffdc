"""20,000 uploads must not leave any directory with more than 1,000 entries (the
seed's flat-directory failure). Created over keep-alive connections with pipelined
POSTs so the test stays fast under ASan."""
import os
import threading
import urllib.parse

from conftest import build_request

TOTAL = 20_000
THREADS = 4
BATCH = 50  # POSTs per pipelined send
MAX_ENTRIES = 1_000


def create_many(srv, count, out, errors):
    req = build_request("POST", "/files/", [("Tus-Resumable", "1.0.0"), ("Upload-Length", "0")])
    c = None
    try:
        while len(out) < count:
            if c is None:
                c = srv.raw(timeout=60)
            n = min(BATCH, count - len(out))
            c.send(req * n)
            for _ in range(n):
                r = c.read_response("POST")
                if r.status != 201:
                    errors.append(repr(r))
                    return
                out.append(urllib.parse.urlsplit(r.header("Location")).path)
                if (r.header("Connection") or "").lower() == "close":
                    # The server may cap requests per connection: the rest of the
                    # batch was not processed; reconnect and carry on.
                    c.close()
                    c = None
                    break
    except Exception as e:  # noqa: BLE001 — reported by the main thread
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        if c is not None:
            c.close()


def test_20000_uploads_no_big_directory(tusc):
    srv = tusc("-fsync=never")
    results = [[] for _ in range(THREADS)]
    errors = []
    threads = [threading.Thread(target=create_many,
                                args=(srv, TOTAL // THREADS, results[i], errors))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "creating uploads hung"
    assert not errors, errors[:5]
    paths = [p for r in results for p in r]
    assert len(paths) == TOTAL
    assert len(set(paths)) == TOTAL, "duplicate upload IDs"

    biggest = (0, None)
    total_files = 0
    for dirpath, dirs, files in os.walk(srv.upload_dir):
        n = len(dirs) + len(files)
        total_files += len(files)
        if n > biggest[0]:
            biggest = (n, dirpath)
        assert n <= MAX_ENTRIES, f"{dirpath} has {n} entries"
    # Each upload has its files somewhere under the dir (data and/or .info).
    assert total_files >= TOTAL, total_files
    # Spot-check that uploads are still reachable after all that.
    for p in paths[:: TOTAL // 20]:
        h = srv.head(p)
        assert h.status == 200 and h.header("Upload-Length") == "0", h
