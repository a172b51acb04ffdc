"""File hooks (-hooks-dir) against real sh and /usr/bin/python3 scripts.

The scripts in hooks_scripts/ record the JSON they received (and TUS_* environment,
cwd) into $HOOK_LOG, which tusc passes on to its hooks; tests then check it field by
field against tusd's v2 schema, and check what the scripts' answers did to the client's
responses and to the stored uploads.
"""
import json
import os
import re
import select
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from conftest import OCTET, b64, deadline_poll, upload_id

HOOKS_DIR = Path(__file__).resolve().parent / "hooks_scripts"

UPLOAD_KEYS = ["ID", "Size", "SizeIsDeferred", "Offset", "MetaData", "IsPartial", "IsFinal",
               "PartialUploads", "Storage"]
HTTP_KEYS = ["Method", "URI", "RemoteAddr", "Header"]
CANONICAL = re.compile(r"^[A-Z0-9][a-z0-9]*(-[A-Z0-9][a-z0-9]*)*$")


class HookLog:
    def __init__(self, path):
        self.path = path

    def entries(self, event=None):
        out = []
        for p in sorted(self.path.glob("*.json")):
            ns, ev = p.stem.split("-", 1)
            if event is None or ev == event:
                e = json.loads(p.read_text())
                e["event"] = ev
                out.append(e)
        return out

    def wait(self, event, n=1, timeout=15.0):
        return deadline_poll(lambda: len(self.entries(event)) >= n and self.entries(event),
                             timeout, what=f"{n} {event} hook(s)")


@pytest.fixture
def hooklog(tmp_path, monkeypatch):
    d = tmp_path / "hooklog"
    d.mkdir()
    monkeypatch.setenv("HOOK_LOG", str(d))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    return HookLog(d)


def hooks_server(tusc, *flags, hooks_dir=HOOKS_DIR, upload_dir=None):
    return tusc("-hooks-dir", str(hooks_dir), "-hooks-enabled-events=", *flags,
                upload_dir=upload_dir)


def check_schema(entry, event, method, uri):
    """The request JSON is tusd's, key order included (Go writes struct fields in
    declaration order)."""
    raw = entry["raw"]
    top = json.loads(raw, object_pairs_hook=lambda pairs: pairs)
    assert [k for k, _ in top] == ["Type", "Event"]
    ev = dict(top)["Event"]
    assert [k for k, _ in ev] == ["Upload", "HTTPRequest"]
    upload = dict(dict(ev)["Upload"])
    assert [k for k, _ in dict(ev)["Upload"]] == UPLOAD_KEYS
    assert [k for k, _ in dict(ev)["HTTPRequest"]] == HTTP_KEYS
    assert "\n" not in raw and ": " not in raw.split('"MetaData"')[0]  # compact

    data = entry["stdin"]
    assert data["Type"] == event
    up = data["Event"]["Upload"]
    assert isinstance(up["ID"], str)
    assert isinstance(up["Size"], int) and isinstance(up["Offset"], int)
    assert isinstance(up["SizeIsDeferred"], bool)
    assert isinstance(up["IsPartial"], bool) and isinstance(up["IsFinal"], bool)
    assert isinstance(up["MetaData"], dict)
    assert all(isinstance(v, str) for v in up["MetaData"].values())
    assert up["PartialUploads"] is None
    if event == "pre-create":
        assert up["ID"] == "" and up["Storage"] is None
    else:
        assert up["ID"] != ""
        st = up["Storage"]
        assert list(st.keys()) == ["InfoPath", "Path", "Type"]  # a Go map: sorted keys
        assert st["Type"] == "filestore"
        assert os.path.isabs(st["Path"]) and st["InfoPath"] == st["Path"] + ".info"
        assert os.path.basename(st["Path"]) == up["ID"].rsplit("/", 1)[-1]
    del upload

    req = data["Event"]["HTTPRequest"]
    assert req["Method"] == method
    assert req["URI"] == uri
    assert re.fullmatch(r"127\.0\.0\.1:\d+", req["RemoteAddr"]), req["RemoteAddr"]
    hdr = req["Header"]
    assert all(CANONICAL.match(k) for k in hdr), list(hdr)
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in hdr.values())
    assert "Host" in hdr and hdr["Tus-Resumable"] == ["1.0.0"]
    assert list(hdr.keys()) == sorted(hdr.keys())
    # The environment tusd sets for file hooks, and the hooks dir as cwd.
    assert entry["env"]["TUS_ID"] == up["ID"]
    assert entry["env"]["TUS_SIZE"] == str(up["Size"])
    assert entry["env"]["TUS_OFFSET"] == str(up["Offset"])
    assert entry["argv"] == []
    return data


def test_pre_create_rejects_upload_without_filename(tusc, hooklog):
    srv = hooks_server(tusc)
    r = srv.request("POST", "/files/", {"Upload-Length": "5", "X-Custom": "abc"})
    assert r.status == 403, r
    assert r.body == b'{"message":"no filename provided"}'
    assert r.header("Content-Type") == "application/json"
    assert r.header("Tus-Resumable") == "1.0.0"
    assert not list(srv.upload_dir.rglob("*.info"))
    (entry,) = hooklog.wait("pre-create")
    data = check_schema(entry, "pre-create", "POST", "/files/")
    up = data["Event"]["Upload"]
    assert up["Size"] == 5 and up["Offset"] == 0 and up["MetaData"] == {}
    assert data["Event"]["HTTPRequest"]["Header"]["X-Custom"] == ["abc"]
    assert data["Event"]["HTTPRequest"]["Header"]["Upload-Length"] == ["5"]
    assert entry["cwd"] == str(HOOKS_DIR)
    # Rejected: nothing was created, so no post-create.
    time.sleep(0.3)
    assert hooklog.entries("post-create") == []


def test_remote_addr_is_peer_behind_trusted_proxy(tusc, hooklog):
    """RemoteAddr is the TCP peer with its port, as tusd sends it; the client the trusted
    proxy named comes in TuscClientAddr, and only then."""
    srv = hooks_server(tusc, "-behind-proxy", "-trusted-proxies", "127.0.0.1/32,10.0.0.0/8")
    r = srv.request("POST", "/files/", {"Upload-Length": "5",
                                        "X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
    assert r.status == 403, r
    (entry,) = hooklog.wait("pre-create")
    ev = entry["stdin"]["Event"]
    m = re.fullmatch(r"127\.0\.0\.1:(\d+)", ev["HTTPRequest"]["RemoteAddr"])
    assert m and int(m.group(1)) != 0, ev["HTTPRequest"]
    assert ev["TuscClientAddr"] == "203.0.113.7", ev
    r = srv.request("POST", "/files/", {"Upload-Length": "5"})
    assert r.status == 403, r
    entries = hooklog.wait("pre-create", 2)
    assert sum("TuscClientAddr" in e["stdin"]["Event"] for e in entries) == 1, entries


@pytest.mark.parametrize("headers", [
    # The client wrote the first entries; each trusted proxy appended what it saw.
    {"X-Forwarded-For": "198.51.100.66, 203.0.113.7, 10.0.0.1"},
    {"X-Forwarded-For": "198.51.100.66, 203.0.113.7", "Forwarded": "for=198.51.100.67"},
    {"Forwarded": 'for=198.51.100.66, for=203.0.113.7;proto=https, for="10.0.0.1"'},
])
def test_client_addr_is_rightmost_untrusted(tusc, hooklog, headers):
    """The left-most X-Forwarded-For / Forwarded for= entry is whatever the client wrote;
    the client is the right-most address that is not a trusted proxy, in the access
    log's remote= and in the hooks' TuscClientAddr."""
    srv = hooks_server(tusc, "-trusted-proxies", "127.0.0.1/32,10.0.0.0/8")
    r = srv.request("POST", "/files/", {"Upload-Length": "5", **headers})
    assert r.status == 403, r  # the pre-create script refuses this upload
    (entry,) = hooklog.wait("pre-create")
    assert entry["stdin"]["Event"]["TuscClientAddr"] == "203.0.113.7", entry["stdin"]["Event"]
    line = deadline_poll(lambda: [l for l in srv.stderr().splitlines()
                                  if "event=ResponseOutgoing" in l], 10, what="access line")[0]
    assert re.search(r"\bremote=203\.0\.113\.7\b", line), line
    assert "198.51.100.66" not in srv.stderr()


def test_pre_create_changes_id_and_metadata(tusc, hooklog):
    srv = hooks_server(tusc)
    md = f"filename {b64('report.pdf')},project {b64('7')},extra {b64('dropped')}"
    r = srv.request("POST", "/files/?src=test", {"Upload-Length": "11", "Upload-Metadata": md})
    assert r.status == 201, r
    assert r.header("X-Project") == "7"
    path = re.sub(r"^https?://[^/]+", "", r.header("Location"))
    assert re.fullmatch(r"/files/project-7/[0-9a-f]{32}", path), path
    uid = path[len("/files/"):]

    h = srv.head(path)
    assert h.status == 200
    pairs = dict(p.split(" ") for p in h.header("Upload-Metadata").split(","))
    assert pairs == {"filename": b64("report.pdf"), "project": b64("7"), "checked": b64("yes")}

    (pre,) = hooklog.wait("pre-create")
    data = check_schema(pre, "pre-create", "POST", "/files/?src=test")
    assert data["Event"]["Upload"]["MetaData"] == {"filename": "report.pdf", "project": "7",
                                                   "extra": "dropped"}
    (post,) = hooklog.wait("post-create")
    data = check_schema(post, "post-create", "POST", "/files/?src=test")
    up = data["Event"]["Upload"]
    assert up["ID"] == uid and up["Size"] == 11 and up["Offset"] == 0
    assert up["MetaData"] == {"filename": "report.pdf", "project": "7", "checked": "yes"}
    assert Path(up["Storage"]["Path"]).exists()
    assert Path(up["Storage"]["Path"]).resolve().is_relative_to(srv.upload_dir.resolve())

    r = srv.patch(path, 0, b"hello world")
    assert r.status == 204, r
    assert srv.download(path).body == b"hello world"


def test_lifecycle_json_and_post_finish_moves_file(tusc, hooklog, tmp_path, monkeypatch):
    moved = tmp_path / "finished"
    monkeypatch.setenv("HOOK_MOVE_TO", str(moved))
    srv = hooks_server(tusc)
    path = srv.create(10, metadata=f"filename {b64('a.txt')}")
    uid = upload_id(path)
    r = srv.patch(path, 0, b"01234")
    assert r.status == 204
    r = srv.patch(path, 5, b"56789")
    assert r.status == 204, r
    # pre-finish answered with a header: merged into the final 204 only.
    assert r.header("X-Pre-Finish") == "ok"

    (fin,) = hooklog.wait("post-finish")
    data = check_schema(fin, "post-finish", "PATCH", path)
    up = data["Event"]["Upload"]
    assert up["Offset"] == 10 and up["Size"] == 10 and up["ID"] == uid
    data_path = up["Storage"]["Path"]
    deadline_poll(lambda: (moved / f"{uid}.bin").exists(), 15, what="post-finish moved the file")
    assert (moved / f"{uid}.bin").read_bytes() == b"0123456789"
    assert not Path(data_path).exists()

    (pre,) = hooklog.entries("pre-finish")
    data = check_schema(pre, "pre-finish", "PATCH", path)
    assert data["Event"]["Upload"]["Offset"] == 10
    assert pre["t"] <= fin["t"]
    # One post-receive per PATCH here (each ends before the 1 s interval).
    recv = hooklog.wait("post-receive", 2)
    assert sorted(e["stdin"]["Event"]["Upload"]["Offset"] for e in recv) == [5, 10]
    for e in recv:
        check_schema(e, "post-receive", "PATCH", path)
    info = json.loads(Path(up["Storage"]["InfoPath"]).read_text())
    assert info["tusc"]["FinishHooks"] == "done"


def test_terminate_hooks_and_reject_termination(tusc, hooklog):
    srv = hooks_server(tusc)
    keep = srv.create(3, metadata=f"filename {b64('k')},keep {b64('yes')}")
    r = srv.request("DELETE", keep)
    assert r.status == 409, r
    assert r.body == b"this upload is kept\n"
    assert srv.head(keep).status == 200

    gone = srv.create(3, metadata=f"filename {b64('g')}")
    assert srv.patch(gone, 0, b"ab").status == 204
    r = srv.request("DELETE", gone)
    assert r.status == 204, r
    assert srv.head(gone).status == 404
    pre = hooklog.wait("pre-terminate", 2)
    (post,) = hooklog.wait("post-terminate")
    data = check_schema(post, "post-terminate", "DELETE", gone)
    # The info as it was before the upload was deleted.
    assert data["Event"]["Upload"]["ID"] == upload_id(gone)
    assert data["Event"]["Upload"]["Offset"] == 2
    assert data["Event"]["Upload"]["MetaData"] == {"filename": "g"}
    for e in pre:
        check_schema(e, "pre-terminate", "DELETE", e["stdin"]["Event"]["HTTPRequest"]["URI"])


def test_finish_hooks_rerun_after_pre_finish_failure(tusc, hooklog):
    """tusd bug #496: a failed pre-finish must not leave an upload whose finish hooks
    can never run. The next PATCH at offset == size runs them again."""
    srv = hooks_server(tusc)
    path = srv.create(4, metadata=f"filename {b64('x')}")
    fail = hooklog.path / "fail-pre-finish"
    fail.write_text("1")
    r = srv.patch(path, 0, b"abcd")
    assert r.status == 500, r
    assert r.error_code() == "ERR_INTERNAL_SERVER_ERROR"
    assert srv.offset(path) == 4  # the bytes are kept
    time.sleep(0.3)
    assert hooklog.entries("post-finish") == []
    infos = list(srv.upload_dir.rglob(upload_id(path) + ".info"))
    assert json.loads(infos[0].read_text())["tusc"]["FinishHooks"] == "pending"

    # Still failing: still 500, still pending.
    assert srv.patch(path, 4, b"").status == 500
    fail.unlink()
    r = srv.patch(path, 4, b"")
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "4"
    (fin,) = hooklog.wait("post-finish")
    assert fin["stdin"]["Event"]["Upload"]["Offset"] == 4
    assert json.loads(infos[0].read_text())["tusc"]["FinishHooks"] == "done"
    assert len(hooklog.entries("pre-finish")) == 3
    # Done: another PATCH at the end runs nothing more.
    assert srv.patch(path, 4, b"").status == 204
    time.sleep(0.3)
    assert len(hooklog.entries("pre-finish")) == 3
    assert len(hooklog.entries("post-finish")) == 1


def test_empty_upload_runs_finish_hooks(tusc, hooklog):
    srv = hooks_server(tusc)
    path = srv.create(0, metadata=f"filename {b64('empty')}")
    (fin,) = hooklog.wait("post-finish")
    assert fin["stdin"]["Event"]["Upload"]["Size"] == 0
    assert fin["stdin"]["Event"]["Upload"]["ID"] == upload_id(path)
    assert len(hooklog.entries("pre-finish")) == 1


# --- misbehaving hooks ----------------------------------------------------------------


def make_hooks(tmp_path, scripts, mode=0o755):
    d = tmp_path / "badhooks"
    d.mkdir(exist_ok=True)
    for name, text in scripts.items():
        p = d / name
        p.write_text(text)
        p.chmod(mode)
    return d


@pytest.mark.parametrize("script,why", [
    ("#!/bin/sh\necho '{\"RejectUpload\": tru'\n", "invalid JSON"),
    ("#!/bin/sh\necho '{}'\nexit 1\n", "exit 1"),
    ("#!/bin/sh\necho '{\"RejectUpload\": \"yes\"}'\n", "wrong type"),
    ("#!/bin/sh\necho '{\"ChangeFileInfo\": {\"ID\": \"../escape\"}}'\n", "bad ID"),
])
def test_failing_pre_create_answers_500(tusc, tmp_path, script, why):
    d = make_hooks(tmp_path, {"pre-create": script})
    srv = hooks_server(tusc, hooks_dir=d)
    r = srv.request("POST", "/files/", {"Upload-Length": "5"})
    assert r.status == 500, (why, r)
    assert r.error_code() == "ERR_INTERNAL_SERVER_ERROR"
    assert not list(srv.upload_dir.rglob("*.info"))
    # The server is fine afterwards.
    assert srv.request("OPTIONS", "/files/").status == 200


def test_non_executable_hook_is_an_error_naming_the_file(tusc, tmp_path):
    d = make_hooks(tmp_path, {"pre-create": "#!/bin/sh\necho '{}'\n"}, mode=0o644)
    srv = hooks_server(tusc, hooks_dir=d)
    r = srv.request("POST", "/files/", {"Upload-Length": "5"})
    assert r.status == 500, r
    deadline_poll(lambda: str(d / "pre-create") in srv.stderr(), 10,
                  what="log naming the hook file")


def test_missing_hook_is_a_no_op(tusc, tmp_path):
    d = make_hooks(tmp_path, {})
    srv = hooks_server(tusc, hooks_dir=d)
    path = srv.create(3)
    assert srv.patch(path, 0, b"abc").status == 204
    assert srv.request("DELETE", path).status == 204


def test_hanging_hook_times_out_without_blocking_others(tusc, tmp_path):
    # The hook says when it runs, so the other requests are sent while it hangs.
    started = tmp_path / "hook-started"
    d = make_hooks(tmp_path, {"pre-create": f"#!/bin/sh\ntouch '{started}'\nexec sleep 60\n"})
    srv = hooks_server(tusc, "-hooks-timeout", "3000ms", hooks_dir=d)
    result = {}

    def post():
        t0 = time.monotonic()
        result["r"] = srv.request("POST", "/files/", {"Upload-Length": "5"}, timeout=30)
        result["t"] = time.monotonic() - t0

    th = threading.Thread(target=post)
    th.start()
    deadline_poll(started.exists, 15, what="pre-create hook running")
    # Blocking hooks suspend only their own request: these are answered while it waits.
    t0 = time.monotonic()
    assert srv.request("OPTIONS", "/files/").status == 200
    assert srv.head("/files/" + "0" * 32).status == 404
    assert time.monotonic() - t0 < 2.0
    assert "r" not in result, "the hook's request ended before the others were answered"
    th.join(30)
    assert result["r"].status == 500, result["r"]
    assert 2.7 <= result["t"] < 15, result["t"]


def test_hooks_enabled_events_default_skips_blocking_finish(tusc, hooklog):
    """tusd's default set: pre-create, post-create, post-receive, post-terminate,
    post-finish. pre-finish and pre-terminate are not run."""
    srv = tusc("-hooks-dir", str(HOOKS_DIR))
    path = srv.create(2, metadata=f"filename {b64('d')}")
    assert srv.patch(path, 0, b"ab").status == 204
    hooklog.wait("post-finish")
    assert srv.request("DELETE", path).status in (204, 404)
    hooklog.wait("post-terminate")
    assert hooklog.entries("pre-finish") == []
    assert hooklog.entries("pre-terminate") == []
    assert len(hooklog.entries("pre-create")) == 1


# --- post-receive -----------------------------------------------------------------------


def slow_patch(srv, path, chunks, delay, stop_when_answered=False, offset=0):
    """PATCH whose body trickles in; returns (status line, headers, body, bytes sent)."""
    total = sum(len(c) for c in chunks)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: {OCTET}\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    s = socket.create_connection((srv.host, srv.port), timeout=20)
    sent = 0
    try:
        s.sendall(head)
        for c in chunks:
            if stop_when_answered:
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
            try:
                s.sendall(c)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(c)
            time.sleep(delay)
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(65536)
            if not got:
                break
            data += got
        headpart, _, rest = data.partition(b"\r\n\r\n")
        lines = headpart.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            got = s.recv(65536)
            if not got:
                break
            rest += got
        return lines[0], headers, rest[:n], sent
    finally:
        s.close()


def test_post_receive_cadence_on_slow_upload(tusc, hooklog):
    # A wide interval and a long body, so that a loaded machine (slow hook start-up,
    # a client that falls behind its pacing) stays far from every bound below.
    interval = 1.0
    srv = hooks_server(tusc, "-progress-hooks-interval", "1000ms")
    chunks = [bytes([65 + i]) * 1000 for i in range(20)]
    path = srv.create(20000, metadata=f"filename {b64('slow')}")
    t0 = time.monotonic()
    status, _, _, _ = slow_patch(srv, path, chunks, 0.25)
    body_seconds = time.monotonic() - t0
    assert " 204 " in status + " ", status
    hooklog.wait("post-finish")
    # Non-blocking hooks run concurrently (8 at once), so two invoked close together (the
    # last periodic one and the final one) may record in either order: sort by offset.
    def offset(e):
        return e["stdin"]["Event"]["Upload"]["Offset"]
    recv = sorted(hooklog.entries("post-receive"), key=offset)
    offsets = [offset(e) for e in recv]
    # At most one periodic event per interval of the body as measured here (>= 5 s),
    # plus the final one and one for the timer's start rounding; at least two periodic
    # ones before the final.
    assert 3 <= len(recv) <= int(body_seconds / interval) + 2, (offsets, body_seconds)
    assert len(set(offsets)) == len(offsets), offsets  # only when the offset changed
    assert offsets[-1] == 20000
    # Spacing of the periodic ones. The times are taken when each hook process runs, so
    # they carry its start-up delay: allow 40% of the interval for that jitter.
    times = [e["t"] for e in recv]
    gaps = [b - a for a, b in zip(times, times[1:-1])]
    assert all(g >= 0.6 * interval for g in gaps), gaps
    for e in recv:
        check_schema(e, "post-receive", "PATCH", path)


def test_stop_upload_from_post_receive(tusc, hooklog, monkeypatch):
    monkeypatch.setenv("HOOK_STOP_AT", "1")
    srv = hooks_server(tusc, "-progress-hooks-interval", "100ms")
    path = srv.create(1_000_000, metadata=f"filename {b64('big')}")
    chunks = [b"x" * 2000] * 400
    status, headers, body, sent = slow_patch(srv, path, chunks, 0.02, stop_when_answered=True)
    assert " 400 " in status + " ", status
    assert body == b"stopped: quota exceeded\n"
    assert headers.get("x-stopped-by") == "post-receive"
    assert sent < 800_000  # cut short, not read to the end
    assert srv.head(path).status == 404
    assert not srv.files_of(path)
    (post,) = hooklog.wait("post-terminate")
    assert post["stdin"]["Event"]["Upload"]["ID"] == upload_id(path)


# --- ChangeFileInfo.Storage.Path ----------------------------------------------------------


def storage_hook(tmp_path, storage_path):
    answer = json.dumps({"ChangeFileInfo": {"Storage": {"Path": storage_path}}})
    return make_hooks(tmp_path, {"pre-create": f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n"})


def test_storage_path_relative_inside_upload_dir(tusc, tmp_path):
    upload_dir = tmp_path / "up"
    (upload_dir / "custom" / "dir").mkdir(parents=True)
    d = storage_hook(tmp_path, "custom/dir/file.bin")
    srv = hooks_server(tusc, hooks_dir=d, upload_dir=upload_dir)
    path = srv.create(5)
    target = upload_dir / "custom" / "dir" / "file.bin"
    assert target.exists()
    assert srv.patch(path, 0, b"hello").status == 204
    assert target.read_bytes() == b"hello"
    assert srv.offset(path) == 5
    assert srv.download(path).body == b"hello"
    (info,) = list(upload_dir.rglob(upload_id(path) + ".info"))
    stored = json.loads(info.read_text())
    assert stored["Storage"]["Path"] == str(target.resolve())
    assert stored["tusc"]["CustomPath"] is True
    # A second upload cannot take the same file.
    assert srv.request("POST", "/files/", {"Upload-Length": "1"}).status == 500
    assert srv.request("DELETE", path).status == 204
    assert not target.exists()
    assert srv.head(path).status == 404


@pytest.mark.parametrize("where", ["../outside.bin", "custom/../../outside.bin", "link/x.bin",
                                   "ABS", "ABS/missing", "link/missing/x.bin", "custom/x.info",
                                   "file/missing/x.bin"])
def test_storage_path_escapes_are_refused(tusc, tmp_path, where):
    upload_dir = tmp_path / "up"
    (upload_dir / "custom").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (upload_dir / "link").symlink_to(elsewhere)
    (upload_dir / "file").write_bytes(b"")
    if where.startswith("ABS"):
        where = str(elsewhere) + (where[3:] or "") + "/abs.bin"
    d = storage_hook(tmp_path, where)
    srv = hooks_server(tusc, hooks_dir=d, upload_dir=upload_dir)
    r = srv.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 500, r
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "outside.bin").exists()
    assert not list(upload_dir.rglob("*.info"))


@pytest.mark.parametrize("where", ["SHARD/squat.bin", "ab/cd/abcdef0123", "ab/cd", "zz",
                                   "alias/cd/x.bin", ".concat/x.bin", "legacy",
                                   "deep/er/ab/cd/x.bin"])
def test_storage_path_in_reserved_areas_is_refused(tusc, tmp_path, where):
    """Storage.Path may not squat tusc's own trees: the shard directories of uploads
    (existing or future: <ab>/<cd>/ of any ID, also reached through a symlink), the
    .concat notes, or an existing upload's files. Answered like any unusable path."""
    upload_dir = tmp_path / "up"
    (upload_dir / "ab" / "cd").mkdir(parents=True)
    (upload_dir / "alias").symlink_to(upload_dir / "ab")
    (upload_dir / "legacy.info").write_text("{}")  # a flat (tusd) upload's info
    plain = tusc(upload_dir=upload_dir)
    existing = plain.create(1)
    if where.startswith("SHARD"):
        shard = plain.data_file(existing).parent.relative_to(upload_dir)
        where = str(shard) + where[len("SHARD"):]
    before = sorted(str(p) for p in upload_dir.rglob("*"))
    d = storage_hook(tmp_path, where)
    srv = hooks_server(tusc, hooks_dir=d, upload_dir=upload_dir)
    r = srv.request("POST", "/files/", {"Upload-Length": "1"})
    assert r.status == 500, r
    assert sorted(str(p) for p in upload_dir.rglob("*")) == before
    assert plain.patch(existing, 0, b"x").status == 204


def test_storage_path_missing_parents_are_created(tusc, tmp_path):
    """tusd's file store makes the directories; tusc too, with -dir-perms, inside the
    upload directory."""
    upload_dir = tmp_path / "up"
    upload_dir.mkdir()
    d = storage_hook(tmp_path, "new/deeper/file.bin")
    srv = hooks_server(tusc, "-dir-perms", "0750", hooks_dir=d, upload_dir=upload_dir)
    path = srv.create(2)
    target = upload_dir / "new" / "deeper" / "file.bin"
    assert target.exists()
    for sub in (upload_dir / "new", upload_dir / "new" / "deeper"):
        assert sub.is_dir() and not sub.is_symlink()
        assert stat.S_IMODE(sub.stat().st_mode) == 0o750, oct(sub.stat().st_mode)
    assert srv.patch(path, 0, b"hi").status == 204
    assert srv.download(path).body == b"hi"


def test_storage_path_absolute_with_flag(tusc, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = storage_hook(tmp_path, str(elsewhere / "abs.bin"))
    srv = hooks_server(tusc, "-hooks-allow-absolute-path", hooks_dir=d)
    path = srv.create(3)
    assert srv.patch(path, 0, b"abc").status == 204
    assert (elsewhere / "abs.bin").read_bytes() == b"abc"
    assert srv.request("DELETE", path).status == 204
    assert not (elsewhere / "abs.bin").exists()


def test_final_concatenation_runs_finish_hooks(tusc, hooklog):
    srv = hooks_server(tusc)
    a = srv.create(3, metadata=f"filename {b64('a')}", headers={"Upload-Concat": "partial"})
    b = srv.create(2, metadata=f"filename {b64('b')}", headers={"Upload-Concat": "partial"})
    assert srv.patch(a, 0, b"abc").status == 204
    assert srv.patch(b, 0, b"de").status == 204
    hooklog.wait("post-finish", 2)
    r = srv.request("POST", "/files/", {"Upload-Concat": f"final;{a} {b}",
                                        "Upload-Metadata": f"filename {b64('ab')}"})
    assert r.status == 201, r
    assert r.header("X-Pre-Finish") == "ok"
    final = re.sub(r"^https?://[^/]+", "", r.header("Location"))
    fins = hooklog.wait("post-finish", 3)
    last = [e for e in fins if e["stdin"]["Event"]["Upload"]["ID"] == upload_id(final)]
    assert len(last) == 1
    up = last[0]["stdin"]["Event"]["Upload"]
    assert up["IsFinal"] is True and up["Offset"] == 5 and up["Size"] == 5
    pre = [e for e in hooklog.entries("pre-create")
           if e["stdin"]["Event"]["Upload"]["IsFinal"]]
    assert len(pre) == 1
    assert pre[0]["stdin"]["Event"]["Upload"]["PartialUploads"] == [upload_id(a), upload_id(b)]
    partial = [e for e in hooklog.entries("pre-create")
               if e["stdin"]["Event"]["Upload"]["IsPartial"]]
    assert len(partial) == 2
    assert srv.download(final).body == b"abcde"
