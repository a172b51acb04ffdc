"""expiration: -expire-after, Upload-Expires, 410 before the sweep, 404 after it, the
sweeper deleting only unfinished uploads, activity refreshing the deadline, restarts.

Determinism: the sweeper skips an upload whose lock is held (try-acquire), so a test
that needs an expired upload to stay on disk holds its lock file with flock(2) itself
instead of racing the sweeper's timer."""
import email.utils
import fcntl
import os
import time

from conftest import assert_error, deadline_poll

EXPIRE = "2s"
EXPIRE_S = 2.0


def expires_at(resp):
    value = resp.header("Upload-Expires")
    assert value is not None, resp
    assert value.endswith(" GMT"), value
    return email.utils.parsedate_to_datetime(value).timestamp()


def lock_file_of(srv, up):
    return srv.data_file(up).with_name(srv.data_file(up).name + ".lock")


class HeldLock:
    """flock(2) on an upload's lock file, as a second tusc process would hold it."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def test_options_lists_expiration_only_when_enabled(tusc):
    off = tusc()
    on = tusc("-expire-after", EXPIRE)
    assert "expiration" not in off.request("OPTIONS", "/files/").header("Tus-Extension")
    assert "expiration" in on.request("OPTIONS", "/files/").header("Tus-Extension").split(",")


def test_no_upload_expires_without_flag(server):
    r = server.request("POST", "/files/", {"Upload-Length": "10"})
    assert r.status == 201 and not r.has("Upload-Expires"), r
    up = r.header("Location").split("//", 1)[1].split("/", 1)[1]
    assert not server.head("/" + up).has("Upload-Expires")


def test_upload_expires_on_post_patch_head(tusc):
    srv = tusc("-expire-after", "1h")
    t0 = time.time()
    r = srv.request("POST", "/files/", {"Upload-Length": "10"})
    assert r.status == 201, r
    assert abs(expires_at(r) - (t0 + 3600)) <= 3, r
    up = "/" + r.header("Location").split("//", 1)[1].split("/", 1)[1]
    r = srv.patch(up, 0, b"12345")
    assert r.status == 204 and abs(expires_at(r) - (time.time() + 3600)) <= 3, r
    h = srv.head(up)
    assert h.status == 200 and abs(expires_at(h) - (time.time() + 3600)) <= 3, h
    # creation-with-upload
    r = srv.request("POST", "/files/", {"Upload-Length": "10",
                                        "Content-Type": "application/offset+octet-stream"},
                    b"abc")
    assert r.status == 201 and r.header("Upload-Offset") == "3", r
    assert abs(expires_at(r) - (time.time() + 3600)) <= 3, r
    # A finished upload never expires: no header.
    r = srv.patch(up, 5, b"67890")
    assert r.status == 204 and not r.has("Upload-Expires"), r
    assert not srv.head(up).has("Upload-Expires")
    # So does an empty one (finished at creation).
    r = srv.request("POST", "/files/", {"Upload-Length": "0"})
    assert r.status == 201 and not r.has("Upload-Expires"), r


def head_if(srv, path, status):
    """The HEAD answer if it has `status`, else None (for deadline_poll)."""
    r = srv.head(path)
    return r if r.status == status else None


def test_expired_upload_410_then_swept_404(tusc):
    srv = tusc("-expire-after", EXPIRE)
    unfinished = srv.create(length=100)
    assert srv.patch(unfinished, 0, b"x" * 10).status == 204
    finished = srv.create(length=4)
    assert srv.patch(finished, 0, b"done").status == 204
    deferred = srv.create(headers={"Upload-Defer-Length": "1"})
    # Hold the unfinished upload's lock so the sweeper has to leave it alone.
    held = HeldLock(lock_file_of(srv, unfinished))
    try:
        # Expired EXPIRE_S after its last PATCH; polled, so a slow machine only waits longer.
        h = deadline_poll(lambda: head_if(srv, unfinished, 410), EXPIRE_S + 15,
                          what="unfinished upload expired (410)")
        assert not h.has("Upload-Offset"), h
        r = srv.patch(unfinished, 10, b"late")
        assert_error(r, 410, "ERR_UPLOAD_NOT_FOUND")
        assert srv.download(unfinished).status == 410
        r = srv.request("DELETE", unfinished)
        assert_error(r, 410, "ERR_UPLOAD_NOT_FOUND")
        assert srv.files_of(unfinished), "swept while its lock was held"
        # The deferred one had no lock held: the sweeper deletes it.
        deadline_poll(lambda: not srv.files_of(deferred), 15, what="deferred upload swept")
        assert srv.head(deferred).status == 404
    finally:
        held.release()
    deadline_poll(lambda: not srv.files_of(unfinished), 15, what="expired upload swept")
    assert srv.head(unfinished).status == 404
    assert_error(srv.patch(unfinished, 10, b"late"), 404, "ERR_UPLOAD_NOT_FOUND")
    # The finished upload is untouched, however old.
    h = srv.head(finished)
    assert h.status == 200 and h.header("Upload-Offset") == "4", h
    assert srv.download(finished).body == b"done"
    assert not any(p.name.endswith(".tmp") for p in srv.upload_dir.rglob("*"))


def test_activity_refreshes_deadline(tusc):
    # 4 s here, so that a slow request on a loaded machine cannot eat the margin.
    srv = tusc("-expire-after", "4s")
    up = srv.create(length=100)
    for i in range(6):
        time.sleep(1.0)
        r = srv.patch(up, i, b"a")
        assert r.status == 204, (i, r)
    # 6 s after creation, 1 s after the last byte: alive.
    h = srv.head(up)
    assert h.status == 200 and h.header("Upload-Offset") == "6", h
    assert expires_at(h) >= time.time() + 1.5
    deadline_poll(lambda: not srv.files_of(up), 20, what="idle upload swept")
    assert srv.head(up).status == 404


def test_expiry_survives_restart(tusc):
    """Uploads made before a restart (also by a server without -expire-after) are found
    by the start-up walk and swept; finished ones stay."""
    first = tusc()
    old = first.create(length=50)
    done = first.create(length=2)
    assert first.patch(done, 0, b"ok").status == 204
    assert first.stop() == 0
    time.sleep(EXPIRE_S + 0.3)
    srv = tusc("-expire-after", EXPIRE, upload_dir=first.upload_dir)
    deadline_poll(lambda: not srv.files_of(old), 15, what="old upload swept after restart")
    assert srv.head(old).status == 404
    assert srv.download(done).body == b"ok"
    young = srv.create(length=5)
    assert srv.head(young).status == 200


def test_busy_upload_is_not_swept_midway(tusc):
    """A PATCH whose body stalls past the deadline keeps the upload's lock, so the
    sweeper (try-acquire) leaves the files alone; when the body goes on, its bytes land
    and the upload completes intact."""
    srv = tusc("-expire-after", EXPIRE)
    up = srv.create(length=1000)
    c = srv.raw(timeout=30)
    try:
        c.send(("PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                "Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n"
                % up).encode())
        c.send(b"z" * 100)
        time.sleep(EXPIRE_S + 1.5)  # at least one sweep runs past the deadline
        assert srv.files_of(up)
        c.send(b"z" * 900)
        r, _ = c.read_final_response("PATCH")
        assert r.status == 204, r
    finally:
        c.close()
    h = srv.head(up)
    assert h.status == 200 and h.header("Upload-Offset") == "1000", h
    assert srv.download(up).body == b"z" * 1000
