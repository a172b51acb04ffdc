"""checksum and checksum-trailer: every algorithm, every error code, locks, crashes.

A chunk whose Upload-Checksum does not match is dropped: 460 and the offset stays where
it was — also when the server is killed with SIGKILL while the chunk is in flight (the
body goes to a side file and reaches the data file only once its digest matched)."""
import base64
import hashlib
import os
import signal
import struct
import threading
import time
import zlib

import pytest

from conftest import OCTET, assert_error, build_request, deadline_poll, sha256, upload_id

ALGOS = ["sha1", "md5", "sha256", "sha512", "crc32"]


def digest(algo, data):
    if algo == "crc32":
        return struct.pack(">I", zlib.crc32(data))
    return hashlib.new(algo, data).digest()


def checksum(algo, data):
    return f"{algo} {base64.b64encode(digest(algo, data)).decode()}"


def patch_head(path, offset, length=None, extra=None, chunked=False):
    hs = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", str(offset)),
          ("Content-Type", OCTET)]
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
    else:
        hs.append(("Content-Length", str(length)))
    hs += list(extra or [])
    return build_request("PATCH", path, hs, content_length=None)


def chunked_body(data, trailers=(), piece=7000):
    out = b""
    for i in range(0, len(data), piece):
        part = data[i:i + piece]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += f"{k}: {v}\r\n".encode()
    return out + b"\r\n"


def chunked_patch(srv, path, offset, data, trailers=(), announce=True, extra=()):
    hs = list(extra)
    if announce:
        hs.append(("Trailer", "Upload-Checksum"))
    req = patch_head(path, offset, extra=hs, chunked=True) + chunked_body(data, trailers)
    return srv.raw_request(req, "PATCH")


def side_files(srv):
    found = []
    for root, _dirs, files in os.walk(srv.upload_dir):
        found += [f for f in files if f.endswith(".tmp")]
    return found


# --- OPTIONS ---------------------------------------------------------------------------


def test_options_advertises_checksum(server):
    r = server.request("OPTIONS", "/files/")
    assert r.status == 200, r
    exts = r.header("Tus-Extension").split(",")
    assert "checksum" in exts and "checksum-trailer" in exts, r
    assert "expiration" not in exts, r  # only with -expire-after
    assert r.header("Tus-Checksum-Algorithm") == "sha1,md5,sha256,sha512,crc32"


# --- success and mismatch per algorithm -----------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_checksum_success(server, algo):
    data = os.urandom(300_000)
    up = server.create(length=len(data) * 2)
    for i in range(2):
        chunk = data if i == 0 else data[::-1]
        r = server.patch(up, i * len(data), chunk, {"Upload-Checksum": checksum(algo, chunk)})
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str((i + 1) * len(data))
    assert sha256(server.download(up).body) == sha256(data + data[::-1])
    assert side_files(server) == []


@pytest.mark.parametrize("algo", ALGOS)
def test_checksum_mismatch_keeps_offset(server, algo):
    good = os.urandom(50_000)
    up = server.create(length=200_000)
    r = server.patch(up, 0, good, {"Upload-Checksum": checksum(algo, good)})
    assert r.status == 204, r
    bad = os.urandom(60_000)
    wrong = bytearray(bad)
    wrong[12345] ^= 1  # the checksum is of almost the same bytes
    r = server.patch(up, 50_000, bad, {"Upload-Checksum": checksum(algo, bytes(wrong))})
    assert_error(r, 460, "ERR_CHECKSUM_MISMATCH")
    assert server.offset(up) == 50_000
    assert server.data_file(up).stat().st_size == 50_000
    assert side_files(server) == []
    # The client resends and goes on from the old offset.
    r = server.patch(up, 50_000, bad, {"Upload-Checksum": checksum(algo, bad)})
    assert r.status == 204, r
    assert server.download(up).body == good + bad


def test_checksum_empty_body(server):
    up = server.create(length=10)
    r = server.patch(up, 0, b"", {"Upload-Checksum": checksum("sha1", b"")})
    assert r.status == 204, r
    r = server.patch(up, 0, b"", {"Upload-Checksum": checksum("sha1", b"x")})
    assert_error(r, 460, "ERR_CHECKSUM_MISMATCH")
    assert server.offset(up) == 0


def test_checksum_algorithm_name_case_insensitive(server):
    data = b"hello world"
    up = server.create(length=len(data))
    value = checksum("sha256", data).replace("sha256", "SHA256")
    r = server.patch(up, 0, data, {"Upload-Checksum": value})
    assert r.status == 204, r


def test_checksum_completes_upload(server):
    data = os.urandom(1000)
    up = server.create(length=1000)
    r = server.patch(up, 0, data, {"Upload-Checksum": checksum("md5", data)})
    assert r.status == 204, r
    h = server.head(up)
    assert h.header("Upload-Offset") == "1000" and h.header("Upload-Length") == "1000"


# --- 400s ------------------------------------------------------------------------------


def test_unknown_algorithm_400(server):
    data = b"abcdef"
    up = server.create(length=6)
    for value in ["sha3 " + base64.b64encode(b"x" * 20).decode(),
                  "crc32c " + base64.b64encode(b"abcd").decode(),
                  "blake2b " + base64.b64encode(b"x" * 64).decode()]:
        r = server.patch(up, 0, data, {"Upload-Checksum": value})
        assert_error(r, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")
    assert server.offset(up) == 0


MALFORMED = [
    "",
    "sha1",
    "sha1 ",
    "sha1  " + base64.b64encode(b"x" * 20).decode(),
    "sha1\t" + base64.b64encode(b"x" * 20).decode(),
    "sha1 " + base64.b64encode(b"x" * 20).decode() + " extra",
    "sha1 " + base64.b64encode(b"x" * 20).decode().rstrip("="),  # unpadded
    "sha1 " + base64.b64encode(b"x" * 16).decode(),  # md5-sized digest
    "sha256 " + base64.b64encode(b"x" * 20).decode(),
    "sha1 " + base64.urlsafe_b64encode(b"\xfb\xff" * 10).decode(),  # url alphabet
    "sha1 !!!!" + base64.b64encode(b"x" * 18).decode(),
    "sh@1 " + base64.b64encode(b"x" * 20).decode(),
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_checksum_400(server, value):
    up = server.create(length=6)
    r = server.patch(up, 0, b"abcdef", {"Upload-Checksum": value})
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert server.offset(up) == 0


def test_repeated_checksum_header_400(server):
    data = b"abcdef"
    up = server.create(length=6)
    hs = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET),
          ("Upload-Checksum", checksum("sha1", data)), ("Upload-Checksum", checksum("md5", data))]
    r = server.raw_request(build_request("PATCH", up, hs, data), "PATCH")
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert server.offset(up) == 0


# --- checksum-trailer ------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_trailer_success(server, algo):
    data = os.urandom(100_000)
    up = server.create(length=len(data))
    r = chunked_patch(server, up, 0, data, [("Upload-Checksum", checksum(algo, data))])
    assert r.status == 204, r
    assert r.header("Upload-Offset") == str(len(data))
    assert server.download(up).body == data


def test_trailer_mismatch_keeps_offset(server):
    data = os.urandom(100_000)
    up = server.create(length=200_000)
    r = chunked_patch(server, up, 0, data, [("Upload-Checksum", checksum("sha1", data))])
    assert r.status == 204, r
    more = os.urandom(50_000)
    r = chunked_patch(server, up, 100_000, more,
                      [("Upload-Checksum", checksum("sha1", more + b"!"))])
    assert_error(r, 460, "ERR_CHECKSUM_MISMATCH")
    assert server.offset(up) == 100_000
    assert server.data_file(up).stat().st_size == 100_000


def test_trailer_announced_but_missing_400(server):
    up = server.create(length=10)
    r = chunked_patch(server, up, 0, b"0123456789", [])
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert server.offset(up) == 0


def test_trailer_unknown_algorithm_400(server):
    up = server.create(length=10)
    r = chunked_patch(server, up, 0, b"0123456789", [("Upload-Checksum", "md4 AAAAAAAAAAAAAAAAAAAAAA==")])
    assert_error(r, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")
    assert server.offset(up) == 0


def test_trailer_unannounced_dropped(server):
    """Without `Trailer: Upload-Checksum` the bytes were not staged; a trailer arriving
    anyway cannot be honoured, so the chunk is dropped rather than kept unverified."""
    up = server.create(length=10)
    r = chunked_patch(server, up, 0, b"0123456789",
                      [("Upload-Checksum", checksum("sha1", b"0123456789"))], announce=False)
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert server.offset(up) == 0
    # A chunked PATCH without any checksum is still plain tus.
    r = chunked_patch(server, up, 0, b"0123456789", [], announce=False)
    assert r.status == 204, r
    assert server.offset(up) == 10


def test_trailer_announced_without_chunked_400(server):
    up = server.create(length=4)
    hs = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET),
          ("Trailer", "Upload-Checksum")]
    r = server.raw_request(build_request("PATCH", up, hs, b"abcd"), "PATCH")
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")


def test_header_and_trailer_both_400(server):
    up = server.create(length=4)
    r = chunked_patch(server, up, 0, b"abcd", [("Upload-Checksum", checksum("sha1", b"abcd"))],
                      extra=[("Upload-Checksum", checksum("sha1", b"abcd"))])
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert server.offset(up) == 0


# --- creation-with-upload --------------------------------------------------------------------


def test_checksum_on_post_with_body(server):
    data = os.urandom(20_000)
    r = server.create(length=50_000, body=data,
                      headers={"Upload-Checksum": checksum("sha256", data)}, expect=201)
    assert server.offset(r) == 20_000
    assert server.download(r).body == data


def test_bad_checksum_on_post_with_body(server):
    data = os.urandom(20_000)
    r = server.create(length=50_000, body=data,
                      headers={"Upload-Checksum": checksum("sha256", data[:-1])}, expect=460)
    assert_error(r, 460, "ERR_CHECKSUM_MISMATCH")
    # The upload was created before its body arrived; it holds none of the bytes, and
    # the 460 names it so that the client can resend the chunk with PATCH.
    datas = [p for root, _d, fs in os.walk(server.upload_dir) for p in fs
             if len(p) == 32 and "." not in p]
    assert len(datas) == 1, datas
    loc = r.header("Location")
    assert loc and loc.endswith("/files/" + datas[0]), r
    up = "/files/" + datas[0]
    assert server.offset(up) == 0
    r = server.patch(up, 0, data, {"Upload-Checksum": checksum("sha256", data)})
    assert r.status == 204, r
    assert server.download(up).body == data


def test_malformed_checksum_on_post_creates_nothing(server):
    r = server.create(length=10, body=b"0123456789", headers={"Upload-Checksum": "sha1 xx"},
                      expect=400)
    assert_error(r, 400, "ERR_INVALID_CHECKSUM")
    assert list(server.upload_dir.rglob("*.info")) == []


# --- locks -----------------------------------------------------------------------------------


def test_bad_checksum_patch_interrupted_by_waiting_request(server):
    """A PATCH with a wrong checksum stalls mid-body; a second PATCH for the same upload
    asks it to let go. The first is cut short (its unverifiable chunk dropped), the
    second finds the old offset and succeeds."""
    n = 400_000
    data = os.urandom(n)
    up = server.create(length=n)
    a = server.raw(timeout=30)
    try:
        a.send(patch_head(up, 0, n, [("Upload-Checksum", checksum("sha1", b"wrong"))]))
        a.send(data[:150_000])
        # The first PATCH holds the lock once its bytes are being staged.
        shard = server.data_file(up).parent
        deadline_poll(lambda: staged_size(server.proc.pid, shard) == 150_000, 20,
                      what="the first PATCH to stage its bytes")
        r = server.patch(up, 0, data, {"Upload-Checksum": checksum("sha1", data)})
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str(n)
        ra, _ = a.read_final_response("PATCH")
        assert_error(ra, 400, "ERR_UPLOAD_INTERRUPTED")
    finally:
        a.close()
    assert server.download(up).body == data
    assert side_files(server) == []


def test_bad_checksum_racing_good_patch(server):
    """A complete PATCH with a wrong checksum and a good one race for the lock, in either
    order: the bad one never moves the offset, so the good one (at offset 0) wins."""
    for _ in range(3):
        n = 200_000
        data = os.urandom(n)
        up = server.create(length=n)
        results = {}

        def bad():
            results["bad"] = server.patch(up, 0, os.urandom(n),
                                          {"Upload-Checksum": checksum("md5", data)})

        t = threading.Thread(target=bad)
        t.start()
        good = server.patch(up, 0, data, {"Upload-Checksum": checksum("md5", data)})
        t.join(30)
        assert good.status in (204, 409, 400), good
        rb = results["bad"]
        assert rb.status in (460, 400, 409), rb
        if good.status != 204:
            # The bad one held the lock with its body in flight and was interrupted, or
            # the good one arrived second... the offset is still 0 either way.
            assert server.offset(up) == 0
            good = server.patch(up, 0, data, {"Upload-Checksum": checksum("md5", data)})
            assert good.status == 204, good
        assert server.download(up).body == data


# --- crashes ---------------------------------------------------------------------------------


def staged_size(pid, shard_dir):
    """Size of a deleted or O_TMPFILE file under shard_dir that the server holds open
    (the side file of a chunk being verified), or None."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith(str(shard_dir) + "/") and "(deleted)" in target:
            try:
                return os.stat(f"{fd_dir}/{fd}").st_size
            except OSError:
                continue
    return None


def test_sigkill_during_checksummed_patch(tusc):
    srv = tusc()
    n = 1_000_000
    data = os.urandom(n)
    up = srv.create(length=n)
    first = data[:200_000]
    r = srv.patch(up, 0, first, {"Upload-Checksum": checksum("sha256", first)})
    assert r.status == 204, r
    shard = srv.data_file(up).parent
    rest = data[200_000:]
    c = srv.raw(timeout=30)
    try:
        c.send(patch_head(up, 200_000, len(rest), [("Upload-Checksum", checksum("sha256", rest))]))
        c.send(rest[:-1])  # everything but the last byte
        pid = srv.proc.pid
        deadline_poll(lambda: staged_size(pid, shard) == len(rest) - 1, 20,
                      what="the chunk to be staged")
        assert srv.offset(up) == 200_000  # not counted before it is verified
        srv.expect_exit = -signal.SIGKILL
        srv.stop(sig=signal.SIGKILL)
    finally:
        c.close()
    srv2 = tusc(upload_dir=srv.upload_dir)
    assert srv2.offset(up) == 200_000
    assert srv2.data_file(up).stat().st_size == 200_000
    assert side_files(srv2) == []
    r = srv2.patch(up, 200_000, rest, {"Upload-Checksum": checksum("sha256", rest)})
    assert r.status == 204, r
    assert sha256(srv2.download(up).body) == sha256(data)


def test_sigkill_right_after_bad_chunk_arrived(tusc):
    """The whole body (with a wrong checksum) is sent and the server killed at once,
    somewhere between reading the last byte and answering: never a changed offset."""
    upload_dir = None
    for i in range(3):
        srv = tusc(upload_dir=upload_dir)
        upload_dir = srv.upload_dir
        n = 2_000_000
        data = os.urandom(n)
        up = srv.create(length=n)
        c = srv.raw(timeout=30)
        try:
            c.send(patch_head(up, 0, n, [("Upload-Checksum", checksum("sha512", data[1:]))]) + data)
            time.sleep(0.05 * i)  # spread the kill over the verification window
            srv.expect_exit = -signal.SIGKILL
            srv.stop(sig=signal.SIGKILL)
        finally:
            c.close()
        srv2 = tusc(upload_dir=upload_dir)
        assert srv2.offset(up) == 0
        assert srv2.data_file(up).stat().st_size == 0
        srv2.stop()


def test_sigkill_right_after_good_chunk_arrived(tusc):
    """Same with a correct checksum: after the restart the offset is either the old one
    or the new one, and the stored bytes are exactly a prefix of what was sent."""
    srv = tusc()
    n = 2_000_000
    data = os.urandom(n)
    up = srv.create(length=n)
    c = srv.raw(timeout=30)
    try:
        c.send(patch_head(up, 0, n, [("Upload-Checksum", checksum("crc32", data))]) + data)
        time.sleep(0.05)
        srv.expect_exit = -signal.SIGKILL
        srv.stop(sig=signal.SIGKILL)
    finally:
        c.close()
    srv2 = tusc(upload_dir=srv.upload_dir)
    off = srv2.offset(up)
    stored = srv2.download(up).body
    assert stored == data[:off]
    r = srv2.patch(up, off, data[off:], {"Upload-Checksum": checksum("crc32", data[off:])})
    assert r.status == 204, r
    assert sha256(srv2.download(up).body) == sha256(data)


def test_fsync_never_checksum(tusc):
    srv = tusc("-fsync=never")
    data = os.urandom(70_000)
    up = srv.create(length=len(data))
    r = srv.patch(up, 0, data, {"Upload-Checksum": checksum("sha1", data + b"x")})
    assert_error(r, 460, "ERR_CHECKSUM_MISMATCH")
    r = srv.patch(up, 0, data, {"Upload-Checksum": checksum("sha1", data)})
    assert r.status == 204, r
    assert srv.download(up).body == data
