"""Runs inside the kTLS VM (tests/integration/test_ktls_vm.py): a TLS client that controls
exactly which bytes reach the socket together, to hit the moment tusc hands reading to the
kernel. With memory BIOs it finishes its side of the handshake, then sends its last
handshake flight (TLS 1.3: its Finished) together with the first part of a request cut
inside a record (in a record header, in a record body, or at a record's end), and the rest
in odd-sized pieces. On the same connection it then sends a PATCH and a HEAD; a download
on a fresh connection must return every byte once.

    python3 ktls_client.py PORT CAFILE VERSION(1.2|1.3) ROUNDS
Prints "RESULT coalesce-<version> key=value ..." lines."""
import hashlib
import os
import socket
import ssl
import sys

PORT, CAFILE, VERSION, ROUNDS = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
HALF = 300 * 1024 + 7


def context():
    ctx = ssl.create_default_context(cafile=CAFILE)
    v = ssl.TLSVersion.TLSv1_3 if VERSION == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", PORT), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context().wrap_bio(self.inc, self.out, server_hostname="127.0.0.1")
        self.plain = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                self.feed()

    def feed(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed")
        self.inc.write(data)

    def records(self, data):
        """The ciphertext of `data` as the client would send it (plus anything pending)."""
        self.tls.write(data)
        return self.out.read()

    def response(self, head_request=False):
        while True:
            try:
                while True:  # all the plaintext the ciphertext so far holds
                    chunk = self.tls.read(65536)
                    if not chunk:
                        break
                    self.plain += chunk
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            head, sep, rest = self.plain.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
                n = 0 if head_request else int(headers.get("content-length", "0"))
                if len(rest) >= n and status >= 200:
                    self.plain = rest[n:]
                    return status, headers, rest[:n]
                if status < 200:
                    self.plain = rest
                    continue
            self.feed()


def record_ends(ct):
    ends, i = [], 0
    while i + 5 <= len(ct):
        i += 5 + (ct[i + 3] << 8 | ct[i + 4])
        ends.append(i)
    return ends


def one_round(r):
    body = os.urandom(2 * HALF)
    c = Conn()
    final = c.out.read()  # TLS 1.3: the client's Finished, not yet sent
    head = (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Length: {len(body)}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {HALF}\r\n\r\n").encode()
    app = c.records(head + body[:HALF])
    ends = record_ends(app)
    # Where the first send stops: inside the 2nd record's header, inside its body, or
    # exactly at the end of the first record.
    cut = [ends[0] + 3, ends[0] + 700, ends[0]][r % 3]
    c.sock.sendall(final + app[:cut])
    rest = app[cut:]
    step = 4093 + 1000 * (r % 5)
    for i in range(0, len(rest), step):
        c.sock.sendall(rest[i:i + step])
    status, headers, _ = c.response()
    assert status == 201, (status, headers)
    loc = headers["location"]
    path = "/" + loc.split("/", 3)[3]
    patch = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
             f"Upload-Offset: {HALF}\r\nContent-Type: application/offset+octet-stream\r\n"
             f"Content-Length: {HALF}\r\n\r\n").encode()
    c.sock.sendall(c.records(patch + body[HALF:]))
    status2, _, _ = c.response()
    c.sock.sendall(c.records(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\n".encode()))
    status3, h3, _ = c.response(head_request=True)
    c.sock.close()
    d = Conn()
    d.sock.sendall(d.out.read() + d.records(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()))
    status4, _, got = d.response()
    d.sock.close()
    ok = (status2 == 204 and status3 == 200 and h3.get("upload-offset") == str(len(body))
          and status4 == 200 and hashlib.sha256(got).digest() == hashlib.sha256(body).digest())
    return ok, f"{status}/{status2}/{status3}/{h3.get('upload-offset')}/{status4}/{len(got)}"


good = 0
for r in range(ROUNDS):
    try:
        ok, what = one_round(r)
    except Exception as e:  # reported, the test fails on the count
        ok, what = False, repr(e)
    good += ok
    if not ok:
        print(f"RESULT coalesce-{VERSION}-fail round={r} what='{what}'", flush=True)
print(f"RESULT coalesce-{VERSION} rounds={ROUNDS} good={good}", flush=True)
