"""Power cut, for real: tusc's durability contract (docs/durability.md) on a disk that
loses its unflushed writes.

tests/integration/test_crash.py SIGKILLs the server, which keeps the page cache: it
cannot tell a sync from no sync. Here the upload directory is an ext4 filesystem in a
VM (tests/vm/vm.py), on a virtio disk with a write cache served by tests/vm/nbd_disk.py:
a write the guest has not flushed is lost when the power goes.

VM 1: ext4 mounted on /mnt, tusc (TUSC_BIN, default fsync) on /mnt/up, and a client
(tests/vm/powercut_client.py) running 200 small uploads, 48 at a time, that prints an
ACK line for every 201 and 204 once it has it. The host reads the console as it comes
and, after a random number of ACK lines, SIGKILLs qemu: the power cut. The disk then
keeps its durable image plus some of the writes it had not been asked to flush:
"subset" (each write whole or not at all), "sectors" (each 4 KiB sector of each write
on its own: torn writes) or "none". The kernel's own writeback is held off (dirty
expiry and the journal's commit interval at an hour) so that only the syncs tusc asks
for make anything durable.

VM 2: on the image the power cut left (after `e2fsck -fy` when the filesystem has no
journal, as a boot would; with one, the mount replays it), tusc and the checker: every
acknowledged upload must exist (HEAD 200, Upload-Offset at least the highest
acknowledged offset) and its acknowledged bytes must be there (sha256 of each
acknowledged prefix). `e2fsck -fn` then prints what it thinks of the filesystem.

Negative control: the same with tusc -fsync=never and the "none" power cut must lose
acknowledged uploads — the test can fail.

The seed is printed; TUSC_POWERCUT_SEED=<n> repeats a run's uploads, kill point and
power cut (which writes were in flight at the kill still depends on timing).
TUSC_POWERCUT_KEEP=1 keeps each case's images and consoles (the path is printed).
TUSC_POWERCUT_STRICT=1 also fails a run where an upload has bytes past its last
acknowledged offset that are not the client's (EXTRA lines; see docs/durability.md).

Skips when qemu, busybox-static, e2fsprogs or the kernel are missing, except under CI
(CI set in the environment), where it fails.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import SANITIZER_MARKERS, TUSC_BIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm"))
import nbd_disk  # noqa: E402
import vm  # noqa: E402

UPLOADS = 200
CONCURRENCY = 48
KILL_AFTER = (20, 180)  # ACK lines before the power cut, chosen at random in this range
IMAGE_MIB = 256
LINE_TIMEOUT = 300  # s without a console line: the VM is stuck
VM_TIMEOUT = 600  # s for the recovery VM
MODULES = ["virtio_pci", "virtio_blk"]
VM_DIR = Path(vm.__file__).parent

SEED = int(os.environ.get("TUSC_POWERCUT_SEED", random.randrange(1 << 32)))

# ext4 flavour, power-cut mode, tusc -fsync, must lose nothing
CASES = [
    ("journal", "subset", "always"),
    ("journal", "sectors", "always"),
    ("journal", "none", "always"),
    ("nojournal", "subset", "always"),
    ("nojournal", "sectors", "always"),
    ("nojournal", "none", "always"),
    # negative controls: without syncs, a power cut must lose acknowledged uploads
    ("journal", "none", "never"),
    ("nojournal", "none", "never"),
]

COMMON = r"""
set -u
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1)); [ $i -lt 600 ] || { echo "no /dev/vda"; exit 1; }
  usleep 100000
done
# only the syncs tusc asks for make anything durable: no periodic writeback, no
# periodic journal commit (commit=3600 with a journal): all an hour away
echo 360000 > /proc/sys/vm/dirty_expire_centisecs
echo 360000 > /proc/sys/vm/dirty_writeback_centisecs
mkdir -p /mnt
mount -t ext4 -o __MOUNTOPTS__ /dev/vda /mnt || { echo "MOUNT-FAILED"; dmesg | tail -20; exit 1; }

start_tusc() {
  rm -f /tmp/port
  ASAN_OPTIONS=detect_leaks=$1 tusc -host 127.0.0.1 -port 0 -port-file /tmp/port \
    -upload-dir /mnt/up -fsync $2 > /tmp/tusc.log 2>&1 &
  TPID=$!
  wait_for 180 test -s /tmp/port || { echo "tusc did not start"; cat /tmp/tusc.log; exit 1; }
  PORT=$(cat /tmp/port)
}
"""

# VM 1: uploads until the host pulls the plug.
UPLOAD_SCRIPT = COMMON + r"""
mkdir -p /mnt/up
sync  # the starting point is durable
start_tusc 0 __FSYNC__
echo "POWERCUT-READY"
python3 /powercut_client.py upload $PORT __SEED__ __UPLOADS__ __CONCURRENCY__
# not reached in a normal run: the host kills the VM first
exit 3
"""

# VM 2: recovery and check.
CHECK_SCRIPT = COMMON + r"""
dmesg | grep -i "EXT4-fs" | sed 's/^/DMESG /'
start_tusc 1 always
python3 /powercut_client.py check $PORT __SEED__ /acks
kill -TERM $TPID
wait $TPID
echo "TUSC-STATUS=$?"
if grep -qE "__SANITIZER__" /tmp/tusc.log; then echo "SANITIZER"; cat /tmp/tusc.log; fi
grep -iE "error|warn" /tmp/tusc.log | head -20 | sed 's/^/TUSCLOG /'
umount /mnt || exit 1
"""

ACK_RE = re.compile(r"(ACK-CREATE \S+ \d+|ACK-OFFSET \S+ \d+ [0-9a-f]{64})")


def missing():
    why = vm.missing()
    if why is None:
        for tool in ("mkfs.ext4", "e2fsck"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                why = f"{tool} is not installed (Debian e2fsprogs)"
    return why


def tool(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def make_fs(path, flavour):
    with open(path, "wb") as f:
        f.truncate(IMAGE_MIB << 20)
    opts = ["-O", "^has_journal"] if flavour == "nojournal" else []
    # inode tables and journal written now, not by ext4lazyinit during the run
    subprocess.run([tool("mkfs.ext4"), "-F", "-q", "-b", "4096", "-E",
                    "lazy_itable_init=0,lazy_journal_init=0", *opts, str(path)],
                   check=True, capture_output=True)


def image():
    img = vm.Image()
    img.add_binary(TUSC_BIN, "/bin/tusc")
    img.add_python()
    img.add_file(VM_DIR / "powercut_client.py", "/powercut_client.py", 0o644)
    img.add_modules(MODULES)
    return img


def mount_opts(flavour):
    return "commit=3600" if flavour == "journal" else "defaults"


def upload_and_cut(tmp, disk, flavour, case_seed, fsync, kill_after):
    """VM 1. Returns (ACK lines seen before the cut, console text, ERR lines)."""
    img = image()
    script = (UPLOAD_SCRIPT.replace("__MOUNTOPTS__", mount_opts(flavour)).replace("__FSYNC__", fsync).replace("__SEED__", str(case_seed))
              .replace("__UPLOADS__", str(UPLOADS)).replace("__CONCURRENCY__", str(CONCURRENCY)))
    acks, errs = [], []
    with img.start(script, drives=[vm.nbd_drive(disk.socket)]) as machine:
        while len(acks) < kill_after:
            line = machine.readline(LINE_TIMEOUT)
            if line is None:
                break  # the VM ended by itself: a failure, reported below
            m = ACK_RE.search(line)
            if m:
                acks.append(m.group(1))
            elif "ERR " in line:
                errs.append(line)
        disk.freeze()  # the power cut, as close to the last ACK as we can see it
        machine.kill()
        text = machine.text()
    (tmp / "vm1-console.log").write_text(text)
    return acks, text, errs


def check(tmp, disk, flavour, case_seed, acks):
    """VM 2. Returns (exit status, console text)."""
    img = image()
    img.add_bytes("/acks", "\n".join(acks) + "\n")
    script = (CHECK_SCRIPT.replace("__MOUNTOPTS__", mount_opts(flavour)).replace("__SEED__", str(case_seed))
              .replace("__SANITIZER__", "|".join(re.escape(m) for m in SANITIZER_MARKERS)))
    status, text = img.run(script, timeout=VM_TIMEOUT, drives=[vm.nbd_drive(disk.socket)])
    (tmp / "vm2-console.log").write_text(text)
    return status, text


def summary(text):
    for line in text.splitlines():
        at = line.find("CHECK-SUMMARY ")
        if at >= 0:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[at:])}
    return None


def e2fsck(path, *opts):
    out = subprocess.run([tool("e2fsck"), *opts, str(path)], capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def can_run():
    why = missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"cannot run the power-cut VM: {why}", pytrace=False)
        pytest.skip(why)


@pytest.mark.parametrize("flavour,mode,fsync", CASES,
                         ids=[f"{f}-{m}-fsync_{s}" for f, m, s in CASES])
def test_power_cut(can_run, flavour, mode, fsync):
    case_seed = random.Random(f"{SEED}-{flavour}-{mode}-{fsync}").randrange(1 << 32)
    rng = random.Random(case_seed)
    kill_after = rng.randint(*KILL_AFTER)
    print(f"\nTUSC_POWERCUT_SEED={SEED} case {flavour}/{mode}/fsync={fsync}: "
          f"case seed {case_seed}, power cut after {kill_after} ACK lines")
    tmp = Path(tempfile.mkdtemp(prefix="tusc-pc-"))  # short: a unix socket lives here
    try:
        run_case(tmp, flavour, mode, fsync, case_seed, rng, kill_after)
    finally:
        if os.environ.get("TUSC_POWERCUT_KEEP"):
            print(f"kept: {tmp} (fs.img after recovery, cut.img, the consoles)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_case(tmp, flavour, mode, fsync, case_seed, rng, kill_after):
    fs = tmp / "fs.img"
    make_fs(fs, flavour)
    t0 = time.monotonic()

    disk = nbd_disk.NbdDisk(fs.read_bytes(), tmp)
    disk.start()
    try:
        acks, text1, errs = upload_and_cut(tmp, disk, flavour, case_seed, fsync, kill_after)
    finally:
        disk.stop()
    assert "POWERCUT-READY" in text1, text1[-6000:]
    assert not errs, errs
    assert len(acks) >= kill_after, ("the VM ended before the power cut", text1[-6000:])
    assert not disk.errors, disk.errors
    cut, kept, pending = disk.power_cut(rng, mode)
    stats = dict(disk.stats)
    del disk
    t1 = time.monotonic()
    creates = sum(a.startswith("ACK-CREATE") for a in acks)
    print(f"VM 1: {t1 - t0:.0f} s; {creates} creates and {len(acks) - creates} offsets "
          f"acknowledged; disk {stats}; power cut ({mode}) kept {kept} of {pending} "
          f"unflushed writes")

    fs.write_bytes(cut)
    if os.environ.get("TUSC_POWERCUT_KEEP"):
        (tmp / "cut.img").write_bytes(cut)
    del cut
    if flavour == "nojournal":
        rc, out = e2fsck(fs, "-fy")
        print(f"e2fsck -fy after the power cut: status {rc}\n{out[-3000:]}")
        assert rc < 4, f"e2fsck could not repair the filesystem (status {rc})\n{out}"

    disk = nbd_disk.NbdDisk(fs.read_bytes(), tmp)
    disk.start()
    try:
        status, text2 = check(tmp, disk, flavour, case_seed, acks)
    finally:
        disk.stop()
    assert not disk.errors, disk.errors
    fs.write_bytes(disk.image())
    del disk
    rc, out = e2fsck(fs, "-fn")
    print(f"VM 2: {time.monotonic() - t1:.0f} s; e2fsck -fn after recovery: status {rc}"
          f"\n{out[-2000:]}")
    lost = [line for line in text2.splitlines() if "LOST " in line]
    for line in text2.splitlines():
        if re.search(r"(EXTRA|CHECK-SUMMARY|DMESG|TUSCLOG|TUSC-STATUS)", line):
            print(line)
    for line in lost[:10]:
        print(line)
    if len(lost) > 10:
        print(f"... {len(lost) - 10} more LOST lines")

    assert status == 0, text2[-8000:]
    res = summary(text2)
    assert res is not None, text2[-8000:]
    assert "SANITIZER" not in text2, text2[-20000:]
    assert "TUSC-STATUS=0" in text2, text2[-8000:]
    assert res["uploads"] == creates, res
    if fsync == "always":
        assert res["lost_uploads"] == 0 and res["lost_offsets"] == 0, (
            f"acknowledged data lost on a power cut (TUSC_POWERCUT_SEED={SEED}, "
            f"case seed {case_seed}): {res}\n"
            + "\n".join(l for l in text2.splitlines() if "LOST" in l))
        if os.environ.get("TUSC_POWERCUT_STRICT"):
            # Bytes past the last acknowledged offset that are not the client's (zeros
            # after a power cut: ext4 committed a size whose data it had not written).
            # Not part of the contract today; a resuming client would take them as
            # uploaded (docs/durability.md, "Power-cut test").
            assert res["extra_mismatch"] == 0, res
    else:
        # the control: nothing synced, nothing flushed, the cut keeps no unflushed
        # write: the uploads acknowledged are gone
        assert res["lost_uploads"] > 0, ("the negative control lost nothing: the test "
                                         "cannot see a missing sync", res)
