"""A disk with a volatile write cache, served over NBD to qemu, that can lose power.

The disk keeps two images: `durable` (what survives a power cut) and `current` (what
the guest reads back: durable plus every write completed since the last flush). Each
completed write also goes to `pending`; a FLUSH makes all of them durable. A write with
the FUA flag is durable once completed: it stays in `pending` (so that the order of
overlapping writes is kept) but is marked as surviving every power cut.

power_cut(rng, mode) builds the image as a power loss at this moment would leave it:
the durable image plus some of the pending writes, applied in the order they were
completed:
  "subset"  each pending write survives whole, or not at all, at random;
  "sectors" each 4 KiB sector of each pending write survives or not on its own (a
            multi-sector write torn at sector granularity);
  "none"    no pending write survives (only FUA writes).
A write the server got but had not answered when the connection broke is pending too:
the disk may or may not have it.

Not modelled: a disk that lies about FLUSH, torn writes inside a 4 KiB sector, bit rot.

Protocol (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md): fixed
newstyle handshake; NBD_OPT_GO (and NBD_OPT_INFO) with NBD_INFO_EXPORT, or the old
NBD_OPT_EXPORT_NAME; every other option is answered NBD_REP_ERR_UNSUP (qemu then uses
simple replies). Commands: READ, WRITE (+FUA), FLUSH, TRIM (a no-op: contents after a
discard are unspecified, keeping them is allowed), WRITE_ZEROES (+FUA), DISC. Requests
of one connection are served in order. Threads: one listener thread, one per
connection; the disk's state is behind one lock.

    disk = NbdDisk(image_bytes, socket_dir)
    disk.start()                  # disk.socket: a unix socket path for qemu
    ... qemu runs ...
    disk.freeze()                 # the moment of the cut: nothing more is done
    ... qemu is killed ...
    disk.stop()
    after = disk.power_cut(random.Random(seed), "subset")
"""
import os
import socket
import struct
import threading

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_INFO = 6
OPT_GO = 7

REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = 0x80000001
REP_ERR_INVALID = 0x80000003
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

TF_HAS_FLAGS = 1
TF_SEND_FLUSH = 4
TF_SEND_FUA = 8
TF_SEND_TRIM = 32
TF_SEND_WRITE_ZEROES = 64
TRANSMISSION_FLAGS = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 5, 6
CMD_FLAG_FUA = 1

EIO, EINVAL, ENOSPC = 5, 22, 28
SECTOR = 4096
MAX_REQUEST = 32 * 1024 * 1024


def _recv(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf.extend(chunk)
    return bytes(buf)


class NbdDisk:
    def __init__(self, image, socket_dir, export="disk"):
        self.current = bytearray(image)
        self.durable = bytearray(image)
        self.pending = []  # [offset, bytes, fua], in completion order
        self.export = export.encode()
        self.socket = os.path.join(str(socket_dir), "nbd.sock")
        self.lock = threading.Lock()
        self.frozen = False
        self.stats = {"writes": 0, "flushes": 0, "fua": 0, "reads": 0, "connections": 0}
        self.errors = []  # protocol errors seen (a test may assert there are none)
        self._listener = None
        self._threads = []

    # --- the disk --------------------------------------------------------------------

    def freeze(self):
        """The power cut's moment: from now on no command is carried out or answered
        (the VM is to be killed next); power_cut() sees the disk as it is now."""
        with self.lock:
            self.frozen = True

    def _write(self, offset, data, fua):
        with self.lock:
            if self.frozen:
                return False
            self.current[offset:offset + len(data)] = data
            self.pending.append((offset, bytes(data), fua))
            self.stats["writes"] += 1
            self.stats["fua"] += bool(fua)
            return True

    def _flush(self):
        with self.lock:
            if self.frozen:
                return False
            for offset, data, _ in self.pending:
                self.durable[offset:offset + len(data)] = data
            self.pending.clear()
            self.stats["flushes"] += 1
            return True

    def power_cut(self, rng, mode="subset"):
        """(image bytes after a power loss now, how many of the pending writes survived
        whole or in part, how many were pending)."""
        if mode not in ("subset", "sectors", "none"):
            raise ValueError(mode)
        with self.lock:
            image = bytearray(self.durable)
            kept = 0
            for offset, data, fua in self.pending:
                if fua:
                    image[offset:offset + len(data)] = data
                    kept += 1
                elif mode == "subset":
                    if rng.random() < 0.5:
                        image[offset:offset + len(data)] = data
                        kept += 1
                elif mode == "sectors":
                    any_kept = False
                    # sector boundaries of the disk, not of the write
                    start = offset
                    while start < offset + len(data):
                        end = min((start // SECTOR + 1) * SECTOR, offset + len(data))
                        if rng.random() < 0.5:
                            image[start:end] = data[start - offset:end - offset]
                            any_kept = True
                        start = end
                    kept += any_kept
            return bytes(image), kept, len(self.pending)

    def image(self):
        """What the guest wrote (durable + pending), e.g. after a clean shutdown."""
        with self.lock:
            return bytes(self.current)

    # --- the server ------------------------------------------------------------------

    def start(self):
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket)
        self._listener.listen(4)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout=30):
        """Stops listening and waits for the connections to end (their peer gone)."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                raise RuntimeError("an NBD connection did not end")
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            self.stats["connections"] += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        try:
            with conn:
                if self._handshake(conn):
                    self._transmission(conn)
        except (EOFError, ConnectionError):
            pass  # the VM is gone (killed: the power cut)
        except Exception as e:  # noqa: BLE001 - reported to the test, not swallowed
            self.errors.append(repr(e))

    def _handshake(self, conn):
        """Option haggling; True once the client chose the export."""
        conn.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv(conn, 4))
        no_zeroes = bool(client_flags & FLAG_NO_ZEROES)
        size = len(self.current)
        while True:
            magic, opt, length = struct.unpack(">QII", _recv(conn, 16))
            if magic != IHAVEOPT or length > 65536:
                raise ValueError(f"bad option header {magic:#x} {length}")
            data = _recv(conn, length)

            def reply(rtype, payload=b""):
                conn.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, rtype, len(payload)) + payload)

            if opt == OPT_EXPORT_NAME:
                if data != self.export and data != b"":
                    return False  # no way to refuse but closing
                conn.sendall(struct.pack(">QH", size, TRANSMISSION_FLAGS)
                             + (b"" if no_zeroes else b"\0" * 124))
                return True
            if opt in (OPT_GO, OPT_INFO):
                (name_len,) = struct.unpack(">I", data[:4])
                name = data[4:4 + name_len]
                if name not in (self.export, b""):
                    reply(REP_ERR_INVALID)  # NBD_REP_ERR_UNKNOWN is newer; INVALID is safe
                    continue
                reply(REP_INFO, struct.pack(">HQH", INFO_EXPORT, size, TRANSMISSION_FLAGS))
                rest = data[4 + name_len:]
                (n_infos,) = struct.unpack(">H", rest[:2])
                infos = struct.unpack(f">{n_infos}H", rest[2:2 + 2 * n_infos])
                if INFO_BLOCK_SIZE in infos:  # only when asked: 1 byte minimum, 4 KiB preferred
                    reply(REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, 1, SECTOR, MAX_REQUEST))
                reply(REP_ACK)
                if opt == OPT_GO:
                    return True
                continue
            if opt == OPT_ABORT:
                reply(REP_ACK)
                return False
            reply(REP_ERR_UNSUP)  # structured replies, meta contexts, TLS, lists

    @staticmethod
    def _drain(conn):
        """Frozen: reads whatever comes until the peer is gone, answering nothing."""
        while conn.recv(65536):
            pass

    def _transmission(self, conn):
        size = len(self.current)
        while True:
            magic, flags, cmd, handle, offset, length = struct.unpack(">IHHQQI", _recv(conn, 28))
            if magic != REQUEST_MAGIC:
                raise ValueError(f"bad request magic {magic:#x}")

            def reply(error=0, payload=b""):
                conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, error, handle) + payload)

            if cmd == CMD_DISC:
                return
            if self.frozen:
                self._drain(conn)
                return
            in_range = offset + length <= size and (length <= MAX_REQUEST or cmd != CMD_READ)
            if cmd == CMD_WRITE:
                if length > MAX_REQUEST:
                    raise ValueError(f"write of {length} bytes: more than the maximum announced")
                data = _recv(conn, length)
                if not in_range:
                    reply(ENOSPC if offset + length > size else EINVAL)
                    continue
                if not self._write(offset, data, flags & CMD_FLAG_FUA):
                    self._drain(conn)
                    return
                reply()
            elif cmd == CMD_READ:
                if not in_range:
                    reply(EINVAL)
                    continue
                with self.lock:
                    data = bytes(self.current[offset:offset + length])
                    self.stats["reads"] += 1
                reply(0, data)
            elif cmd == CMD_FLUSH:
                if not self._flush():
                    self._drain(conn)
                    return
                reply()
            elif cmd == CMD_WRITE_ZEROES:
                if not in_range:
                    reply(EINVAL)
                    continue
                if not self._write(offset, bytes(length), flags & CMD_FLAG_FUA):
                    self._drain(conn)
                    return
                reply()
            elif cmd in (CMD_TRIM, CMD_CACHE):
                reply(0 if in_range else EINVAL)
            else:
                reply(EINVAL)
