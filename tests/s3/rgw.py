#!/usr/bin/python3
"""rgw — a single-node Ceph RGW (the S3 server of tusc's tests), started from nothing.

One monitor, one memstore OSD and radosgw (beast on 127.0.0.1:<free port>) as plain
background processes; configuration, data, logs and pid files all live under one
directory; everything is stopped by PID. Recipe and facts: docs S3-TESTING.md
(auth none, pool size 1, all six ms_*_mode = crc or radosgw hangs, paxos propose
interval 0.05; memstore larger than anything a test writes).

Uses:
  - pytest:   tests/integration/conftest.py's session fixtures: `rgw` (RGW's real
              5 MiB multipart minimum) and `rgw_factory(min_part_size)` (one RGW per
              minimum, shared by the session). An Rgw has .endpoint, .port, .env()
              (the variables below), .client() (boto3, an independent plain S3 client),
              .stop_radosgw() / .start_radosgw() (an S3 outage), .stop().
  - shell:    python3 tests/s3/rgw.py start DIR [--min-part-size N]  → prints
              `export VAR=value` lines; python3 tests/s3/rgw.py stop DIR.
  - a command: python3 tests/s3/rgw.py run [--min-part-size N] -- CMD ARGS...
              starts RGW in a temp dir, runs CMD with the variables exported, stops
              RGW, exits with CMD's status (77, "skipped", when Ceph is not installed).

Variables: TUSC_S3_ENDPOINT (http://127.0.0.1:port), TUSC_S3_BUCKET (created, empty),
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (us-east-1),
TUSC_S3_MIN_PART_SIZE (RGW's multipart minimum as configured), TUSC_RGW_DIR.

Start-up time (from nothing to a bucket) is printed on stderr: about 1.5–3 s here.
Deadlines everywhere, no fixed sleeps: each step polls its condition.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

ACCESS_KEY = "TUSCTESTACCESSKEY000"
SECRET_KEY = "tusc/test/secret/key/0000000000000000000"
BUCKET = "tusc-test"
REGION = "us-east-1"
DEFAULT_MIN_PART = 5 * 1024 * 1024
START_TIMEOUT = 90.0  # a loaded 2-core CI machine; a healthy start takes ~2 s
STOP_TIMEOUT = 20.0
MEMSTORE_BYTES = 6 * 1024 * 1024 * 1024  # virtual until used; larger than any test


class RgwError(Exception):
    pass


def ceph_installed():
    return all(shutil.which(b) for b in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin",
                                          "monmaptool", "ceph"))


def free_port():
    """An ephemeral loopback port (Linux's range, 32768+, is outside Ceph's 6800-7300)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(fn, deadline, what, proc_check=None):
    while True:
        if proc_check is not None:
            proc_check()
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RgwError("timed out waiting for " + what)
        time.sleep(0.02)


class Rgw:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.conf = os.path.join(self.root, "ceph.conf")
        self.procs = {}  # name -> Popen (only in the process that started them)
        self.port = None
        self.min_part_size = DEFAULT_MIN_PART
        self.startup_seconds = None

    # --- files -------------------------------------------------------------------------

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    def _write_conf(self, mon_port, rgw_port, min_part_size):
        fsid = str(uuid.uuid4())
        ms = "\n".join(f"{k} = crc" for k in (
            "ms_cluster_mode", "ms_service_mode", "ms_client_mode",
            "ms_mon_cluster_mode", "ms_mon_service_mode", "ms_mon_client_mode"))
        text = f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
{ms}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}
osd crush chooseleaf type = 0
osd data = {self._path("osd-$id")}
mon data = {self._path("mon-$id")}
run dir = {self._path("run")}
pid file = {self._path("run", "$name.pid")}
admin socket = {self._path("run", "$name.asok")}
log file = {self._path("log", "$name.log")}
keyring = {self._path("keyring")}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
log to stderr = false
err to stderr = true
mon cluster log file = {self._path("log", "cluster.log")}

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {self._path("rgw")}
rgw multipart min part size = {min_part_size}
rgw enable usage log = false
rgw enable lc threads = false
rgw dns name = localhost
"""
        with open(self.conf, "w") as f:
            f.write(text)
        with open(self._path("keyring"), "w"):
            pass
        with open(self._path("state.json"), "w") as f:
            json.dump({"port": rgw_port, "mon_port": mon_port, "min_part_size": min_part_size}, f)
        return fsid

    def _run(self, args, timeout=30.0, check=True):
        p = subprocess.run(args, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RgwError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p

    def _spawn(self, name, args):
        log = open(self._path("log", name + ".out"), "w")
        p = subprocess.Popen(args, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = p
        with open(self._path("pids"), "a") as f:
            f.write(f"{name} {p.pid}\n")
        return p

    def _check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = ""
                for fn in (name + ".out",):
                    try:
                        with open(self._path("log", fn)) as f:
                            tail += f.read()[-2000:]
                    except OSError:
                        pass
                raise RgwError(f"{name} exited with {p.returncode}: {tail}")

    # --- start / stop -------------------------------------------------------------------

    @classmethod
    def start(cls, root, min_part_size=DEFAULT_MIN_PART, quiet=False):
        if not ceph_installed():
            raise RgwError("Ceph is not installed (ceph-mon ceph-osd radosgw ceph-common)")
        self = cls(root)
        os.makedirs(self.root, exist_ok=True)
        for d in ("run", "log", "rgw", "mon-a", "osd-0"):
            os.makedirs(self._path(d), exist_ok=True)
        self.min_part_size = min_part_size
        t0 = time.monotonic()
        deadline = t0 + START_TIMEOUT
        try:
            self._start(deadline, min_part_size)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        if not quiet:
            print(f"rgw: started in {self.startup_seconds:.2f} s on 127.0.0.1:{self.port} "
                  f"(dir {self.root})", file=sys.stderr)
        return self

    def _start(self, deadline, min_part_size):
        mon_port = free_port()
        rgw_port = free_port()
        while rgw_port == mon_port:
            rgw_port = free_port()
        self.port = rgw_port
        fsid = self._write_conf(mon_port, rgw_port, min_part_size)
        c = ["-c", self.conf]
        monmap = self._path("monmap")
        self._run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
                   "--fsid", fsid, monmap])
        self._run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", monmap])
        self._spawn("mon.a", ["ceph-mon", *c, "-f", "-i", "a"])
        ceph = ["ceph", *c, "--connect-timeout", "20"]
        osd_id = self._run(ceph + ["osd", "create"], timeout=max(1.0, deadline - time.monotonic()),
                           ).stdout.strip()
        if osd_id != "0":
            raise RgwError(f"ceph osd create gave id {osd_id!r}, want 0")
        self._run(["ceph-osd", *c, "--mkfs", "-i", "0"])
        self._spawn("osd.0", ["ceph-osd", *c, "-f", "-i", "0"])
        self._spawn("client.rgw", ["radosgw", *c, "-f", "-n", "client.rgw"])
        _poll(self._http_up, deadline, "radosgw to answer HTTP", self._check_alive)
        self._run(["radosgw-admin", *c, "-n", "client.admin", "user", "create", "--uid", "tusc",
                   "--display-name", "tusc tests", "--access-key", ACCESS_KEY, "--secret",
                   SECRET_KEY], timeout=max(1.0, deadline - time.monotonic()))
        _poll(self._create_bucket, deadline, "the bucket to be created", self._check_alive)

    def _http_up(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer: the frontend is up
        except OSError:
            return False

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def _create_bucket(self):
        try:
            self.client().create_bucket(Bucket=BUCKET)
            return True
        except Exception as e:  # a pool still being created answers 5xx for a moment
            code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou",):
                return True
            return False

    def stop(self):
        """Stops every daemon we started (pids file) one by one, radosgw first and the
        monitor last (an OSD whose monitor is gone waits 5 s to say goodbye)."""
        pids = []
        try:
            with open(self._path("pids")) as f:
                for line in f:
                    name, pid = line.split()
                    # A daemon restarted (start_radosgw) keeps only its last pid.
                    pids = [(n, p) for n, p in pids if n != name] + [(name, int(pid))]
        except OSError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, pid in reversed(pids):
            p = self.procs.get(name)
            if p is not None and p.poll() is not None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            while _pid_alive(pid, p):
                if time.monotonic() > deadline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    if p is not None:
                        p.wait(timeout=5)
                    break
                time.sleep(0.01)
        os.unlink(self._path("pids"))

    def stop_radosgw(self):
        """Stops radosgw only (tests of S3 outages); start_radosgw() brings it back."""
        p = self.procs.get("client.rgw")
        if p is None or p.poll() is not None:
            return
        p.terminate()
        p.wait(timeout=STOP_TIMEOUT)

    def start_radosgw(self):
        """Starts radosgw again on the same port and waits until it answers."""
        deadline = time.monotonic() + START_TIMEOUT
        c = ["-c", self.conf]
        self._spawn("client.rgw", ["radosgw", *c, "-f", "-n", "client.rgw"])
        _poll(self._http_up, deadline, "radosgw to answer HTTP", self._check_alive)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        return {
            "TUSC_S3_ENDPOINT": self.endpoint,
            "TUSC_S3_BUCKET": BUCKET,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "TUSC_S3_MIN_PART_SIZE": str(self.min_part_size),
            "TUSC_RGW_DIR": self.root,
        }

    @classmethod
    def attach(cls, root):
        """An Rgw for a directory started by another process (for `stop`)."""
        self = cls(root)
        with open(self._path("state.json")) as f:
            st = json.load(f)
        self.port = st["port"]
        self.min_part_size = st["min_part_size"]
        return self


def _pid_alive(pid, proc=None):
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Started by another process, now our parent's orphan: a zombie that an init
    # without reaping (some containers) keeps in the table has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class RgwPool:
    """One RGW per multipart minimum, started on first use and stopped at the end of a
    pytest session (tests/integration/conftest.py's `rgw` and `rgw_factory`)."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory
        self.started = {}

    def get(self, min_part_size=DEFAULT_MIN_PART):
        if min_part_size not in self.started:
            root = self.tmp.mktemp(f"rgw-{min_part_size}")
            self.started[min_part_size] = Rgw.start(str(root), min_part_size)
        return self.started[min_part_size]

    def stop_all(self):
        for r in self.started.values():
            r.stop()
        self.started.clear()


def main(argv):
    ap = argparse.ArgumentParser(prog="rgw.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--min-part-size", type=int, default=DEFAULT_MIN_PART)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("--min-part-size", type=int, default=DEFAULT_MIN_PART)
    r.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.cmd == "start":
        rgw = Rgw.start(a.dir, a.min_part_size)
        for k, v in rgw.env().items():
            print(f"export {k}='{v}'")
        return 0
    if a.cmd == "stop":
        Rgw.attach(a.dir).stop()
        return 0
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("run needs a command after --")
    if not ceph_installed():
        print("rgw: Ceph is not installed; skipping " + " ".join(cmd), file=sys.stderr)
        return 77
    root = tempfile.mkdtemp(prefix="tusc-rgw-")
    rgw = None
    try:
        rgw = Rgw.start(root, a.min_part_size)
        env = dict(os.environ)
        env.update(rgw.env())
        return subprocess.call(cmd, env=env)
    finally:
        if rgw is not None:
            rgw.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
