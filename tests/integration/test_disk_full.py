"""Disk full mid-upload: the client gets a 5xx, the upload keeps its last good offset,
the server keeps serving, and once space is freed the upload resumes to a correct file.

The small filesystem is made by the test: a 20 MB tmpfs (needs root / CAP_SYS_ADMIN),
else a loop-mounted ext4 image, else the file-size limit route (RLIMIT_FSIZE on the
server process, as systemd's LimitFSIZE would set). The RLIMIT_FSIZE variant also runs
on its own, since it needs no privileges at all.
"""
import contextlib
import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import OCTET, RawConn, TuscServer, build_request

FS_MB = 20
TUS = [("Tus-Resumable", "1.0.0")]


def try_mount(mnt, scratch):
    """Mounts a FS_MB filesystem on mnt; returns (how, unmount) or (None, reason)."""
    errors = []
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_MB}m,mode=0755", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if p.returncode == 0:
        return "tmpfs", lambda: subprocess.run(["umount", "-l", str(mnt)], check=False)
    errors.append(f"tmpfs: {p.stderr.strip()}")
    img = scratch / "fs.img"
    if shutil.which("mkfs.ext4"):
        with open(img, "wb") as f:
            f.truncate(FS_MB * 1024 * 1024)
        p = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True)
        if p.returncode == 0:
            p = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True,
                               text=True)
            if p.returncode == 0:
                return "ext4-loop", lambda: subprocess.run(["umount", "-l", str(mnt)], check=False)
        errors.append(f"ext4 loop: {p.stderr.strip()}")
    else:
        errors.append("ext4 loop: no mkfs.ext4")
    return None, "; ".join(errors)


def patch_until_refused(srv, path, offset, data):
    """One PATCH with the whole of `data`; the server may answer before reading it all
    (then it closes), so sending errors are expected. Returns the response."""
    head = build_request("PATCH", path, TUS + [("Upload-Offset", str(offset)),
                                                ("Content-Type", OCTET)],
                         content_length=len(data))
    with RawConn(srv.port, timeout=60) as c:
        c.send(head)
        try:
            view = memoryview(data)
            for i in range(0, len(data), 256 * 1024):
                c.sock.sendall(view[i:i + 256 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass
        r, _ = c.read_final_response("PATCH")
        return r


def fill(path, nbytes):
    """Writes up to nbytes of filler; stops quietly when the filesystem is full."""
    with open(path, "wb") as f:
        block = b"\0" * (1 << 20)
        left = nbytes
        try:
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))
            f.flush()
        except OSError:
            pass


def run_full_disk(srv, free_space, size):
    """Uploads `size` bytes where only part fits; frees space; resumes."""
    data = os.urandom(size)
    path = srv.create(length=size)
    r = patch_until_refused(srv, path, 0, data)
    assert r.status in (507, 500), r
    if r.status == 507:
        assert r.error_code() == "ERR_INSUFFICIENT_STORAGE", r
    # The last good offset: what HEAD says is exactly what the data file holds, and it
    # is a prefix of what we sent.
    off = srv.offset(path)
    print(f"disk full: {r.status} {r.error_code()} at offset {off} of {size}")
    assert 0 < off < size, off
    stored = srv.data_file(path).read_bytes()
    assert len(stored) == off and stored == data[:off]
    # Still serving while full.
    assert srv.request("OPTIONS", "/files/", tus=False).status in (200, 204)
    assert srv.head(path).status == 200
    free_space()
    r = srv.patch(path, off, data[off:])
    assert r.status == 204 and r.header("Upload-Offset") == str(size), r
    got = srv.data_file(path).read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # And a new upload works now.
    p2 = srv.create(length=3, body=b"abc")
    assert srv.offset(p2) == 3


def test_disk_full_small_filesystem(tusc, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    how, unmount = try_mount(mnt, tmp_path)
    if how is None:
        # e.g. a container without CAP_SYS_ADMIN, even as root. The third route,
        # RLIMIT_FSIZE, needs no privilege and runs as its own test below.
        pytest.skip(f"cannot mount a small filesystem (uid {os.geteuid()}): {unmount}; "
                    f"test_disk_full_fsize_limit covers the full-disk path")
    try:
        upload_dir = mnt / "uploads"
        srv = tusc(upload_dir=upload_dir)
        filler = mnt / "filler"
        # Leave ~5 MB free; the upload needs 8.
        fill(filler, (FS_MB - 5) * 1024 * 1024)
        run_full_disk(srv, lambda: filler.unlink(), 8 * 1024 * 1024)
        srv.stop()
        assert srv.returncode == 0 and not srv.sanitizer_reports(), srv.all_stderr()[-5000:]
    finally:
        with contextlib.suppress(Exception):
            srv.kill()
        unmount()


def test_disk_full_fsize_limit(tusc, tmp_path):
    """RLIMIT_FSIZE on the server: writes past the cap fail with EFBIG (the server ignores
    SIGXFSZ). "Freeing space" is a restart without the limit, same upload dir."""
    srv = tusc(start=False)
    # ulimit -f counts blocks (512 bytes in dash): a 2-4 MB cap. exec keeps the PID
    # the harness signals.
    srv.start(["/bin/sh", "-c", 'ulimit -f 4096 && exec "$@"', "tusc"] + srv.command())

    def restart_unlimited():
        assert srv.stop() == 0
        srv.start()

    run_full_disk(srv, restart_unlimited, 6 * 1024 * 1024)


def test_disk_full_small_patch_without_fsync(tusc, tmp_path):
    """With -fsync=never a PATCH's first 64 KiB are written on the event loop straight
    from the socket's bytes (store/file.c direct_write). A write that fills the disk
    there keeps exactly what landed: 5xx, the offset is the data file's length, a prefix
    of what was sent, and the upload resumes once there is room."""
    cap = 4096 * 512  # ulimit -f 4096 (512-byte blocks in dash)
    srv = tusc("-fsync=never", start=False)
    srv.start(["/bin/sh", "-c", 'ulimit -f 4096 && exec "$@"', "tusc"] + srv.command())
    size = cap + 100 * 1024
    data = os.urandom(size)
    path = srv.create(length=size)
    first = cap - 10 * 1024  # below the cap, through the append buffers
    r = srv.patch(path, 0, data[:first])
    assert r.status == 204 and r.header("Upload-Offset") == str(first), r
    r = srv.patch(path, first, data[first:first + 64 * 1024])  # crosses the cap
    assert r.status in (507, 500), r
    off = srv.offset(path)
    assert off == cap, off
    stored = srv.data_file(path).read_bytes()
    assert stored == data[:off]
    assert srv.stop() == 0
    srv.start()
    r = srv.patch(path, off, data[off:])
    assert r.status == 204 and r.header("Upload-Offset") == str(size), r
    assert srv.data_file(path).read_bytes() == data
