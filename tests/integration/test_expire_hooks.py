"""What the expiration sweeper tells the outside about an upload it deletes: a
post-terminate hook (non-blocking, empty HTTPRequest: no client asked for it) and the
tusc_uploads_expired_total counter; tusd_uploads_terminated stays for DELETE/StopUpload."""
import re

from conftest import b64, deadline_poll, upload_id
from test_hooks import hooklog, hooks_server  # noqa: F401 (fixture)

NAME = "filename " + b64("x.bin")  # the pre-create hook of hooks_scripts wants one


def metric(srv, name):
    r = srv.request("GET", "/metrics", tus=False)
    assert r.status == 200, r
    m = re.search(rf"^{name} (\d+)$", r.text, re.M)
    assert m, r.text
    return int(m.group(1))


def test_expired_upload_fires_post_terminate_and_is_counted(tusc, hooklog):
    srv = hooks_server(tusc, "-expire-after", "1s")
    up = srv.create(length=100, metadata=NAME)
    assert srv.patch(up, 0, b"x" * 10).status == 204
    done = srv.create(length=2, metadata=NAME)
    assert srv.patch(done, 0, b"ok").status == 204
    uid = upload_id(up)

    def post_terminate():
        return [e for e in hooklog.entries("post-terminate")
                if e["stdin"]["Event"]["Upload"]["ID"] == uid]
    (e,) = deadline_poll(post_terminate, 20, what="post-terminate of the expired upload")
    ev = e["stdin"]["Event"]
    assert ev["Upload"]["Offset"] == 10 and ev["Upload"]["Size"] == 100, ev
    assert ev["Upload"]["MetaData"] == {"filename": "x.bin"}, ev
    req = ev["HTTPRequest"]
    assert req["Method"] == "" and req["URI"] == "" and req["RemoteAddr"] == "", req
    assert not req["Header"], req
    assert not srv.files_of(up)
    assert "event=UploadExpired" in srv.stderr()
    assert metric(srv, "tusc_uploads_expired_total") == 1
    assert metric(srv, "tusd_uploads_terminated") == 0
    # Only the expired one: the finished upload stays, no other post-terminate.
    assert len(hooklog.entries("post-terminate")) == 1
    assert srv.download(done).body == b"ok"


def test_expired_counted_without_hooks(tusc):
    srv = tusc("-expire-after", "1s")
    up = srv.create(length=5)
    deadline_poll(lambda: not srv.files_of(up), 20, what="expired upload swept")
    deadline_poll(lambda: metric(srv, "tusc_uploads_expired_total") == 1, 5,
                  what="tusc_uploads_expired_total == 1")
    assert metric(srv, "tusd_uploads_terminated") == 0
