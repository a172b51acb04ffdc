"""A second server on a port (or unix socket) that another process already listens on
must not start: SO_REUSEPORT lets the workers of one tusc share a port, but a second
tusc joining it would silently take half the connections."""
import signal
import socket
import subprocess
import threading

from conftest import (SANITIZER_MARKERS, STOP_TIMEOUT, TUSC_BIN, RawConn, build_request,
                      sanitizer_env)


def run_second(args, cwd):
    """Runs a tusc that is expected to refuse to start; returns (rc, stderr)."""
    p = subprocess.run([TUSC_BIN, "-upload-dir", str(cwd / "second")] + args,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=STOP_TIMEOUT,
                       env=sanitizer_env(), cwd=cwd)
    err = p.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKERS:
        assert m not in err, err
    assert b"listening on" not in p.stdout, p.stdout
    return p.returncode, err


def first_serves_everything(srv, n=20):
    """Every one of n fresh connections reaches the first server: an upload created
    through one connection is found through the next."""
    up = srv.create(length=1)
    for _ in range(n):
        assert srv.head(up).status == 200


def test_second_tusc_on_same_port_exits(tusc, tmp_path):
    srv = tusc()
    rc, err = run_second(["-host", "127.0.0.1", "-port", str(srv.port), "-workers", "2"], tmp_path)
    assert rc != 0
    assert "address already in use" in err.lower(), err
    first_serves_everything(srv)


def test_second_tusc_on_wildcard_exits(tusc, tmp_path):
    srv = tusc()
    rc, err = run_second(["-host", "0.0.0.0", "-port", str(srv.port)], tmp_path)
    assert rc != 0
    assert "address already in use" in err.lower(), err
    first_serves_everything(srv)


def test_foreign_reuseport_listener_refused(tmp_path):
    """A listener of another program with SO_REUSEPORT set (same user) on the port."""
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    try:
        port = other.getsockname()[1]
        rc, err = run_second(["-host", "127.0.0.1", "-port", str(port)], tmp_path)
        assert rc != 0
        assert "address already in use" in err.lower(), err
    finally:
        other.close()


def test_simultaneous_starts_at_most_one_serves(tmp_path):
    """Two tusc processes started at the same instant on one fixed port: never both
    listening (each checks the kernel's listening sockets after binding)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    for round_ in range(5):
        procs = []
        gate = threading.Barrier(2)

        def launch(i):
            gate.wait()
            d = tmp_path / f"r{round_}-{i}"
            d.mkdir()
            procs.append(subprocess.Popen(
                [TUSC_BIN, "-host", "127.0.0.1", "-port", str(port), "-upload-dir", str(d / "up"),
                 "-workers", "2"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=sanitizer_env(), cwd=d))

        threads = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            # Each either prints its listening line or exits; read both outcomes.
            outcomes = []
            for p in procs:
                line = p.stdout.readline()
                outcomes.append(b"listening on" in line)
            assert sum(outcomes) <= 1, f"round {round_}: both servers listen on port {port}"
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                p.wait(timeout=STOP_TIMEOUT)
                p.stdout.close()
                err = p.stderr.read().decode("utf-8", "replace")
                p.stderr.close()
                for m in SANITIZER_MARKERS:
                    assert m not in err, err


def unix_post(path):
    with RawConn.unix(path) as c:
        c.send(build_request("POST", "/files/", [("Host", "uploads.example"),
                                                 ("Tus-Resumable", "1.0.0"),
                                                 ("Upload-Length", "2")]))
        return c.read_response("POST").status


def test_second_tusc_on_live_unix_socket_exits(tusc, tmp_path):
    sock_path = tmp_path / "tusc.sock"
    srv = tusc("-unix-sock", str(sock_path))
    rc, err = run_second(["-unix-sock", str(sock_path)], tmp_path)
    assert rc != 0
    assert "address already in use" in err.lower(), err
    assert sock_path.exists()
    assert unix_post(str(sock_path)) == 201
    assert srv.proc.poll() is None


def test_stale_unix_socket_is_replaced(tusc, tmp_path):
    """A socket file left by a killed server (nobody accepts on it) is not in use."""
    sock_path = tmp_path / "tusc.sock"
    first = tusc("-unix-sock", str(sock_path), name="first")
    first.kill()
    first.expect_exit = -signal.SIGKILL
    assert sock_path.exists()
    second = tusc("-unix-sock", str(sock_path), name="second")
    assert unix_post(str(sock_path)) == 201
    assert second.proc.poll() is None
