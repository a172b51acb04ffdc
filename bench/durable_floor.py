#!/usr/bin/python3
"""The most durable small uploads a filesystem can take, with no server at all.

    bench/durable_floor.py DIR [N] [BATCH...]

Makes N uploads' files in DIR the way the file store does (a data file of 64 KiB and a
~400-byte .info per upload, 64 KiB written, in a shard directory ab/cd/ of its own),
BATCH uploads at a time, and makes each batch durable with ONE syncfs: ideal group
commit with one flush point per upload, where a tus upload (POST, then PATCH) has two.
No HTTP, no threads, no waiting for clients: whatever a server does on top only costs.
Prints uploads/s per batch size; a server's durable rate on the same filesystem cannot
beat the best of them (bench/README.md, "durable small uploads").
"""
import ctypes
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
DATA = os.urandom(64 * 1024)
INFO = b"{" + b'"x":0,' * 66 + b'"ID":"x"}'


def run(root, n, batch, tag):
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    made = 0
    t0 = time.perf_counter()
    while made < n:
        for _ in range(min(batch, n - made)):
            h = f"{tag}{made:08x}"
            d = os.path.join(root, h[-4:-2], h[-2:])
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, h)
            with open(p, "wb") as f:
                f.write(DATA)
            with open(p + ".info", "wb") as f:
                f.write(INFO)
            made += 1
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    secs = time.perf_counter() - t0
    os.close(fd)
    return n / secs


def main():
    root = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    batches = [int(b) for b in sys.argv[3:]] or [16, 32, 64, 128]
    for i, b in enumerate(batches):
        print(f"floor batch={b} uploads={n} per_sec={run(root, n, b, f'b{i}x'):.1f}", flush=True)


if __name__ == "__main__":
    main()
