"""No client can stall the others.

Each test puts a real attack in place against the real binary and then checks that an
unrelated client is still answered within MARGIN seconds, far below the stall the
attack causes without the guard (tens of seconds to minutes):

  - a client that disconnects while its pre-create hook runs has the hook's whole
    process group killed (the hook writes its PIDs; we poll until they are gone);
  - hooks are bounded by -hooks-max-processes: excess pre-create hooks wait in a
    bounded queue, beyond it 503 ERR_HOOKS_BUSY with Retry-After; HEAD requests and,
    once the attackers leave, POSTs are served at once;
  - a flood of abandoned wrong-password requests is dropped instead of hashed, so a
    good login right after it is answered at once;
  - repeated failed logins from one address get 429 ERR_TOO_MANY_LOGIN_FAILURES with
    Retry-After (other addresses are unaffected), and the per-loop queue of password
    checks is bounded (503 ERR_AUTH_BUSY).

Different client addresses are different loopback addresses (127.0.0.x source
addresses), never anything outside the machine.
"""
import select
import socket
import ssl
import time

import pytest

from conftest import assert_error, b64, build_request, deadline_poll
from test_auth import make_hash
from test_tls import client_ctx, pki, tls_sock  # noqa: F401 (pki is a fixture)

# Generous: under ASan on a loaded 2-core machine; the stalls tested are far longer.
MARGIN = 8.0
ATTACKER = "127.0.0.2"


def connect(srv, source="127.0.0.1", timeout=30.0):
    s = socket.create_connection((srv.host, srv.port), timeout=timeout,
                                 source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def alive(pid):
    """A process that exists and is not a zombie (zombies of reparented children wait
    for a reaper we do not control in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def metric(srv, name):
    r = srv.request("GET", "/metrics", tus=False)
    assert r.status == 200, r
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def read_response_head(sock, timeout):
    """Reads one whole (small) response; returns (status, headers dict, body) or None
    when the server closed without answering."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


# --------------------------------------------------------------------------------------
# hooks

STALL_HOOK = """#!/bin/sh
# Upload-Length 1 passes at once; anything else stalls (with a child in the group).
cat > /dev/null
if [ "$TUS_SIZE" = "1" ]; then echo '{}'; exit 0; fi
sleep 300 &
echo "$$ $!" > "$HOOK_PIDS/$$.pids"
wait
"""


@pytest.fixture
def stall_hooks(tmp_path, monkeypatch):
    d = tmp_path / "hooks"
    d.mkdir()
    script = d / "pre-create"
    script.write_text(STALL_HOOK)
    script.chmod(0o755)
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("HOOK_PIDS", str(pids))
    return d, pids


def hook_pids(pids_dir):
    out = []
    for p in pids_dir.glob("*.pids"):
        text = p.read_text().split()
        if len(text) == 2:
            out.append([int(x) for x in text])
    return out


def post_head(srv, length):
    return build_request("POST", srv.base_path, {"Tus-Resumable": "1.0.0",
                                                 "Upload-Length": str(length)},
                         host=f"127.0.0.1:{srv.port}")


def test_disconnect_kills_blocking_hook(tusc, stall_hooks):
    hooks_dir, pids_dir = stall_hooks
    srv = tusc("-hooks-dir", str(hooks_dir), "-hooks-enabled-events", "pre-create",
               "-hooks-timeout", "600s")
    s = connect(srv)
    s.sendall(post_head(srv, 5))
    found = deadline_poll(lambda: hook_pids(pids_dir), MARGIN, what="the hook's pid file")
    hook, child = found[0]
    assert alive(hook) and alive(child)
    s.close()  # the client goes away while its pre-create hook runs
    deadline_poll(lambda: not alive(hook) and not alive(child), MARGIN,
                  what=f"hook process group {hook} to be killed")
    deadline_poll(lambda: metric(srv, "tusc_hook_cancelled_total") == 1, MARGIN,
                  what="tusc_hook_cancelled_total 1")
    assert metric(srv, "tusc_hooks_running") == 0
    # Nothing was created, and the server goes on.
    assert not list(srv.upload_dir.rglob("*.info"))
    r, took = timed(lambda: srv.request("POST", srv.base_path, {"Upload-Length": "1"}))
    assert r.status == 201, r
    assert took < MARGIN


@pytest.mark.parametrize("goodbye", ["fin", "close_notify"])
def test_disconnect_over_tls_kills_blocking_hook(tusc, stall_hooks, pki, goodbye):
    hooks_dir, pids_dir = stall_hooks
    srv = tusc("-hooks-dir", str(hooks_dir), "-hooks-enabled-events", "pre-create",
               "-hooks-timeout", "600s", "-tls-certificate", pki.path("a.crt"), "-tls-key",
               pki.path("a.key"))
    s = tls_sock(srv, client_ctx(pki.path("a.crt")))
    s.sendall(post_head(srv, 5))
    hook, child = deadline_poll(lambda: hook_pids(pids_dir), MARGIN,
                                what="the hook's pid file")[0]
    if goodbye == "close_notify":
        try:
            s.unwrap()  # TLS close_notify, then the server closes without answering
        except (OSError, ssl.SSLError):
            pass
    s.close()
    deadline_poll(lambda: not alive(hook) and not alive(child), MARGIN,
                  what=f"hook process group {hook} to be killed")


def test_hook_limit_queue_and_busy(tusc, stall_hooks):
    hooks_dir, pids_dir = stall_hooks
    srv = tusc("-hooks-dir", str(hooks_dir), "-hooks-enabled-events", "pre-create",
               "-hooks-timeout", "600s", "-hooks-max-processes", "2", "-workers", "1")
    upload = srv.create(length=1)  # before the attack (its hook passes at once)
    stallers = []
    try:
        for i in range(1, 5):  # 2 run, 2 wait for a slot (one at a time: known order)
            s = connect(srv, ATTACKER)
            s.sendall(post_head(srv, 5))
            stallers.append(s)
            running, waiting = min(i, 2), max(0, i - 2)
            deadline_poll(lambda: metric(srv, "tusc_hooks_running") == running and
                          metric(srv, "tusc_hooks_waiting") == waiting, MARGIN,
                          what=f"{running} hooks running and {waiting} waiting")
        deadline_poll(lambda: len(hook_pids(pids_dir)) == 2, MARGIN, what="2 hook processes")

        # The queue is full: the next blocking hook is refused at once, precisely.
        r, took = timed(lambda: srv.request("POST", srv.base_path, {"Upload-Length": "1"}))
        assert_error(r, 503, "ERR_HOOKS_BUSY")
        assert r.text == "ERR_HOOKS_BUSY: too many hooks running or waiting; retry later\n"
        assert r.header("Retry-After") == "1"
        assert took < MARGIN
        assert metric(srv, "tusc_hook_busy_total") == 1

        # Requests without hooks are not held up at all.
        r, took = timed(lambda: srv.head(upload))
        assert r.status == 200 and r.header("Upload-Offset") == "0", r
        assert took < MARGIN
        # The waiting ones leave first: they are dropped without ever running.
        for s in stallers[2:]:
            s.close()
        deadline_poll(lambda: metric(srv, "tusc_hooks_waiting") == 0, MARGIN,
                      what="waiting hooks to be dropped")
        assert metric(srv, "tusc_hooks_running") == 2
    finally:
        for s in stallers:
            s.close()
    # The running ones' clients left too: their process groups are killed.
    deadline_poll(lambda: metric(srv, "tusc_hooks_running") == 0, MARGIN,
                  what="hook slots to free up")
    deadline_poll(lambda: not any(alive(p) for pair in hook_pids(pids_dir) for p in pair),
                  MARGIN, what="every stalled hook's processes to be gone")
    assert len(hook_pids(pids_dir)) == 2  # the two that waited never ran
    assert metric(srv, "tusc_hook_cancelled_total") == 4
    r, took = timed(lambda: srv.request("POST", srv.base_path, {"Upload-Length": "1"}))
    assert r.status == 201, r
    assert took < MARGIN


# --------------------------------------------------------------------------------------
# password checks

@pytest.fixture
def slow_htpasswd(tmp_path):
    """'slow' has a bcrypt cost of 13 (about half a second per check), so a queue of
    wrong-password checks is a long stall; 'alice' is cheap."""
    path = tmp_path / "users.htpasswd"
    slow = make_hash("$2b$", "slow-pw", 13)
    alice = make_hash("$2b$", "alice-pw", 5)
    path.write_text(f"slow:{slow}\nalice:{alice}\n")
    return path


def basic(user, pw):
    return "Basic " + b64(f"{user}:{pw}")


def auth_post(srv, auth):
    return build_request("POST", srv.base_path, {"Tus-Resumable": "1.0.0", "Upload-Length": "1",
                                                 "Authorization": auth},
                         host=f"127.0.0.1:{srv.port}")


def login(srv, source="127.0.0.1", user="alice", pw="alice-pw"):
    s = connect(srv, source)
    try:
        s.sendall(auth_post(srv, basic(user, pw)))
        return read_response_head(s, 60)
    finally:
        s.close()


def test_abandoned_wrong_password_flood_does_not_delay_login(tusc, slow_htpasswd):
    srv = tusc("-auth-htpasswd", str(slow_htpasswd))
    # 300 wrong-password requests whose clients leave at once: hashed one by one they
    # would hold every later login for minutes.
    for i in range(300):
        s = connect(srv, ATTACKER)
        s.sendall(auth_post(srv, basic("slow", f"guess-{i}")))
        s.close()
    r, took = timed(lambda: login(srv))
    assert r is not None and r[0] == 201, r
    assert took < MARGIN


def test_failed_logins_throttled_per_address(tusc, slow_htpasswd):
    srv = tusc("-auth-htpasswd", str(slow_htpasswd))
    for i in range(10):
        r = login(srv, ATTACKER, pw=f"wrong-{i}")
        assert r[0] == 401, r
    for pw in ("wrong-again", "alice-pw"):  # refused before any hashing, even if right
        status, headers, body = login(srv, ATTACKER, pw=pw)
        assert status == 429, (status, body)
        assert body == (b"ERR_TOO_MANY_LOGIN_FAILURES: too many failed or pending logins "
                        b"from this address; retry later\n")
        assert 1 <= int(headers["retry-after"]) <= 60
    # Another address is not affected.
    r, took = timed(lambda: login(srv))
    assert r[0] == 201, r
    assert took < MARGIN


def test_password_check_queue_bounded(tusc, slow_htpasswd):
    srv = tusc("-auth-htpasswd", str(slow_htpasswd), "-workers", "1")
    # 12 addresses x 8 checks in flight each (the per-address bound): one hashes, 64
    # wait, the rest find the queue full.
    socks = []
    try:
        for a in range(12):
            for i in range(8):
                s = connect(srv, f"127.0.0.{10 + a}")
                s.sendall(auth_post(srv, basic("slow", f"held-{a}-{i}")))
                socks.append(s)
        answered, busy = set(), []

        def collect():
            waiting = [s for s in socks if s not in answered]
            readable, _, _ = select.select(waiting, [], [], 0.2)
            for s in readable:
                answered.add(s)
                resp = read_response_head(s, 5)
                assert resp is not None
                status, headers, body = resp
                if status == 503:
                    assert body == (b"ERR_AUTH_BUSY: too many password checks waiting; "
                                    b"retry later\n")
                    assert headers["retry-after"] == "1"
                    busy.append(s)
                else:
                    assert status == 401, (status, body)
            # 96 - 1 hashing - 64 waiting = 31, less any that got in as hashes ended
            return len(busy) >= 10
        deadline_poll(collect, MARGIN, interval=0, what="503 ERR_AUTH_BUSY answers")
    finally:
        for s in socks:
            s.close()
    # Their clients are gone: the waiting checks are dropped, a login goes through.
    r, took = timed(lambda: login(srv))
    assert r[0] == 201, r
    assert took < MARGIN
