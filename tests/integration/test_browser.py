"""tus-js-client in a real browser: headless Chromium uploads to tusc over TLS, and the
access log proves that the browser chose HTTP/2 by itself (ALPN), nobody asked it to.

The test starts three things on loopback and stops each by PID: tusc with a self-signed
certificate (test_tls.pki), a tiny HTTP server in this process that serves the page, the
tus-js-client browser bundle (tests/clients/node_modules/tus-js-client/dist/tus.js) and
the files to upload, and Chromium (--headless=new, a temporary --user-data-dir,
--ignore-certificate-errors for the self-signed certificate). The page uploads three
files and POSTs its result back to the page server; no DevTools protocol is needed.

Uploads: a small file in one PATCH and a multi-chunk file (chunkSize) at the same time,
then a file aborted after its first chunk and resumed from its URL by a new tus.Upload
(HEAD, then PATCHes from the offset the server reports). A stream reset in the middle of a
PATCH is test_h2.py's business: from a browser its timing cannot be controlled.
Every stored file must have the source's sha256, and every request the browser made
(preflights included) must be logged with proto=HTTP/2.0.

Chromium is Debian's `chromium` (scripts/install-deps.sh test). The test skips when it
is missing, except under CI (CI set in the environment), where it fails."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO
from test_clients import node_clients  # noqa: F401 (fixture: npm ci when node_modules is missing)
from test_tls import pki, tls_server  # noqa: F401 (pki is a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BUNDLE = REPO / "tests" / "clients" / "node_modules" / "tus-js-client" / "dist" / "tus.js"
BROWSER_TIMEOUT = 180  # Chromium's start plus three uploads on a loaded 2-core machine



@pytest.fixture(scope="session")  # before node_clients (session) and pki (module)
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not installed (scripts/install-deps.sh test installs it)",
                        pytrace=False)
        pytest.skip("chromium not installed")
    return CHROMIUM

FILES = {  # name -> size; odd sizes so no chunk boundary lines up by luck
    "small": 100 * 1024 + 3,
    "chunked": 3 * 1024 * 1024 + 5,
    "resumed": 2 * 1024 * 1024 + 7,
}
CHUNK = 512 * 1024
RESUME_CHUNK = 256 * 1024

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tusc browser test</title>
<script src="/tus.js"></script>
<script>
const ENDPOINT = %(endpoint)s;

function report(result) {
  return fetch("/result", {method: "POST", body: JSON.stringify(result)});
}

async function blob(name) {
  const r = await fetch("/data/" + name);
  if (!r.ok) throw new Error("GET /data/" + name + ": " + r.status);
  return await r.blob();
}

// Resolves with the upload's URL on success; rejects on error (no retries: a failure
// must show, not be papered over).
function upload(file, name, options) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(file, Object.assign({
      endpoint: ENDPOINT,
      retryDelays: null,
      metadata: {filename: name},
      onSuccess: () => resolve(u.url),
      onError: reject,
    }, options));
    u.start();
  });
}

// Aborts the upload as soon as its first chunk is acknowledged (tus-js-client's abort:
// no more requests, the upload stays on the server) and resolves with the URL and the
// offset the server had confirmed.
function uploadThenAbort(file, name, chunkSize) {
  return new Promise((resolve, reject) => {
    let done = false;
    const u = new tus.Upload(file, {
      endpoint: ENDPOINT,
      retryDelays: null,
      chunkSize: chunkSize,
      metadata: {filename: name},
      onChunkComplete: (chunk, accepted, total) => {
        if (done) return;
        done = true;
        u.abort().then(() => resolve({url: u.url, accepted: accepted}), reject);
      },
      onSuccess: () => reject(new Error("finished before the abort")),
      onError: reject,
    });
    u.start();
  });
}

async function main() {
  const small = await blob("small");
  const chunked = await blob("chunked");
  const resumed = await blob("resumed");
  // Two uploads at once: on HTTP/2 they share the connection.
  const [smallUrl, chunkedUrl] = await Promise.all([
    upload(small, "small", {}),
    upload(chunked, "chunked", {chunkSize: %(chunk)d}),
  ]);
  const first = await uploadThenAbort(resumed, "resumed", %(resume_chunk)d);
  const resumedUrl = await upload(resumed, "resumed",
                                  {uploadUrl: first.url, chunkSize: %(resume_chunk)d});
  // (Resource Timing's nextHopProtocol would say "h2" here, but it is blank for
  // cross-origin requests without Timing-Allow-Origin: the access log is the witness.)
  return {ok: true, urls: {small: smallUrl, chunked: chunkedUrl, resumed: resumedUrl},
          abortedUrl: first.url, acceptedBeforeAbort: first.accepted};
}

main().then(report, e => report({ok: false, error: String(e && e.stack || e)}));
</script>
"""


class PageServer:
    """Serves the page, the bundle and the files; keeps the first /result POSTed."""

    def __init__(self, page, files):
        self.result = None
        self.got_result = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path == "/":
                    self._send(200, page.encode(), "text/html; charset=utf-8")
                elif path == "/tus.js":
                    self._send(200, BUNDLE.read_bytes(), "text/javascript")
                elif path.startswith("/data/") and path[6:] in files:
                    self._send(200, files[path[6:]], "application/octet-stream")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if self.path == "/result" and not outer.got_result.is_set():
                    outer.result = json.loads(body)
                    outer.got_result.set()
                self._send(204, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start_chromium(binary, url, tmp_path):
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    args = [binary, "--headless=new", f"--user-data-dir={profile}",
            "--ignore-certificate-errors",  # the test's self-signed certificate
            "--no-first-run", "--no-default-browser-check", "--disable-gpu",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--disable-default-apps", "--disable-breakpad",
            "--disable-domain-reliability", "--no-pings", "--mute-audio",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            "--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    args.append(url)
    log = open(tmp_path / "chromium.log", "wb")
    # Its own session, so that stopping it by PID reaches its helper processes too.
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    log.close()
    return proc


def stop_chromium(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    else:  # the browser is gone; its helpers may not be
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def access_lines(srv):
    return [l for l in srv.all_stderr().splitlines() if "event=ResponseOutgoing" in l]


def field(line, name):
    m = re.search(rf"\b{name}=(\S+)", line)
    return m.group(1) if m else None


def test_tus_js_client_in_chromium_uses_h2(chromium, tusc, pki, tmp_path,  # noqa: F811
                                           node_clients):  # noqa: F811
    assert BUNDLE.is_file(), f"{BUNDLE} missing (npm ci in tests/clients)"
    files = {name: os.urandom(size) for name, size in FILES.items()}
    srv = tls_server(tusc, pki)
    endpoint = f"https://127.0.0.1:{srv.port}/files/"
    page = PAGE % {"endpoint": json.dumps(endpoint), "chunk": CHUNK,
                   "resume_chunk": RESUME_CHUNK}
    web = PageServer(page, files)
    browser = None
    try:
        browser = start_chromium(chromium, f"http://127.0.0.1:{web.port}/", tmp_path)
        if not web.got_result.wait(BROWSER_TIMEOUT):
            log = (tmp_path / "chromium.log").read_text(errors="replace")[-5000:]
            raise AssertionError(f"no result from the page within {BROWSER_TIMEOUT}s "
                                 f"(chromium exit {browser.poll()}); chromium log:\n{log}")
    finally:
        if browser is not None:
            stop_chromium(browser)
        web.close()
    result = web.result
    assert result["ok"], result.get("error")

    # The bytes: each upload's data file has its source's sha256.
    paths = {}
    for name, url in result["urls"].items():
        assert url.startswith(endpoint), url
        paths[name] = urllib.parse.urlsplit(url).path
        stored = srv.data_file(paths[name]).read_bytes()
        assert len(stored) == len(files[name]), name
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(files[name]).hexdigest(), name
    assert result["abortedUrl"] == result["urls"]["resumed"], "resumed the same upload"
    assert result["acceptedBeforeAbort"] == RESUME_CHUNK, result

    # The protocol: every request tusc served came from the browser, and each one is
    # logged as HTTP/2 (HTTP/1.1 lines carry no proto= field).
    lines = access_lines(srv)
    assert lines, "no access log lines"
    not_h2 = [l for l in lines if field(l, "proto") != "HTTP/2.0"]
    assert not not_h2, not_h2

    def of(method, path):
        return [l for l in lines if field(l, "method") == method and field(l, "path") == path]

    assert len(of("POST", "/files/")) == 3, "the resumed upload was not created anew"
    for name, path in paths.items():
        patches = of("PATCH", path)
        assert patches, (name, lines)
        # Every PATCH's bytes counted, in the server's own words.
        got = sum(int(field(l, "bytes_in") or 0) for l in patches)
        assert got >= FILES[name], (name, got, patches)
    n_chunks = -(-FILES["chunked"] // CHUNK)
    assert len([l for l in of("PATCH", paths["chunked"]) if field(l, "status") == "204"]) \
        == n_chunks, of("PATCH", paths["chunked"])
    # The resumed upload asked the server where to go on, and sent each byte once.
    heads = of("HEAD", paths["resumed"])
    assert heads and all(field(l, "status") == "200" for l in heads), heads
    resumed = of("PATCH", paths["resumed"])
    assert sum(int(field(l, "bytes_in")) for l in resumed) == FILES["resumed"], resumed
    assert lines.index(heads[-1]) > lines.index(resumed[0]), "HEAD after the first PATCH"
    # The small and the chunked upload ran at the same time on one connection.
    both = of("PATCH", paths["small"]) + of("PATCH", paths["chunked"])
    remotes = {field(l, "remote") for l in both}
    assert len(remotes) == 1, remotes
