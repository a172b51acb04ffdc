"""Helpers for the tusc-upload tests (fixtures are in conftest.py).

Reuses the integration harness (tests/integration/conftest.py: TuscServer, the `tusc`
fixture, deadline_poll, random_file, sanitizer_env) by loading it under its own module
name, so both suites can run in one pytest invocation. Test modules import from here,
never from `conftest`, whose name two directories share.
"""
import hashlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

_spec = importlib.util.spec_from_file_location("tusc_harness",
                                               REPO / "tests" / "integration" / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

deadline_poll = harness.deadline_poll
random_file = harness.random_file
sanitizer_env = harness.sanitizer_env
TUSC_BIN = harness.TUSC_BIN
SANITIZER_MARKERS = harness.SANITIZER_MARKERS

UPLOAD_BIN = os.environ.get("TUSC_UPLOAD_BIN", str(Path(TUSC_BIN).with_name("tusc-upload")))
NODE_DIR = REPO / "bench" / "node"
UPLOAD_TIMEOUT = 240.0


def check_sanitizer(stderr):
    found = [m for m in SANITIZER_MARKERS if m in stderr]
    assert not found, f"sanitizer report from tusc-upload: {found}\n{stderr[-20000:]}"


class Upload:
    """One finished tusc-upload run."""

    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err
        self.summary = None
        self.files = []
        if out.strip().startswith("{"):
            doc = json.loads(out)
            self.summary = doc["summary"]
            self.files = doc["files"]

    def by_outcome(self, outcome):
        return [f for f in self.files if f["outcome"] == outcome]

    def __repr__(self):
        return f"<rc={self.rc} summary={self.summary}\nstderr:\n{self.err[-5000:]}>"


def upload_cmd(url, paths, state, *args):
    return [UPLOAD_BIN, "--json", "--state", str(state), "--progress", "none", *args, url,
            *[str(p) for p in paths]]


def run_upload(url, paths, state, *args, timeout=UPLOAD_TIMEOUT, env=None):
    cmd = upload_cmd(url, paths, state, *args)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          env=env or sanitizer_env(), timeout=timeout)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    check_sanitizer(err)
    return Upload(proc.returncode, out, err)


def make_tree(root, n_small, small_size, large_sizes=(), seed=1):
    """Writes n_small files of small_size bytes spread over nested directories plus the
    large files; returns {relative path: bytes} for the small files and
    {relative path: sha256} for the large ones, in one dict of sha256 hex."""
    rnd = random.Random(seed)
    root = Path(root)
    expect = {}
    for i in range(n_small):
        d = root / f"d{i % 10}" / f"e{(i // 10) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        data = rnd.randbytes(small_size - (i % 7)) + f"#{i}".encode()
        rel = d.relative_to(root) / f"f{i}.dat"
        (root / rel).write_bytes(data)
        expect[str(rel)] = hashlib.sha256(data).hexdigest()
    for k, size in enumerate(large_sizes):
        rel = Path(f"large{k}.bin")
        expect[str(rel)] = random_file(root / rel, size)
    return expect


def tus_metadata(info_path):
    """The MetaData dict of a tusc/tusd .info file."""
    return json.loads(Path(info_path).read_text())["MetaData"]


def server_files(upload_dir):
    """{relativePath or filename metadata: sha256 of the data} for every finished upload in
    a tusc/tusd-style upload dir (final uploads of concatenations included, partials
    skipped)."""
    out = {}
    for info in Path(upload_dir).rglob("*.info"):
        doc = json.loads(info.read_text())
        if doc.get("IsPartial"):
            continue
        meta = doc.get("MetaData") or {}
        name = meta.get("relativePath") or meta.get("filename")
        data = info.with_suffix("")
        h = hashlib.sha256()
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if data.stat().st_size != doc.get("Size"):
            continue  # unfinished (a final's Offset stays 0 in tusd's format)
        assert name not in out, f"two finished uploads for {name}"
        out[name] = h.hexdigest()
    return out


# --------------------------------------------------------------------------------------
# @tus/server


class NodeServer:
    def __init__(self, workdir):
        self.dir = Path(workdir) / "node-uploads"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.port = None
        self.log = Path(workdir) / "node.log"

    def start(self):
        env = dict(os.environ, TUS_DIR=str(self.dir), HOST="127.0.0.1", PORT="0")
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "server.js")], cwd=NODE_DIR,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.logf, env=env)
        ready = threading.Event()

        def read():
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                if "listening on" in line and not ready.is_set():
                    self.port = int(line.strip().rsplit(":", 1)[1])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(harness.STARTUP_TIMEOUT) or self.port is None:
            self.stop()
            raise AssertionError(f"@tus/server did not start:\n{self.log.read_text()}")
        return self

    def url(self, path="/files/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()

    def files(self):
        """{relativePath or filename: sha256} of finished uploads (@tus/file-store keeps
        <id> and <id>.json with metadata, size and offset)."""
        out = {}
        for meta_path in self.dir.glob("*.json"):
            doc = json.loads(meta_path.read_text())
            data = meta_path.with_suffix("")
            if not data.exists() or doc.get("size") is None:
                continue
            if data.stat().st_size != doc["size"]:
                continue
            md = doc.get("metadata") or {}
            if md.get("relativePath") is None and md.get("filename") is None:
                continue  # a partial upload
            name = md.get("relativePath") or md.get("filename")
            h = hashlib.sha256()
            with open(data, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
        return out
