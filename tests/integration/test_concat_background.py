"""Finals of a concatenation that complete in the background (concatenation-unfinished):
their finish hooks, the FinishHooks state that lets a failed pre-finish run again, the
UploadFinished log line and the tusd_uploads_finished counter exactly once; and a final
whose partial was deleted answers 410 instead of staying incomplete for ever."""
import json
import re
import time

from conftest import assert_error, b64, deadline_poll, upload_id
from test_concat import create_final, final_path, partial, wait_complete
from test_hooks import hooklog, hooks_server  # noqa: F401 (fixture)

HOOK_WAIT = 20.0
NAME = "filename " + b64("x.bin")  # the pre-create hook of hooks_scripts wants one


def events_for(hooklog, event, uid):
    return [e for e in hooklog.entries(event) if e["stdin"]["Event"]["Upload"]["ID"] == uid]


def wait_event(hooklog, event, uid, n=1):
    return deadline_poll(lambda: len(events_for(hooklog, event, uid)) >= n
                         and events_for(hooklog, event, uid), HOOK_WAIT,
                         what=f"{n} {event} for {uid}")


def finish_state(srv, path):
    info = srv.data_file(path).with_name(upload_id(path) + ".info")
    return json.loads(info.read_text()).get("tusc", {}).get("FinishHooks")


def counter(srv, name):
    r = srv.request("GET", "/metrics", tus=False)
    assert r.status == 200, r
    m = re.search(rf"^{name} (\d+)$", r.text, re.M)
    assert m, r.text
    return int(m.group(1))


def finished_lines(srv, uid):
    return [l for l in srv.stderr().splitlines()
            if "event=UploadFinished" in l and f"id={uid}" in l]


def unfinished_final(srv):
    """A final over a finished partial and one still empty; returns (final, pending)."""
    pa = partial(srv, b"abc", metadata=NAME)
    pb = srv.create(metadata=NAME, headers={"Upload-Concat": "partial", "Upload-Length": "3"})
    fpath = final_path(create_final(srv, [pa, pb], {"Upload-Metadata": NAME}))
    assert srv.head(fpath).header("Upload-Offset") == "0"
    return fpath, pb


def test_background_final_runs_finish_hooks_once(tusc, hooklog):
    srv = hooks_server(tusc)
    fpath, pb = unfinished_final(srv)
    fid = upload_id(fpath)
    assert finish_state(srv, fpath) == "pending"
    r = srv.patch(pb, 0, b"def", headers={"X-Trigger": "last-partial"})
    assert r.status == 204, r
    wait_complete(srv, fpath, 6)

    (pre,) = wait_event(hooklog, "pre-finish", fid)
    (post,) = wait_event(hooklog, "post-finish", fid)
    for e in (pre, post):
        up = e["stdin"]["Event"]["Upload"]
        assert up["IsFinal"] is True and up["Offset"] == 6 and up["Size"] == 6, up
        req = e["stdin"]["Event"]["HTTPRequest"]
        # The request that completed the last partial, as tusd would have at hand.
        assert req["Method"] == "PATCH" and req["URI"] == pb, req
        assert req["Header"].get("X-Trigger") == ["last-partial"], req
        assert req["RemoteAddr"].startswith("127.0.0.1:"), req
    assert post["t"] >= pre["t"]
    deadline_poll(lambda: finish_state(srv, fpath) == "done", HOOK_WAIT, what="FinishHooks done")

    # Exactly once, also when HEAD and GET look at the final afterwards.
    assert srv.download(fpath).body == b"abcdef"
    assert srv.head(fpath).status == 200
    time.sleep(0.5)
    assert len(events_for(hooklog, "pre-finish", fid)) == 1
    assert len(events_for(hooklog, "post-finish", fid)) == 1
    assert len(finished_lines(srv, fid)) == 1, srv.stderr()
    assert counter(srv, "tusd_uploads_finished") == 3  # two partials and the final


def test_background_final_hooks_see_patch_when_get_assembles(tusc, hooklog):
    """A GET right after the completing PATCH's answer may assemble the final before the
    PATCH's background job does; the hooks still see that PATCH, and run once."""
    srv = hooks_server(tusc)
    fpath, pb = unfinished_final(srv)
    fid = upload_id(fpath)
    r = srv.patch(pb, 0, b"def", headers={"X-Trigger": "last-partial"})
    assert r.status == 204, r
    assert srv.download(fpath).body == b"abcdef"
    (pre,) = wait_event(hooklog, "pre-finish", fid)
    (post,) = wait_event(hooklog, "post-finish", fid)
    for e in (pre, post):
        req = e["stdin"]["Event"]["HTTPRequest"]
        assert req["Method"] == "PATCH" and req["URI"] == pb, req
        assert req["Header"].get("X-Trigger") == ["last-partial"], req
    deadline_poll(lambda: finish_state(srv, fpath) == "done", HOOK_WAIT, what="FinishHooks done")
    assert len(events_for(hooklog, "pre-finish", fid)) == 1
    assert len(finished_lines(srv, fid)) == 1, srv.stderr()


def test_background_final_failed_pre_finish_runs_again(tusc, hooklog):
    srv = hooks_server(tusc)
    fpath, pb = unfinished_final(srv)
    fid = upload_id(fpath)
    fail = hooklog.path / "fail-pre-finish"
    fail.write_text("1")
    # The partial's own pre-finish fails too (500), but its bytes are complete.
    assert_error(srv.patch(pb, 0, b"def"), 500, "ERR_INTERNAL_SERVER_ERROR")
    wait_complete(srv, fpath, 6)
    wait_event(hooklog, "pre-finish", fid)
    time.sleep(0.5)
    assert events_for(hooklog, "post-finish", fid) == []
    assert finish_state(srv, fpath) == "pending"

    # Like any upload whose pre-finish failed: an empty PATCH at its length retries.
    r = srv.patch(fpath, 6, b"")
    assert_error(r, 500, "ERR_INTERNAL_SERVER_ERROR")
    assert finish_state(srv, fpath) == "pending"
    fail.unlink()
    r = srv.patch(fpath, 6, b"")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "6"
    wait_event(hooklog, "pre-finish", fid, 3)
    (post,) = wait_event(hooklog, "post-finish", fid)
    assert post["stdin"]["Event"]["HTTPRequest"]["Method"] == "PATCH"
    assert finish_state(srv, fpath) == "done"
    # Done now: the final is back to refusing PATCH, and nothing runs twice.
    assert_error(srv.patch(fpath, 6, b""), 403, "ERR_MODIFY_FINAL")
    assert len(finished_lines(srv, fid)) == 1
    assert counter(srv, "tusd_uploads_finished") == 3


def test_final_complete_at_creation_counted_once(tusc, hooklog):
    """The creating request reports a final it assembled; nothing else does."""
    srv = hooks_server(tusc)
    pa = partial(srv, b"ab", metadata=NAME)
    pb = partial(srv, b"cd", metadata=NAME)
    fpath = final_path(create_final(srv, [pa, pb], {"Upload-Metadata": NAME}))
    fid = upload_id(fpath)
    wait_event(hooklog, "post-finish", fid)
    assert srv.download(fpath).body == b"abcd"
    time.sleep(0.5)
    assert len(events_for(hooklog, "pre-finish", fid)) == 1
    assert len(events_for(hooklog, "post-finish", fid)) == 1
    assert len(finished_lines(srv, fid)) == 1
    assert counter(srv, "tusd_uploads_finished") == 3


def test_background_final_without_hooks_counted_once(server):
    fpath, pb = unfinished_final(server)
    assert server.patch(pb, 0, b"def").status == 204
    wait_complete(server, fpath, 6)
    assert server.download(fpath).body == b"abcdef"
    deadline_poll(lambda: len(finished_lines(server, upload_id(fpath))) == 1, HOOK_WAIT,
                  what="UploadFinished of the final")
    time.sleep(0.3)
    assert len(finished_lines(server, upload_id(fpath))) == 1
    assert counter(server, "tusd_uploads_finished") == 3


# --- a partial deleted before its final was assembled ---------------------------------


def test_final_with_deleted_partial_is_gone(server):
    fpath, pb = unfinished_final(server)
    assert server.request("DELETE", pb).status == 204
    h = server.head(fpath)
    assert h.status == 410, h
    assert not h.has("Upload-Offset"), h
    assert_error(server.download(fpath), 410, "ERR_PARTIAL_UPLOAD_GONE")
    assert_error(server.patch(fpath, 0, b"x"), 403, "ERR_MODIFY_FINAL")
    # The broken final can still be deleted, and is then simply not found.
    assert server.request("DELETE", fpath).status == 204
    assert server.head(fpath).status == 404


def test_deleting_partial_of_assembled_final_keeps_final(server):
    pa = partial(server, b"ab")
    pb = partial(server, b"cd")
    fpath = final_path(create_final(server, [pa, pb]))
    assert server.request("DELETE", pa).status == 204
    h = server.head(fpath)
    assert h.status == 200 and h.header("Upload-Offset") == "4", h
    assert server.download(fpath).body == b"abcd"
