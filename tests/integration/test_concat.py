"""concatenation + concatenation-unfinished (PROTOCOL.md, docs/protocol-support.md).

Partial uploads, final uploads from absolute and relative URLs, HEAD of both, every
error code, finals created before their partials are done (the final completes when
its last partial does, also across a restart and when the waiting note is lost),
deferred partial lengths, -disable-concatenation, and tus-js-client's parallelUploads
(which is built on concatenation) with a 50 MB file."""
import hashlib
import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from conftest import REPO, assert_error, b64, deadline_poll, random_file, upload_id

CLIENTS = REPO / "tests" / "clients"
ASSEMBLY_TIMEOUT = 30.0


def partial(srv, data, defer=False, metadata=None):
    """Creates a partial upload holding `data` (all of it); returns its path."""
    hs = {"Upload-Concat": "partial"}
    if metadata is not None:
        hs["Upload-Metadata"] = metadata
    if defer:
        hs["Upload-Defer-Length"] = "1"
    else:
        hs["Upload-Length"] = str(len(data))
    path = srv.create(headers=hs)
    if data and not defer:
        r = srv.patch(path, 0, data)
        assert r.status == 204, r
    return path


def create_final(srv, urls, headers=None, expect=201):
    hs = {"Upload-Concat": "final;" + " ".join(urls)}
    hs.update(headers or {})
    r = srv.request("POST", srv.base_path, hs)
    assert r.status == expect, r
    return r


def final_path(r):
    loc = r.header("Location")
    assert loc, r
    return urllib.parse.urlsplit(loc).path


def events_of(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]


def wait_complete(srv, path, length):
    def done():
        r = srv.head(path)
        assert r.status == 200, r
        return r if r.header("Upload-Offset") == str(length) else None
    return deadline_poll(done, ASSEMBLY_TIMEOUT, what=f"{path} to reach offset {length}")


# --- extension list, partials, success paths ------------------------------------------


def test_options_lists_concatenation(server):
    r = server.request("OPTIONS", server.base_path)
    assert r.status in (200, 204), r
    ext = r.header("Tus-Extension").split(",")
    assert "concatenation" in ext and "concatenation-unfinished" in ext, ext


def test_partial_head(server):
    path = partial(server, b"hello")
    r = server.head(path)
    assert r.status == 200, r
    assert r.header("Upload-Concat") == "partial"
    assert r.header("Upload-Length") == "5"
    assert r.header("Upload-Offset") == "5"
    # A normal upload says nothing about concatenation.
    plain = server.create(length=3)
    assert server.head(plain).header("Upload-Concat") is None


def test_partial_with_creation_with_upload(server):
    path = server.create(headers={"Upload-Concat": "partial", "Upload-Length": "4"},
                         body=b"abcd")
    r = server.head(path)
    assert r.header("Upload-Offset") == "4" and r.header("Upload-Concat") == "partial"


@pytest.mark.parametrize("form", ["relative", "absolute", "mixed"])
def test_final_of_finished_partials(server, form):
    parts = [b"first part|", b"", b"second|", os.urandom(100_000)]
    paths = [partial(server, d) for d in parts]
    if form == "relative":
        urls = paths
    elif form == "absolute":
        urls = [server.url(p) for p in paths]
    else:
        urls = [server.url(p) if i % 2 else p for i, p in enumerate(paths)]
    r = create_final(server, urls, {"Upload-Metadata": "filename Y29uY2F0LmJpbg=="})
    fpath = final_path(r)
    whole = b"".join(parts)

    h = server.head(fpath)
    assert h.status == 200, h
    assert h.header("Upload-Length") == str(len(whole))
    assert h.header("Upload-Offset") == str(len(whole))
    assert h.header("Upload-Defer-Length") is None
    # Absolute URLs built like Location, in the order given, whatever form was sent.
    assert h.header("Upload-Concat") == "final;" + " ".join(server.url(p) for p in paths)
    assert h.header("Upload-Metadata") == "filename Y29uY2F0LmJpbg=="

    g = server.download(fpath)
    assert g.status == 200, g
    assert g.body == whole
    assert server.data_file(fpath).read_bytes() == whole
    # The partials stay as they were.
    for p, d in zip(paths, parts):
        assert server.download(p).body == d


def test_same_partial_twice_is_refused(server):
    """A partial listed twice in one final: 400 ERR_INVALID_CONCAT, nothing created (it
    may still be listed by several finals: test_one_partial_in_two_finals)."""
    p = partial(server, b"ab")
    q = partial(server, b"cd")
    before = sorted(server.upload_dir.rglob("*.info"))
    for value in (f"final;{p} {q} {p}", f"final;{p} http://other.example{p}"):
        r = server.request("POST", "/files/", {"Upload-Concat": value})
        assert r.status == 400, r
        assert r.body.startswith(b"ERR_INVALID_CONCAT"), r
    assert sorted(server.upload_dir.rglob("*.info")) == before


def test_final_behind_proxy_prefix(tusc):
    srv = tusc("-behind-proxy")
    hs = {"X-Forwarded-Host": "uploads.example", "X-Forwarded-Proto": "https",
          "X-Forwarded-Prefix": "/pfx"}
    locs = []
    for d in (b"12", b"345"):
        r = srv.request("POST", "/files/", dict(hs, **{"Upload-Concat": "partial",
                                                        "Upload-Length": str(len(d))}))
        assert r.status == 201, r
        loc = r.header("Location")
        assert loc.startswith("https://uploads.example/pfx/files/"), loc
        locs.append(loc)
        assert srv.patch(urllib.parse.urlsplit(loc).path[len("/pfx"):], 0, d).status == 204
    r = srv.request("POST", "/files/", dict(hs, **{"Upload-Concat": "final;" + " ".join(locs)}))
    assert r.status == 201, r
    fpath = urllib.parse.urlsplit(r.header("Location")).path[len("/pfx"):]
    h = srv.request("HEAD", fpath, hs)
    assert h.header("Upload-Concat") == "final;" + " ".join(locs)
    assert srv.download(fpath).body == b"12345"


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "final;",
    "final",
    "partial;",
    "Partial",
    "final;/files/",
    "final;/elsewhere/abc",
    "final;/files/abc?x=1",
    "final;/files/../x",
    "final;ftp://host/files/abc",
    "concat",
])
def test_malformed_header(server, value):
    p = partial(server, b"x")
    value = value.replace("abc", upload_id(p))
    r = server.request("POST", server.base_path, {"Upload-Concat": value, "Upload-Length": "1"})
    assert_error(r, 400, "ERR_INVALID_CONCAT")


def test_duplicate_header(server):
    p = partial(server, b"x")
    raw = (f"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           f"Upload-Concat: final;{p}\r\nUpload-Concat: final;{p}\r\n"
           f"Content-Length: 0\r\n\r\n").encode()
    r = server.raw_request(raw, "POST")
    assert_error(r, 400, "ERR_INVALID_CONCAT")


@pytest.mark.parametrize("extra", [{"Upload-Length": "1"}, {"Upload-Defer-Length": "1"}])
def test_final_with_length(server, extra):
    p = partial(server, b"x")
    r = create_final(server, [p], extra, expect=400)
    assert_error(r, 400, "ERR_INVALID_CONCAT")


def test_final_with_body(server):
    p = partial(server, b"x")
    r = server.request("POST", server.base_path,
                       {"Upload-Concat": f"final;{p}", "Content-Type": "application/offset+octet-stream"},
                       b"y")
    assert_error(r, 403, "ERR_MODIFY_FINAL")


def test_unknown_partial(server):
    p = partial(server, b"x")
    r = create_final(server, [p, "/files/0123456789abcdef0123456789abcdef"], expect=400)
    assert_error(r, 400, "ERR_INVALID_CONCAT")


def test_non_partial_in_list(server):
    p = partial(server, b"x")
    plain = server.create(length=1)
    assert server.patch(plain, 0, b"y").status == 204
    r = create_final(server, [p, plain], expect=400)
    assert_error(r, 400, "ERR_INVALID_CONCAT")
    # A final is not a partial either.
    f = final_path(create_final(server, [p]))
    assert_error(create_final(server, [f], expect=400), 400, "ERR_INVALID_CONCAT")


def test_final_over_max_size(tusc):
    srv = tusc("-max-size", "10")
    a = partial(srv, b"123456")
    b = partial(srv, b"78901")
    assert_error(create_final(srv, [a, b], expect=413), 413, "ERR_MAX_SIZE_EXCEEDED")
    assert srv.download(final_path(create_final(srv, [a]))).body == b"123456"


def test_patch_final_forbidden(server):
    p = partial(server, b"abc")
    f = final_path(create_final(server, [p]))
    r = server.patch(f, 3, b"more")
    assert_error(r, 403, "ERR_MODIFY_FINAL")
    r = server.patch(f, 0, b"")
    assert_error(r, 403, "ERR_MODIFY_FINAL")
    assert server.download(f).body == b"abc"


def test_disabled(tusc):
    srv = tusc("-disable-concatenation")
    r = srv.request("OPTIONS", srv.base_path)
    assert "concatenation" not in r.header("Tus-Extension"), r
    r = srv.request("POST", srv.base_path, {"Upload-Concat": "partial", "Upload-Length": "1"})
    assert_error(r, 400, "ERR_CONCATENATION_UNSUPPORTED")
    r = srv.request("POST", srv.base_path, {"Upload-Concat": "final;/files/abc"})
    assert_error(r, 400, "ERR_CONCATENATION_UNSUPPORTED")


# --- concatenation-unfinished -----------------------------------------------------------


def test_three_partials_one_still_uploading(server):
    a, b, c = os.urandom(70_000), os.urandom(50_000), os.urandom(90_000)
    pa = partial(server, a)
    pb = partial(server, b)
    pc = server.create(headers={"Upload-Concat": "partial", "Upload-Length": str(len(c))})
    assert server.patch(pc, 0, c[:40_000]).status == 204  # still uploading

    fpath = final_path(create_final(server, [pa, pb, pc]))
    total = len(a) + len(b) + len(c)
    h = server.head(fpath)
    assert h.status == 200, h
    assert h.header("Upload-Offset") == "0"
    assert h.header("Upload-Length") == str(total)  # every partial length is known
    assert h.header("Upload-Concat").startswith("final;")
    assert server.patch(fpath, 0, b"x").status == 403
    # GET of an unassembled final serves what is there: nothing yet.
    g = server.download(fpath)
    assert g.status == 200 and g.body == b"", g

    r = server.patch(pc, 40_000, c[40_000:])
    assert r.status == 204, r
    wait_complete(server, fpath, total)
    assert server.download(fpath).body == a + b + c
    assert server.head(pc).header("Upload-Offset") == str(len(c))


def test_final_created_while_partial_patch_in_flight(server):
    """Creating a final (and polling it) must not take the lock of a partial that is
    receiving a PATCH: the upload goes on, and the final completes when it ends."""
    pa = partial(server, b"head:")
    body = os.urandom(200_000)
    pb = server.create(headers={"Upload-Concat": "partial", "Upload-Length": str(len(body))})
    with server.raw() as c:
        c.send(f"PATCH {pb} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
               f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100_000])
        deadline_poll(lambda: server.offset(pb) == 100_000, 10, what="first half stored")
        fpath = final_path(create_final(server, [pa, pb]))
        assert server.head(fpath).header("Upload-Offset") == "0"
        assert server.patch(fpath, 0, b"x").status == 403
        c.send(body[100_000:])
        r, _ = c.read_final_response("PATCH")
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str(len(body))
    wait_complete(server, fpath, 5 + len(body))
    assert server.download(fpath).body == b"head:" + body


def test_deferred_partial_length(server):
    pa = partial(server, b"known-")
    pd = server.create(headers={"Upload-Concat": "partial", "Upload-Defer-Length": "1"})
    assert server.patch(pd, 0, b"defer").status == 204
    fpath = final_path(create_final(server, [pa, pd]))
    h = server.head(fpath)
    # The length is unknown while a partial's is, and not the client's to declare.
    assert h.header("Upload-Length") is None and h.header("Upload-Defer-Length") is None, h
    assert h.header("Upload-Offset") == "0"
    r = server.patch(pd, 5, b"red", {"Upload-Length": "8"})
    assert r.status == 204, r
    h = wait_complete(server, fpath, 14)
    assert h.header("Upload-Length") == "14"
    assert server.download(fpath).body == b"known-deferred"


def test_deferred_length_known_before_data(server):
    pd = server.create(headers={"Upload-Concat": "partial", "Upload-Defer-Length": "1"})
    fpath = final_path(create_final(server, [pd]))
    assert server.head(fpath).header("Upload-Length") is None
    assert server.patch(pd, 0, b"", {"Upload-Length": "3"}).status == 204
    h = server.head(fpath)
    assert h.header("Upload-Length") == "3" and h.header("Upload-Offset") == "0", h
    assert server.patch(pd, 0, b"xyz").status == 204
    wait_complete(server, fpath, 3)
    assert server.download(fpath).body == b"xyz"


def test_one_partial_in_two_finals(server):
    pa = partial(server, b"A")
    pb = server.create(headers={"Upload-Concat": "partial", "Upload-Length": "1"})
    f1 = final_path(create_final(server, [pa, pb]))
    f2 = final_path(create_final(server, [pb, pa]))
    assert server.patch(pb, 0, b"B").status == 204
    wait_complete(server, f1, 2)
    wait_complete(server, f2, 2)
    assert server.download(f1).body == b"AB"
    assert server.download(f2).body == b"BA"


def test_unfinished_survives_restart(tusc):
    srv = tusc()
    pa = partial(srv, b"before-")
    pb = srv.create(headers={"Upload-Concat": "partial", "Upload-Length": "7"})
    fpath = final_path(create_final(srv, [pa, pb]))
    assert srv.stop() == 0
    srv.start()
    assert srv.patch(pb, 0, b"restart").status == 204
    wait_complete(srv, fpath, 14)
    assert srv.download(fpath).body == b"before-restart"


def test_lost_note_assembled_on_get(tusc):
    """With the waiting note gone (as after a crash between the note and a restart),
    GET of the final assembles it before serving, and HEAD starts the assembly."""
    srv = tusc()
    pa = partial(srv, b"one,")
    pb = srv.create(headers={"Upload-Concat": "partial", "Upload-Length": "3"})
    fpath = final_path(create_final(srv, [pa, pb]))
    fpath2 = final_path(create_final(srv, [pb, pa]))
    assert srv.stop() == 0
    notes = srv.upload_dir / ".concat"
    assert notes.is_dir()
    shutil.rmtree(notes)
    srv.start()
    assert srv.patch(pb, 0, b"two").status == 204
    g = srv.download(fpath)
    assert g.status == 200 and g.body == b"one,two", g
    wait_complete(srv, fpath2, 7)  # the HEADs of the poll start the assembly
    assert srv.download(fpath2).body == b"twoone,"


def test_half_assembled_final_is_redone(tusc):
    """A crash in the middle of the copy leaves a prefix in the final's data file:
    the next look at the final starts the assembly again from empty."""
    srv = tusc()
    pa = partial(srv, b"abc")
    pb = srv.create(headers={"Upload-Concat": "partial", "Upload-Length": "3"})
    fpath = final_path(create_final(srv, [pa, pb]))
    assert srv.stop() == 0
    shutil.rmtree(srv.upload_dir / ".concat")
    srv.data_file(fpath).write_bytes(b"ab")
    srv.start()
    assert srv.head(fpath).header("Upload-Offset") == "2"
    assert srv.patch(pb, 0, b"def").status == 204
    assert srv.download(fpath).body == b"abcdef"


def test_delete_partial_after_final(server):
    pa = partial(server, b"abc")
    pb = partial(server, b"def")
    fpath = final_path(create_final(server, [pa, pb]))
    assert server.request("DELETE", pa).status == 204
    assert server.download(fpath).body == b"abcdef"


# --- tus-js-client parallelUploads ------------------------------------------------------


SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("concat") / "random-50MB.bin"
    return path, random_file(path, SIZE)


def test_tus_js_client_parallel_uploads(tusc, big_file):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found (needed for tus-js-client)", pytrace=False)
    if not (CLIENTS / "node_modules" / "tus-js-client").is_dir():
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=CLIENTS, capture_output=True, timeout=300)
        assert p.returncode == 0, p.stderr.decode()
    path, digest = big_file
    srv = tusc()
    p = subprocess.run([node, "parallel.js", srv.url("/files/"), str(path), "--parts", "4"],
                       cwd=CLIENTS, capture_output=True, timeout=300)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, f"stdout:\n{out}\nstderr:\n{p.stderr.decode()}"
    ev = events_of(out)
    partials = [e["url"] for e in ev if e["event"] == "partial"]
    done = [e["url"] for e in ev if e["event"] == "done"]
    assert len(partials) == 4 and len(done) == 1, ev
    fpath = urllib.parse.urlsplit(done[0]).path
    h = srv.head(fpath)
    assert h.header("Upload-Offset") == str(SIZE) and h.header("Upload-Length") == str(SIZE), h
    concat = h.header("Upload-Concat")
    assert concat.startswith("final;") and len(concat[6:].split(" ")) == 4, concat
    assert sorted(concat[6:].split(" ")) == sorted(partials)
    for u in partials:
        assert srv.head(urllib.parse.urlsplit(u).path).header("Upload-Concat") == "partial"

    import http.client
    sha = hashlib.sha256()
    n = 0
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    try:
        conn.request("GET", fpath)
        r = conn.getresponse()
        assert r.status == 200, r.status
        for chunk in iter(lambda: r.read(1 << 20), b""):
            n += len(chunk)
            sha.update(chunk)
    finally:
        conn.close()
    assert n == SIZE
    assert sha.hexdigest() == digest


# --- finish hooks ----------------------------------------------------------------------


def test_post_finish_hook_for_final(tusc, tmp_path, monkeypatch):
    """A final finished by its creation runs the finish hooks like any upload tusd
    finishes (IsFinal, PartialUploads in the event). One partial has a hook-chosen ID
    with a '/' in it, which the final's URL list carries as is."""
    from test_hooks import HOOKS_DIR, HookLog
    log = tmp_path / "hooklog"
    log.mkdir()
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    hooks = HookLog(log)
    srv = tusc("-hooks-dir", str(HOOKS_DIR), "-hooks-enabled-events=")
    name = "filename " + b64("x.bin")
    pa = partial(srv, b"ab", metadata=name)
    pb = partial(srv, b"cd", metadata=name + ",project " + b64("p1"))
    assert pb.startswith("/files/project-p1/"), pb
    hooks.wait("post-finish", 2)  # the partials' own
    r = create_final(srv, [srv.url(pa), pb], {"Upload-Metadata": name})
    fpath = final_path(r)
    fid = fpath[len("/files/"):]

    def final_event():
        for e in hooks.entries("post-finish"):
            if e["stdin"]["Event"]["Upload"]["ID"] == fid:
                return e
        return None
    fin = deadline_poll(final_event, 15, what="post-finish of the final")
    up = fin["stdin"]["Event"]["Upload"]
    assert up["IsFinal"] is True and up["IsPartial"] is False
    assert up["PartialUploads"] == [pa[len("/files/"):], pb[len("/files/"):]]
    assert up["Offset"] == 4 and up["Size"] == 4
    assert [e for e in hooks.entries("pre-finish")
            if e["stdin"]["Event"]["Upload"]["ID"] == fid], "pre-finish of the final"
    assert srv.download(fpath).body == b"abcd"
