"""The S3 store (-s3-bucket) against a real S3 server: single-node Ceph RGW started by
tests/s3/rgw.py (once per module; every test uses a fresh object prefix).

Checked through tusc (HEAD, GET with Range) and directly in the bucket with boto3: the
completed object is the upload, byte for byte; nothing (object, side object, multipart
upload) is left behind by termination or expiry; a restart or an S3 outage loses no
acknowledged byte; back-pressure keeps tusc's memory within -s3-max-buffer-memory.

RGW's multipart minimum is lowered to 64 KiB (rgw.py --min-part-size) so that uploads of
a few MiB span many parts; test_real_5mib_minimum starts a second RGW with AWS's 5 MiB.
RGW outages stop and restart only radosgw: the data lives in the OSD (memstore), which
keeps running, so nothing stored is lost by the outage itself.
"""
import hashlib
import http.client
import subprocess
import sys
import threading
import uuid

import pytest

from test_clients import node_clients  # noqa: F401 (a fixture)
from conftest import (REPO, OCTET, RawConn, assert_error, b64, deadline_poll, random_file,
                      upload_id)

sys.path.insert(0, str(REPO / "tests" / "s3"))
import rgw as rgwmod  # noqa: E402

CLIENTS = REPO / "tests" / "clients"
MIN_PART = 64 * 1024
PART = 256 * 1024
CLIENT_TIMEOUT = 300


@pytest.fixture
def s3(rgw_factory, monkeypatch):
    """The session's RGW with a 64 KiB multipart minimum (conftest.py), credentials in
    the environment tusc inherits, and a fresh prefix."""
    rgw = rgw_factory(MIN_PART)
    for k, v in rgw.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    return S3(rgw, "t" + uuid.uuid4().hex[:12] + "/")


class S3:
    def __init__(self, rgw, prefix):
        self.rgw = rgw
        self.prefix = prefix
        self.bucket = rgwmod.BUCKET
        self.client = rgw.client()

    def flags(self, *more, part=PART, min_part=MIN_PART):
        return ("-s3-bucket", self.bucket, "-s3-endpoint", self.rgw.endpoint,
                "-s3-object-prefix", self.prefix, "-s3-part-size", str(part),
                "-s3-min-part-size", str(min_part)) + more

    def keys(self):
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def multipart_uploads(self):
        r = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        return r.get("Uploads", [])

    def get(self, key, range_=None):
        kw = {"Range": range_} if range_ else {}
        return self.client.get_object(Bucket=self.bucket, Key=key, **kw)["Body"].read()

    def key_of(self, upload_path):
        return self.prefix + upload_id(upload_path)


def pattern(n, seed=0):
    """Deterministic bytes, different for every offset."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def full_check(srv, s3, path, data):
    """The upload equals `data` through tusc (whole and ranged) and in the bucket."""
    r = srv.download(path)
    assert r.status == 200, r
    assert r.body == data
    if len(data) > 10:
        a, b = len(data) // 3, len(data) - 5
        r = srv.download(path, {"Range": f"bytes={a}-{b}"})
        assert r.status == 206, r
        assert r.body == data[a:b + 1]
    assert s3.get(s3.key_of(path)) == data
    # Completed: only the object and its .info remain, and no multipart upload.
    key = s3.key_of(path)
    assert [k for k in s3.keys() if k.startswith(key)] == [key, key + ".info"]
    assert [u for u in s3.multipart_uploads() if u["Key"] == key] == []


def patch(srv, path, offset, data, headers=None):
    h = {"Content-Type": OCTET, "Upload-Offset": str(offset)}
    h.update(headers or {})
    return srv.request("PATCH", path, h, data)


def run_client(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=CLIENT_TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{out}\n{p.stderr.decode()}"
    import json
    return [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]


# --- real clients ---------------------------------------------------------------------


def test_tus_js_client_chunks(tusc, s3, tmp_path, node_clients):
    node = node_clients
    src = tmp_path / "f.bin"
    random_file(src, 3 * 1024 * 1024 + 12345)
    data = src.read_bytes()
    srv = tusc(*s3.flags())
    ev = run_client([node, "upload.js", srv.url("/files/"), str(src),
                     "--chunk-size", str(700 * 1024)], CLIENTS)
    done = [e for e in ev if e["event"] == "done"]
    assert done, ev
    full_check(srv, s3, "/files/" + upload_id(done[0]["url"]), data)


def test_tuspy_upload(tusc, s3, tmp_path):
    src = tmp_path / "f.bin"
    random_file(src, 2 * 1024 * 1024 + 1)
    data = src.read_bytes()
    srv = tusc(*s3.flags())
    ev = run_client(["/usr/bin/python3", str(CLIENTS / "tuspy_upload.py"), srv.url("/files/"),
                     str(src), "--chunk-size", str(300 * 1024)], CLIENTS)
    done = [e for e in ev if e["event"] == "done"]
    assert done and done[0]["offset"] == len(data), ev
    full_check(srv, s3, "/files/" + upload_id(done[0]["url"]), data)


def test_storage_in_info(tusc, s3):
    srv = tusc(*s3.flags())
    loc = srv.create(length=10)
    key = s3.key_of(loc)
    import json
    info = json.loads(s3.get(key + ".info"))
    assert info["ID"] == upload_id(loc)
    assert info["Storage"]["Type"] == "s3store"
    assert info["Storage"]["Bucket"] == s3.bucket
    assert info["Storage"]["Key"] == key
    assert info["Storage"]["MultipartUpload"]
    assert patch(srv, loc, 0, b"0123456789").status == 204
    full_check(srv, s3, loc, b"0123456789")


def test_small_and_empty_uploads(tusc, s3):
    srv = tusc(*s3.flags())
    empty = srv.create(length=0)
    assert srv.offset(empty) == 0
    full_check(srv, s3, empty, b"")
    one = srv.create(length=1)
    assert patch(srv, one, 0, b"x").status == 204
    full_check(srv, s3, one, b"x")
    # Deferred length, declared by the last PATCH.
    loc = srv.create(headers={"Upload-Defer-Length": "1"})
    data = pattern(PART + 1000)
    assert patch(srv, loc, 0, data[:PART + 10]).status == 204
    r = patch(srv, loc, PART + 10, data[PART + 10:], {"Upload-Length": str(len(data))})
    assert r.status == 204, r
    full_check(srv, s3, loc, data)
    # A length declared equal to what is stored, by an empty PATCH: the tail object
    # becomes the last part (server-side copy).
    loc = srv.create(headers={"Upload-Defer-Length": "1"})
    assert patch(srv, loc, 0, data[:PART + 3]).status == 204
    r = patch(srv, loc, PART + 3, b"", {"Upload-Length": str(PART + 3)})
    assert r.status == 204, r
    full_check(srv, s3, loc, data[:PART + 3])


# --- restarts, drops, outages ------------------------------------------------------------


def test_restart_resumes_from_s3_alone(tusc, s3):
    data = pattern(3 * PART + 7777, seed=1)
    srv = tusc(*s3.flags(), name="first")
    loc = srv.create(length=len(data))
    cut = PART + 12345  # one part and a tail
    assert patch(srv, loc, 0, data[:cut]).status == 204
    assert srv.stop() == 0
    key = s3.key_of(loc)
    assert key + ".part.2" in s3.keys()  # the tail, named after the part it begins
    # Another process (fresh upload dir, nothing local) resumes from what S3 holds.
    srv2 = tusc(*s3.flags(), name="second")
    assert srv2.offset(loc) == cut
    cut2 = 2 * PART + 5
    assert patch(srv2, loc, cut, data[cut:cut2]).status == 204
    assert srv2.offset(loc) == cut2
    assert patch(srv2, loc, cut2, data[cut2:]).status == 204
    full_check(srv2, s3, loc, data)


def test_client_drop_keeps_bytes(tusc, s3):
    data = pattern(4 * PART, seed=2)
    srv = tusc(*s3.flags())
    loc = srv.create(length=len(data))
    sent = 2 * PART + 4321
    c = RawConn(srv.port)
    c.send(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           f"Content-Type: {OCTET}\r\nUpload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n")
    c.send(data[:sent])
    c.close()
    # Every byte that reached tusc is in parts or the tail once the chunk has ended.
    deadline_poll(lambda: srv.offset(loc) == sent, 30, what="the offset after the drop")
    assert patch(srv, loc, sent, data[sent:]).status == 204
    full_check(srv, s3, loc, data)


def test_rgw_outage_mid_patch(tusc, s3):
    data = pattern(6 * PART, seed=3)
    srv = tusc(*s3.flags(), "-network-timeout", "60s")
    loc = srv.create(length=len(data))
    acked = PART + 100
    assert patch(srv, loc, 0, data[:acked]).status == 204
    c = RawConn(srv.port, timeout=60)
    c.send(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           f"Content-Type: {OCTET}\r\nUpload-Offset: {acked}\r\n"
           f"Content-Length: {len(data) - acked}\r\n\r\n")
    c.send(data[acked:acked + 1000])
    s3.rgw.stop_radosgw()
    try:
        try:
            c.send(data[acked + 1000:])
        except OSError:
            pass  # tusc may answer and close before the body is through
        r, _ = c.read_final_response("PATCH")
        print("during the outage:", r.status, r.body)
        assert r.status >= 500, r  # never a 204 for bytes S3 did not take
        c.close()
    finally:
        s3.rgw.start_radosgw()
    off = srv.offset(loc)
    assert acked <= off < len(data)  # no acknowledged byte lost
    assert patch(srv, loc, off, data[off:]).status == 204
    full_check(srv, s3, loc, data)


# --- memory ------------------------------------------------------------------------------


def rss_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_backpressure_bounds_memory(tusc, s3, monkeypatch):
    # ASan keeps freed heap in a quarantine; keep it small so RSS shows what tusc holds.
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=4")
    budget = 2 * PART + 256 * 1024
    srv = tusc(*s3.flags("-s3-max-buffer-memory", str(budget), "-s3-concurrent-part-uploads", "2"))
    size = 4 * 1024 * 1024
    n = 16  # 64 MiB in all, far more than the budget
    locs = [srv.create(length=size) for _ in range(n)]
    base = rss_hwm_kib(srv.proc.pid)
    datas = [pattern(size, seed=100 + i) for i in range(n)]
    results = [None] * n

    def send(i):
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
        try:
            conn.request("PATCH", locs[i], body=datas[i],
                         headers={"Tus-Resumable": "1.0.0", "Content-Type": OCTET,
                                  "Upload-Offset": "0"})
            results[i] = conn.getresponse().status
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == [204] * n, results
    grown_kib = rss_hwm_kib(srv.proc.pid) - base
    print(f"RSS high-water mark grew by {grown_kib} KiB (budget {budget // 1024} KiB)")
    # The part buffers stay within the budget; the rest is sockets, curl and the loop.
    assert grown_kib * 1024 < budget + 24 * 1024 * 1024, (grown_kib, budget)
    for i in (0, n - 1):
        assert s3.get(s3.key_of(locs[i])) == datas[i]


# --- concatenation, termination, expiry, checksums -----------------------------------


def test_concat_large_and_small_partials(tusc, s3):
    srv = tusc(*s3.flags())
    pieces = [pattern(200 * 1024, 10), pattern(10 * 1024, 11), pattern(300 * 1024 + 3, 12),
              pattern(5000, 13), pattern(70 * 1024, 14)]
    locs = []
    for p in pieces:
        loc = srv.create(length=len(p), headers={"Upload-Concat": "partial"})
        assert patch(srv, loc, 0, p).status == 204
        locs.append(loc)
    r = srv.request("POST", "/files/", {"Upload-Concat": "final;" + " ".join(locs)})
    assert r.status == 201, r
    final = r.header("Location")
    final = final[final.index("/files/"):]
    data = b"".join(pieces)
    deadline_poll(lambda: srv.head(final).header("Upload-Offset") == str(len(data)), 30,
                  what="the final's offset")
    full_check(srv, s3, final, data)


def test_terminate_leaves_nothing(tusc, s3):
    srv = tusc(*s3.flags())
    loc = srv.create(length=4 * PART)
    assert patch(srv, loc, 0, pattern(PART + 999)).status == 204
    key = s3.key_of(loc)
    assert s3.keys() and [u for u in s3.multipart_uploads() if u["Key"] == key]
    r = srv.request("DELETE", loc)
    assert r.status == 204, r
    assert s3.keys() == []
    assert s3.multipart_uploads() == []
    assert srv.head(loc).status in (404, 410)


def test_expiry_and_orphan_sweep_leave_nothing(tusc, s3):
    # A multipart upload that no .info names (as after a crash between creating it and
    # writing the .info): the sweep aborts it once it is older than the expiry.
    orphan = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + "orphan")
    srv = tusc(*s3.flags("-expire-after", "2s"))
    loc = srv.create(length=4 * PART)
    assert patch(srv, loc, 0, pattern(PART + 5)).status == 204
    deadline_poll(lambda: srv.head(loc).status in (404, 410), 60, what="the upload to expire")
    deadline_poll(lambda: s3.keys() == [] and s3.multipart_uploads() == [], 60,
                  what="nothing left in the bucket")
    assert orphan["UploadId"]


@pytest.mark.parametrize("size", [1000, 3 * PART + 17])
def test_bad_checksum_changes_nothing(tusc, s3, size):
    srv = tusc(*s3.flags())
    data = pattern(size + 100, seed=20)
    loc = srv.create(length=len(data))
    assert patch(srv, loc, 0, data[:100]).status == 204
    before = s3.keys()
    body = data[100:]
    bad = b64(hashlib.sha1(body + b"x").digest())
    r = patch(srv, loc, 100, body, {"Upload-Checksum": "sha1 " + bad})
    assert r.status == 460, r
    assert srv.offset(loc) == 100
    assert s3.keys() == before  # no stage object left, the tail untouched
    good = b64(hashlib.sha1(body).digest())
    r = patch(srv, loc, 100, body, {"Upload-Checksum": "sha1 " + good})
    assert r.status == 204, r
    full_check(srv, s3, loc, data)


# --- part arithmetic at the edges -------------------------------------------------------------


def test_part_10001_refused(tusc, s3):
    """Parts of one upload are all the same size and at most 10,000: a declared length
    that would need part 10,001 grows the parts, unless -s3-max-buffer-memory cannot
    hold two of those (then 413); -max-size grows the store's parts up front."""
    p = MIN_PART
    budget = 2 * p + 256 * 1024
    srv = tusc(*s3.flags("-s3-max-buffer-memory", str(budget), part=p))
    r = srv.request("POST", "/files/", {"Upload-Length": str(10000 * p + 1)})
    assert_error(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    r = srv.request("POST", "/files/", {"Upload-Length": str(10000 * p)})
    assert r.status == 201, r
    srv2 = tusc(*s3.flags("-max-size", str(10000 * p + 1), part=p), name="grown")
    r = srv2.request("POST", "/files/", {"Upload-Length": str(10000 * p + 1)})
    assert r.status == 201, r
    import json
    loc = r.header("Location")
    info = json.loads(s3.get(s3.prefix + loc.rsplit("/", 1)[-1] + ".info"))
    assert info["Storage"]["PartSize"] == p + 1


def test_real_5mib_minimum(tusc, s3, rgw):
    """AWS's real minimum (the session's RGW left at 5 MiB): parts of 5 MiB and a small
    last part, with chunks that do not line up with parts."""
    five = 5 * 1024 * 1024
    srv = tusc("-s3-bucket", rgwmod.BUCKET, "-s3-endpoint", rgw.endpoint,
               "-s3-object-prefix", s3.prefix, "-s3-part-size", str(five),
               "-s3-min-part-size", str(five))
    data = pattern(2 * five + 3 * 1024 * 1024, seed=30)
    loc = srv.create(length=len(data))
    step = 3 * 1024 * 1024
    off = 0
    while off < len(data):
        assert patch(srv, loc, off, data[off:off + step]).status == 204
        off = min(off + step, len(data))
        assert srv.offset(loc) == off
    assert srv.download(loc).body == data
    c = rgw.client()
    assert c.get_object(Bucket=rgwmod.BUCKET, Key=s3.key_of(loc))["Body"].read() == data
    etag = c.head_object(Bucket=rgwmod.BUCKET, Key=s3.key_of(loc))["ETag"]
    assert etag.strip('"').endswith("-3"), etag  # a multipart object of 3 parts


def test_unfinished_upload_not_readable(tusc, s3):
    """S3 serves no parts of a multipart upload: GET of an unfinished upload is refused
    (tusd's s3store does the same), and works once complete."""
    srv = tusc(*s3.flags())
    loc = srv.create(length=PART + 10)
    assert patch(srv, loc, 0, b"x" * 10).status == 204
    r = srv.download(loc)
    assert_error(r, 400, "ERR_UPLOAD_NOT_FINISHED")
    assert patch(srv, loc, 10, b"y" * PART).status == 204
    assert srv.download(loc).body == b"x" * 10 + b"y" * PART


def test_concat_final_before_partials_finish(tusc, s3):
    """The S3 store keeps no waiting notes; a final made before its partials are done is
    assembled once they are (HEAD/GET or the partial's finish)."""
    srv = tusc(*s3.flags())
    a, b = pattern(100 * 1024, 40), pattern(90 * 1024, 41)
    la = srv.create(length=len(a), headers={"Upload-Concat": "partial"})
    lb = srv.create(length=len(b), headers={"Upload-Concat": "partial"})
    assert patch(srv, la, 0, a).status == 204
    r = srv.request("POST", "/files/", {"Upload-Concat": f"final;{la} {lb}"})
    assert r.status == 201, r
    final = r.header("Location")
    final = final[final.index("/files/"):]
    assert patch(srv, lb, 0, b).status == 204
    deadline_poll(lambda: srv.head(final).header("Upload-Offset") == str(len(a) + len(b)), 30,
                  what="the final assembled")
    full_check(srv, s3, final, a + b)


def test_kill_9_mid_patch_loses_no_acknowledged_byte(tusc, s3):
    """kill -9 while a PATCH streams: what was acknowledged stays, parts stored during
    the PATCH count once they follow each other, the absorbed tail is not counted twice,
    and another process resumes to a byte-exact upload."""
    data = pattern(8 * PART, seed=50)
    srv = tusc(*s3.flags(), name="victim")
    loc = srv.create(length=len(data))
    acked = PART // 2 + 77  # a tail only
    assert patch(srv, loc, 0, data[:acked]).status == 204
    c = RawConn(srv.port, timeout=60)
    c.send(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           f"Content-Type: {OCTET}\r\nUpload-Offset: {acked}\r\n"
           f"Content-Length: {len(data) - acked}\r\n\r\n")
    sent = acked + 3 * PART + 1000
    c.send(data[acked:sent])
    key = s3.key_of(loc)

    def parts_stored():
        ups = [u for u in s3.multipart_uploads() if u["Key"] == key]
        if not ups:
            return 0
        r = s3.client.list_parts(Bucket=s3.bucket, Key=key, UploadId=ups[0]["UploadId"])
        return len(r.get("Parts", []))

    deadline_poll(lambda: parts_stored() >= 2, 30, what="parts stored during the PATCH")
    srv.proc.kill()
    srv.proc.wait(timeout=30)
    srv.expect_exit = -9
    c.close()
    srv2 = tusc(*s3.flags(), name="after")
    off = srv2.offset(loc)
    assert acked <= off <= sent
    assert off % PART == 0 or off >= acked  # whole parts, or parts and the old tail
    assert patch(srv2, loc, off, data[off:]).status == 204
    full_check(srv2, s3, loc, data)


@pytest.mark.parametrize("version", [3, 8])
def test_ietf_draft_on_s3(tusc, s3, version):
    """The resumable-upload draft works on the S3 store as on the file store: an
    optimistic creation cut mid-body keeps what reached S3, the offset comes back from
    S3, and the completing append makes the object the representation."""
    from test_ietf import Draft, draft_headers, is_complete, path_of
    from conftest import build_request
    srv = tusc(*s3.flags("-enable-experimental-protocol"))
    d = Draft(srv, version)
    data = pattern(3 * PART + 12345, seed=version)
    sent = PART + 1000  # a full part and a tail
    head = build_request("POST", srv.base_path, draft_headers(version, True, {
        "Content-Type": "application/octet-stream"}), b"", content_length=len(data))
    with srv.raw() as c:
        c.send(head)
        i104 = c.read_response("POST")
        assert i104.status == 104, i104
        loc = i104.header("Location")
        c.send(data[:sent])
    up = path_of(loc)
    # Every byte that arrived is kept: in a part or in the tail object.
    h = deadline_poll(lambda: (lambda r: r if r.header("Upload-Offset") == str(sent) else None)(
        d.head(up)), 30, what="offset after the cut creation")
    off = sent
    assert not is_complete(h, version)
    assert s3.key_of(up) + ".part.2" in s3.keys()
    r = d.append(up, off, data[off:], complete=True)
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(len(data)), r
    assert is_complete(r, version)
    full_check(srv, s3, up, data)
