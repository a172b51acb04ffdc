"""A fault-injecting TCP proxy for the uploader tests and the bench.

Sits between tusc-upload and a server on loopback and, per connection, can:
  - add a fixed delay each way (latency, not a bandwidth limit: bytes are queued with a
    due time and sent when it comes, so a long fat pipe stays fat);
  - after N client->server bytes: close both sides ("drop"), send the client a TCP RST
    ("reset"), or stop forwarding in both directions ("stall") until the client gives
    up on the connection;
  - answer a request itself with a canned HTTP response and close ("respond": a 429 or
    503 with Retry-After, as an overloaded server or a load balancer would). With
    `method`, the request answered is the next one with that method on any connection
    (a request starts a read on a connection whose previous exchange is over, which
    holds for curl's one-request-at-a-time HTTP/1.1), otherwise each new connection's
    first request.
The target can be changed while running (a restarted server on a new port).
A fault applies to the next `faults` connections that reach the byte count; later ones
pass through, so a retrying client eventually gets its bytes across. Counters say how
many connections were opened and how many faults were injected.

Stop it with close(); every socket it opened is closed.
"""
import heapq
import socket
import struct
import threading
import time

CHUNK = 65536
WINDOW = 16 << 20  # default bytes in flight per direction and connection


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1", delay=0.0, window=WINDOW):
        self.target = (target_host, target_port)
        self.delay = delay
        # Bytes one direction of one connection may have in the delay line: with a delay
        # this caps a connection at window/delay bytes/s, like a TCP window on a long
        # path, which is what parallel connections work around.
        self.window = window
        self.lock = threading.Lock()
        self.mode = None  # None, "drop", "reset", "stall", "respond"
        self.response = b""
        self.method = None
        self.after = 0
        self.faults = 0
        self.connections = 0
        self.injected = 0
        self.bytes_up = 0
        self.closed = False
        self.socks = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def url(self, path="/files/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def inject(self, mode, after=0, faults=1, response=b"", method=None):
        """The next `faults` connections get `mode` after `after` client bytes."""
        assert mode in ("drop", "reset", "stall", "respond")
        with self.lock:
            self.mode, self.after, self.faults = mode, after, faults
            self.response = response
            self.method = method

    def retarget(self, port, host="127.0.0.1"):
        """New connections go to host:port (open ones keep their server)."""
        self.target = (host, port)

    def close(self):
        self.closed = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    # -- internals ------------------------------------------------------------------

    def _accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            if self._respond(client):
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                self.socks.update((client, server))
            conn = _Conn(self, client, server)
            conn.start()

    def _respond(self, client):
        """"respond" mode: reads one request head and answers it. True if it did."""
        with self.lock:
            if self.mode != "respond" or self.faults <= 0 or self.method is not None:
                return False
            self.faults -= 1
            self.injected += 1
            self.connections += 1
            response = self.response
        try:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(CHUNK)
                if not data:
                    break
                head += data
            client.sendall(response)
        except OSError:
            pass
        finally:
            client.close()
        return True

    def _take_response(self, data):
        """"respond" with a method: the canned response if `data` starts such a request."""
        with self.lock:
            if (self.mode != "respond" or self.method is None or self.faults <= 0 or
                    not data.startswith(self.method + b" ")):
                return None
            self.faults -= 1
            self.injected += 1
            return self.response

    def _take_fault(self):
        """Called when a connection passes the byte count: returns the mode or None."""
        with self.lock:
            if self.mode is None or self.faults <= 0:
                return None
            self.faults -= 1
            self.injected += 1
            return self.mode


class _Conn:
    def __init__(self, proxy, client, server):
        self.p = proxy
        self.client = client
        self.server = server
        self.up_bytes = 0
        self.armed = proxy.mode in ("drop", "reset", "stall") and proxy.faults > 0
        self.after = proxy.after
        self.stalled = threading.Event()
        self.dead = threading.Event()

    def start(self):
        for src, dst, up in ((self.client, self.server, True), (self.server, self.client, False)):
            q = _DelayQueue(self.p.window)
            threading.Thread(target=self._reader, args=(src, q, up), daemon=True).start()
            threading.Thread(target=self._writer, args=(dst, q), daemon=True).start()

    def _kill(self, rst=False):
        if self.dead.is_set():
            return
        self.dead.set()
        if rst:
            try:
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            except OSError:
                pass
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        with self.p.lock:
            self.p.socks.discard(self.client)
            self.p.socks.discard(self.server)

    def _reader(self, src, q, up):
        try:
            while not self.dead.is_set():
                data = src.recv(CHUNK)
                if not data:
                    break
                if self.stalled.is_set():
                    continue  # swallowed: the peer sees no progress
                if up and self.p.method is not None:
                    canned = self.p._take_response(data)
                    if canned is not None:
                        try:
                            self.client.sendall(canned)
                        except OSError:
                            pass
                        self._kill()
                        return
                if up:
                    if self.armed and self.up_bytes + len(data) >= self.after:
                        keep = max(0, self.after - self.up_bytes)
                        mode = self.p._take_fault()
                        self.armed = False
                        if mode is not None:
                            if keep:
                                q.put(time.monotonic() + self.p.delay, data[:keep])
                            with self.p.lock:
                                self.p.bytes_up += keep
                            q.flush_wait()
                            if mode == "stall":
                                self.stalled.set()
                                continue
                            self._kill(rst=(mode == "reset"))
                            return
                    self.up_bytes += len(data)
                    with self.p.lock:
                        self.p.bytes_up += len(data)
                q.put(time.monotonic() + self.p.delay, data)
        except OSError:
            pass
        q.put(0, None)  # end of stream

    def _writer(self, dst, q):
        try:
            while True:
                data = q.get()
                if data is None:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._kill()


class _DelayQueue:
    """Items become available at their due time, in order."""

    def __init__(self, window):
        self.cv = threading.Condition()
        self.items = []
        self.seq = 0
        self.pending = 0
        self.pending_bytes = 0
        self.window = window

    def put(self, due, data):
        with self.cv:
            # Back-pressure: a full window stops the reader instead of growing memory.
            while data is not None and self.pending_bytes and \
                    self.pending_bytes + len(data) > self.window:
                self.cv.wait(0.05)
            heapq.heappush(self.items, (due, self.seq, data))
            self.seq += 1
            self.pending += 1
            self.pending_bytes += len(data) if data else 0
            self.cv.notify_all()

    def get(self):
        with self.cv:
            while True:
                if self.items:
                    due, _, data = self.items[0]
                    now = time.monotonic()
                    if data is None or due <= now:
                        heapq.heappop(self.items)
                        self.pending -= 1
                        self.pending_bytes -= len(data) if data else 0
                        self.cv.notify_all()
                        return data
                    self.cv.wait(due - now)
                else:
                    self.cv.wait()

    def flush_wait(self, timeout=10):
        """Waits until everything queued so far was handed to the writer."""
        end = time.monotonic() + timeout
        with self.cv:
            while self.pending and time.monotonic() < end:
                self.cv.wait(0.05)
