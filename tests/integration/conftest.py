"""Integration-test harness: runs the real tusc binary on an ephemeral loopback port.

Every test that asks for `server` (or starts more through `tusc`) gets its own process
with its own upload directory. The binary reports its port on stdout
("tusc: listening on <host>:<port>"); we wait for that line with a deadline, never
with a sleep. At teardown the process is stopped with SIGTERM by PID, and the test
FAILS if it did not exit with 0 or if its stderr holds a sanitizer report. Stderr is
kept in a file and attached to the report of a failing test.

Two ways to talk HTTP:
  - `Server.request()` — http.client, for ordinary requests;
  - `RawConn` — exact bytes on a socket plus a small response parser, for pipelining,
    100-continue, chunked bodies, interrupted bodies and malformed requests.

Run: TUSC_BIN=/path/to/tusc /usr/bin/python3 -m pytest -q tests/integration
"""
import base64
import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUSC_BIN = os.environ.get("TUSC_BIN", str(REPO / "build-asan" / "tusc"))

# Deadlines. Generous because the suite runs under ASan on a shared 2-core machine;
# they only bound how long a broken server can hang the suite.
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0
IO_TIMEOUT = 15.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")
LISTEN_RE = re.compile(r"tusc: listening on (?:unix:(\S+)|(\S+):(\d+))\s*$")

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


def sanitizer_env():
    env = dict(os.environ)
    # Keep what the caller set; otherwise ask for leak checks and a non-zero exit.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def deadline_poll(fn, timeout, interval=0.02, what="condition"):
    """Calls fn() until it returns a truthy value or the deadline passes.

    Used to wait for server-side state (an offset becoming stable); the interval is a
    polling period, not a guess at how long something takes."""
    end = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def random_file(path, size):
    """Writes `size` random bytes to `path` in 4 MiB pieces; returns their sha256 hex."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# responses


class Response:
    """A parsed HTTP response (from http.client or from RawConn)."""

    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), as received
        self.body = body
        self.version = version

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def error_code(self):
        """The tusd error code of an error body ("ERR_X: message\\n"), or None."""
        m = re.match(r"^(ERR_[A-Z_]+): ", self.text)
        return m.group(1) if m else None

    def __repr__(self):
        hs = "".join(f"\n  {k}: {v}" for k, v in self.headers)
        body = self.body[:300]
        return f"<{self.status} {self.reason}{hs}\n  body={body!r}>"


def assert_error(resp, status, code=None):
    """Asserts status, tusd error-code and the text/plain `ERR_CODE: message\\n` body."""
    assert resp.status == status, resp
    if code is not None:
        assert resp.error_code() == code, resp
        ctype = resp.header("Content-Type") or ""
        assert ctype.lower().startswith("text/plain"), resp
        assert re.fullmatch(r"ERR_[A-Z_]+: [^\r\n]+\n", resp.text), resp


class ConnectionClosed(Exception):
    pass


class RawConn:
    """One client socket: send exact bytes, parse responses one at a time.

    Bytes read past the end of a response stay buffered for the next one, so
    pipelined responses can be read in order."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    @classmethod
    def unix(cls, path, timeout=IO_TIMEOUT):
        """The same over a unix socket (-unix-sock)."""
        c = cls.__new__(cls)
        c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.sock.settimeout(timeout)
        c.sock.connect(str(path))
        c.buf, c.eof = b"", False
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def _fill(self):
        if self.eof:
            raise ConnectionClosed("connection closed by server")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError as e:
            self.eof = True
            raise ConnectionClosed(f"connection reset: {e}") from e
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by server")
        self.buf += data

    def _read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, method="GET"):
        """Reads the next response (a 1xx interim response is returned on its own)."""
        status_line = self._read_line().decode("latin-1")
        m = re.match(r"^(HTTP/1\.[01]) (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise AssertionError(f"malformed status line {status_line!r}")
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = []
        while True:
            line = self._read_line()
            if line == b"":
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise AssertionError(f"malformed header line {line!r}")
            headers.append((name.strip(), value.strip()))
        resp = Response(status, reason, headers, b"", version)
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if "chunked" in te:
            body = b""
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line() != b"":
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n"
            resp.body = body
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            resp.body = self.read_until_close()
        return resp

    def read_final_response(self, method="GET"):
        """Skips interim 1xx responses; returns (final response, list of interim)."""
        interim = []
        while True:
            r = self.read_response(method)
            if r.status >= 200:
                return r, interim
            interim.append(r)

    def read_until_close(self):
        while not self.eof:
            try:
                self._fill()
            except ConnectionClosed:
                break
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout):
        """True if the server closes the connection (EOF/RST) within `timeout`
        without sending anything more."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
            if data:
                self.buf += data
                return False
            self.eof = True
            return True
        except ConnectionResetError:
            self.eof = True
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)


def build_request(method, target, headers=None, body=b"", host="127.0.0.1",
                  content_length="auto"):
    """Exact request bytes. `headers` is a list of (name, value) or a dict; a None
    value drops the header. Adds Host unless given. content_length: "auto" adds
    Content-Length for a body (or for POST/PATCH/PUT) unless a Content-Length or
    Transfer-Encoding header is given; an int sends that value whatever the body is;
    None sends none."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hs}
    if "host" not in names:
        hs.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode()
    if "content-length" not in names and "transfer-encoding" not in names:
        if content_length == "auto":
            if body or method in ("POST", "PATCH", "PUT"):
                hs.append(("Content-Length", str(len(body))))
        elif content_length is not None:
            hs.append(("Content-Length", str(int(content_length))))
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in hs if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------------------
# the server process


class TuscServer:
    def __init__(self, workdir, args, upload_dir=None, name="tusc"):
        self.workdir = Path(workdir)
        self.upload_dir = Path(upload_dir) if upload_dir else self.workdir / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.name = name
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self.unix_path = None
        self.returncode = None
        self.stderr_path = None
        self.stdout_lines = []
        self._reader = None
        self.base_path = "/files/"
        for i, a in enumerate(self.args):
            if a.lstrip("-").split("=")[0] == "base-path":
                bp = a.split("=", 1)[1] if "=" in a else self.args[i + 1]
                self.base_path = "/" + bp.strip("/") + "/" if bp.strip("/") else "/"

    # -- lifecycle -------------------------------------------------------------------

    def command(self):
        return [TUSC_BIN, "-port", "0", "-host", "127.0.0.1", "-upload-dir",
                str(self.upload_dir), "-workers", "2"] + self.args

    def start(self, command=None):
        n = 0
        while True:
            self.stderr_path = self.workdir / f"{self.name}-stderr-{n}.log"
            if not self.stderr_path.exists():
                break
            n += 1
        cmd = command or self.command()
        self.cmd = cmd
        self.port = None
        self.returncode = None
        # The event and the parsed address belong to this process only: a previous
        # process's reader (e.g. after a SIGKILL) may still hit EOF and must not wake
        # this start() before the new process has reported its port.
        ready = threading.Event()
        listening = {}
        with open(self.stderr_path, "wb") as errf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=errf, env=sanitizer_env(), cwd=self.workdir)
        self._reader = threading.Thread(target=self._read_stdout,
                                        args=(self.proc, ready, listening), daemon=True)
        self._reader.start()
        if not ready.wait(STARTUP_TIMEOUT):
            self.kill()
            raise AssertionError(f"tusc did not report its port within {STARTUP_TIMEOUT}s\n"
                                 f"cmd: {cmd}\nstderr:\n{self.stderr()}")
        if not listening:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
            self.returncode = rc
            raise AssertionError(f"tusc exited with {rc} before listening\ncmd: {cmd}\n"
                                 f"stdout: {self.stdout_lines}\nstderr:\n{self.stderr()}")
        self.host = listening.get("host", self.host)
        self.unix_path = listening.get("unix_path", self.unix_path)
        self.port = listening["port"]
        return self

    def _read_stdout(self, proc, ready, listening):
        """Reads one process's stdout; fills `listening` from its first "listening on"
        line and sets `ready` then or at EOF (the process is gone)."""
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            m = LISTEN_RE.search(line)
            if m and not ready.is_set():
                if m.group(1):
                    listening["unix_path"] = m.group(1)
                    listening["port"] = 0
                else:
                    host = m.group(2)
                    if host.startswith("["):
                        host = host[1:-1]
                    listening["host"] = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
                    listening["port"] = int(m.group(3))
                ready.set()
        proc.stdout.close()
        ready.set()

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the process by PID and waits. Returns the exit code (None if it had
        to be killed)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.returncode = None
                self.proc = None
                raise AssertionError(f"tusc (pid) did not exit within {timeout}s of signal {sig}\n"
                                     f"stderr:\n{self.stderr()}")
        self.returncode = self.proc.returncode
        if self._reader:
            self._reader.join(timeout=5)
        self.proc = None
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text("utf-8", "replace")

    def all_stderr(self):
        out = []
        for p in sorted(self.workdir.glob(f"{self.name}-stderr-*.log")):
            out.append(f"--- {p.name} ---\n" + p.read_text("utf-8", "replace"))
        return "\n".join(out)

    def sanitizer_reports(self):
        text = self.all_stderr()
        return [m for m in SANITIZER_MARKERS if m in text]

    # -- HTTP --------------------------------------------------------------------------

    @property
    def origin(self):
        return f"http://{self.host}:{self.port}"

    def url(self, path=""):
        return self.origin + path

    def request(self, method, path, headers=None, body=None, tus=True, timeout=IO_TIMEOUT):
        """One request on a fresh connection via http.client. `headers` dict; a None
        value removes a default (Tus-Resumable)."""
        hs = dict(TUS_HEADERS) if tus else {}
        hs.update(headers or {})
        hs = {k: v for k, v in hs.items() if v is not None}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hs)
            r = conn.getresponse()
            body = r.read()
            return Response(r.status, r.reason, list(r.getheaders()), body)
        finally:
            conn.close()

    def raw(self, timeout=IO_TIMEOUT):
        return RawConn(self.port, self.host, timeout)

    def raw_request(self, data, method="GET", timeout=IO_TIMEOUT):
        """Sends exact bytes on a new connection and returns the final response."""
        with self.raw(timeout) as c:
            c.send(data)
            r, _ = c.read_final_response(method)
            return r

    # -- tus helpers ----------------------------------------------------------------

    def create(self, length=None, metadata=None, headers=None, body=None, expect=201):
        """POST to the base path; returns the upload's path (e.g. /files/<id>)."""
        hs = {}
        if length is not None:
            hs["Upload-Length"] = str(length)
        if metadata is not None:
            hs["Upload-Metadata"] = metadata
        if body is not None:
            hs["Content-Type"] = OCTET
        hs.update(headers or {})
        r = self.request("POST", self.base_path, hs, body)
        assert r.status == expect, r
        if expect != 201:
            return r
        loc = r.header("Location")
        assert loc, r
        return urllib.parse.urlsplit(loc).path

    def patch(self, path, offset, data, headers=None):
        hs = {"Upload-Offset": str(offset), "Content-Type": OCTET}
        hs.update(headers or {})
        return self.request("PATCH", path, hs, data)

    def head(self, path, headers=None):
        return self.request("HEAD", path, headers)

    def offset(self, path):
        r = self.head(path)
        assert r.status == 200, r
        return int(r.header("Upload-Offset"))

    def download(self, path, headers=None):
        return self.request("GET", path, headers, tus=False)

    def files_of(self, upload_path):
        """Every file in the upload dir whose name starts with the upload's id."""
        uid = upload_path.rstrip("/").rsplit("/", 1)[-1]
        found = []
        for root, _dirs, files in os.walk(self.upload_dir):
            for f in files:
                if f.startswith(uid):
                    found.append(Path(root) / f)
        return found

    def data_file(self, upload_path):
        uid = upload_path.rstrip("/").rsplit("/", 1)[-1]
        hits = [p for p in self.files_of(upload_path) if p.name == uid]
        assert len(hits) == 1, f"data file of {uid}: {hits}"
        return hits[0]


def upload_id(upload_path):
    return upload_path.rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------
# fixtures and report hooks


@pytest.fixture(scope="session")
def rgw_factory(tmp_path_factory):
    """A real S3 server (Ceph RGW, tests/s3/rgw.py): rgw_factory(min_part_size) gives
    the session's RGW with that multipart minimum, started on first use."""
    import sys
    sys.path.insert(0, str(REPO / "tests" / "s3"))
    import rgw as rgw_module
    if not rgw_module.ceph_installed():
        pytest.skip("Ceph RGW is not installed (scripts/install-deps.sh test)")
    pool = rgw_module.RgwPool(tmp_path_factory)
    yield pool.get
    pool.stop_all()


@pytest.fixture(scope="session")
def rgw(rgw_factory):
    """The session's RGW with S3's real 5 MiB multipart minimum."""
    return rgw_factory(5 * 1024 * 1024)


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(TUSC_BIN, os.X_OK):
        pytest.fail(f"tusc binary not found or not executable: {TUSC_BIN} "
                    f"(set TUSC_BIN)", pytrace=False)


@pytest.fixture
def tusc(request, tmp_path):
    """Factory: tusc(*flags, upload_dir=None, start=True) -> TuscServer.

    Servers are stopped by PID at teardown; a non-zero exit or a sanitizer report
    fails the test."""
    servers = []
    request.node._tusc_servers = servers

    def start(*flags, upload_dir=None, start=True, name=None):
        name = name or f"tusc{len(servers)}"
        wd = tmp_path / name
        wd.mkdir(exist_ok=True)
        srv = TuscServer(wd, flags, upload_dir=upload_dir, name=name)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield start

    problems = []
    for srv in servers:
        try:
            rc = srv.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if getattr(srv, "expect_exit", None) is not None:
            if rc != srv.expect_exit:
                problems.append(f"{srv.name}: exit code {rc}, expected {srv.expect_exit}")
        elif srv.stderr_path is not None and rc not in (0, None):
            problems.append(f"{srv.name}: exit code {rc} after SIGTERM (expected 0)")
        reports = srv.sanitizer_reports()
        if reports:
            problems.append(f"{srv.name}: sanitizer report in stderr: {reports}")
    if problems:
        text = "\n".join(problems)
        for srv in servers:
            text += f"\n{srv.all_stderr()[-20000:]}"
        pytest.fail(text, pytrace=False)


@pytest.fixture
def server(tusc):
    """A tusc with default flags."""
    return tusc()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in getattr(item, "_tusc_servers", []):
            text = srv.all_stderr()
            if text:
                rep.sections.append((f"{srv.name} stderr ({srv.workdir})", text[-20000:]))
