"""Concatenation under lock contention and size limits (issue 10 items 2 and 3).

A final's assembly needs the lock of every partial. Waiting for one must never occupy a
thread-pool thread: libuv's pool is shared by every client's fsync, create and password
check, so a few finals naming a partial held by a stalled client would stall everybody.
Also: -max-size holds for finals whose partials' lengths were deferred."""
import concurrent.futures
import time

from conftest import OCTET, assert_error, deadline_poll, upload_id
from test_concat import create_final, final_path, partial, wait_complete

POOL = 4            # libuv's thread pool, pinned (UV_THREADPOOL_SIZE) for the test
FINALS = POOL + 2   # more finals than pool threads
LOCK_TIMEOUT = "60s"  # how long the finals may wait for the held partial
PROMPT = 10.0       # far below LOCK_TIMEOUT: what an unrelated client may take at most


def stall_patch(srv, path, offset):
    """A chunked PATCH whose body never comes (only half a chunk-size line): the server
    holds the upload's lock while it waits. Returns the open connection."""
    c = srv.raw(timeout=PROMPT)
    c.send(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           f"Upload-Offset: {offset}\r\nContent-Type: {OCTET}\r\n"
           f"Transfer-Encoding: chunked\r\n\r\n5".encode())
    uid = upload_id(path)
    deadline_poll(lambda: any("event=ChunkWriteStart" in l and f"id={uid}" in l
                              for l in srv.stderr().splitlines()),
                  PROMPT, what="the stalled PATCH to hold the lock")
    return c


def unrelated_client(srv):
    """Create, PATCH (fsync on the pool by default) and HEAD an upload; each request
    must be answered within PROMPT seconds."""
    t0 = time.monotonic()
    r = srv.request("POST", "/files/", {"Upload-Length": "3"}, timeout=PROMPT)
    assert r.status == 201, r
    path = final_path(r)
    r = srv.request("PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, b"abc",
                    timeout=PROMPT)
    assert r.status == 204, r
    r = srv.request("HEAD", path, timeout=PROMPT)
    assert r.status == 200 and r.header("Upload-Offset") == "3", r
    return time.monotonic() - t0


def post_finals(srv, pool, urls):
    hs = {"Tus-Resumable": "1.0.0", "Upload-Concat": "final;" + " ".join(urls)}
    return [pool.submit(srv.request, "POST", "/files/", hs, None, True, 90)
            for _ in range(FINALS)]


def test_finals_waiting_for_a_held_partial_leave_the_pool_free(tusc, monkeypatch):
    """The partial's lock is held by another tusc process on the same directory (a
    holder that cannot be asked to let go): the finals wait, on the event loop, while
    an unrelated client's POST, PATCH and HEAD go through at once. Once the holder lets
    go, every final assembles."""
    monkeypatch.setenv("UV_THREADPOOL_SIZE", str(POOL))
    a = tusc("-acquire-lock-timeout", LOCK_TIMEOUT)
    b = tusc("-acquire-lock-timeout", LOCK_TIMEOUT, upload_dir=a.upload_dir)
    head = partial(a, b"head-")
    tail = partial(a, b"tail")
    stalled = stall_patch(b, tail, 4)
    with concurrent.futures.ThreadPoolExecutor(2 * FINALS) as pool:
        finals = post_finals(a, pool, [head, tail])
        # Each final is created and noted, then waits for the lock of `tail`.
        partials = {upload_id(head), upload_id(tail)}
        created = deadline_poll(
            lambda: len(ids := [p.name[:-5] for p in a.upload_dir.rglob("*.info")
                                if p.name[:-5] not in partials]) == FINALS and ids,
            PROMPT, what="the finals to be created")
        # HEAD of a waiting final answers at once; GET waits for its assembly (a job
        # on the loop too), never half a concatenation.
        gets = []
        for fid in created:
            r = a.request("HEAD", "/files/" + fid, timeout=PROMPT)
            assert r.status == 200 and r.header("Upload-Offset") == "0", r
            gets.append(pool.submit(a.request, "GET", "/files/" + fid, None, None, False, 90))
        assert unrelated_client(a) < PROMPT
        assert not any(f.done() for f in finals + gets), "answered while the partial was held"
        stalled.close()  # b sees its client gone and lets go
        for f in finals:
            r = f.result(timeout=PROMPT + 30)
            assert r.status == 201, r
            assert a.download(final_path(r)).body == b"head-tail"
        for f in gets:
            r = f.result(timeout=PROMPT + 30)
            assert r.status == 200 and r.body == b"head-tail", r


def test_stalled_patch_on_a_partial_is_asked_to_let_go(tusc, monkeypatch):
    """The holder is a PATCH of this process, stalled on a partial that is complete
    anyway: the finals ask it to let go (as a PATCH does) instead of waiting for it."""
    monkeypatch.setenv("UV_THREADPOOL_SIZE", str(POOL))
    srv = tusc("-acquire-lock-timeout", LOCK_TIMEOUT)
    head = partial(srv, b"head-")
    tail = partial(srv, b"tail")
    stalled = stall_patch(srv, tail, 4)
    with stalled, concurrent.futures.ThreadPoolExecutor(FINALS) as pool:
        finals = post_finals(srv, pool, [head, tail])
        for f in finals:
            r = f.result(timeout=PROMPT)
            assert r.status == 201, r
            assert srv.head(final_path(r)).header("Upload-Offset") == "9"
            assert srv.download(final_path(r)).body == b"head-tail"
        r, _ = stalled.read_final_response("PATCH")
        assert r.status >= 400, r  # interrupted; the partial is unchanged
    assert srv.download(tail).body == b"tail"
    assert unrelated_client(srv) < PROMPT


def test_final_over_max_size_through_deferred_partials(tusc):
    """Partials of deferred length: the final's length is only known later. Once it is
    and it exceeds -max-size, the final is refused (413) and never assembled; the
    partials themselves stay valid."""
    srv = tusc("-max-size", "1024")
    p1 = partial(srv, b"", defer=True)
    p2 = partial(srv, b"", defer=True)
    fpath = final_path(create_final(srv, [p1, p2]))
    assert srv.head(fpath).status == 200  # length unknown: nothing to refuse yet
    for p in (p1, p2):
        r = srv.patch(p, 0, b"x" * 600, {"Upload-Length": "600"})
        assert r.status == 204, r
        assert srv.head(p).header("Upload-Offset") == "600"
    r = srv.head(fpath)
    assert r.status == 413, r
    assert_error(srv.download(fpath), 413, "ERR_MAX_SIZE_EXCEEDED")
    # Never assembled: its data file stays empty, also after the background job ran.
    assert "event=UploadFinished id=" + upload_id(fpath) not in srv.stderr()
    assert srv.data_file(fpath).stat().st_size == 0
    # The partials may still make a final within the limit.
    small = final_path(create_final(srv, [p1]))
    wait_complete(srv, small, 600)
    assert srv.download(small).body == b"x" * 600


def test_final_refused_as_soon_as_deferred_lengths_add_up_too_big(tusc):
    srv = tusc("-max-size", "1024")
    p1 = partial(srv, b"", defer=True)
    p2 = partial(srv, b"", defer=True)
    fpath = final_path(create_final(srv, [p1, p2]))
    for p in (p1, p2):
        assert srv.patch(p, 0, b"", {"Upload-Length": "1000"}).status == 204
    # Both lengths known, no byte uploaded yet: the final can already never be made.
    assert srv.head(fpath).status == 413
    assert_error(srv.download(fpath), 413, "ERR_MAX_SIZE_EXCEEDED")
