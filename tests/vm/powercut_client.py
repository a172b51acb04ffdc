"""Guest side of tests/integration/test_powercut_vm.py (runs in the VM, stdlib only).

  powercut_client.py upload PORT SEED UPLOADS CONCURRENCY
      Runs UPLOADS small uploads against tusc on 127.0.0.1:PORT, CONCURRENCY at a time
      (one thread and one keep-alive connection each). Upload i's size, body and parts
      come from random.Random(f"{SEED}-{i}"): 1 B to 256 KiB, in 1 to 4 parts, a third
      of them created with their first part as the POST's body. Prints one console line
      per acknowledgement, once the answer is in:
        ACK-CREATE <path> <i>                       after a 201
        ACK-OFFSET <path> <offset> <sha256 of bytes 0..offset>
                                                    after a 204 (and after a 201 that
                                                    carries an Upload-Offset)
      and ERR lines for failures (there should be none before the power cut).

  powercut_client.py check PORT SEED ACKS
      For every upload of ACKS (those ACK lines, as the host saw them): HEAD (must be
      200 with an Upload-Offset at least the highest acknowledged) and GET (the first
      <offset> bytes must hash to each acknowledged sha256). Prints a LOST line per
      failure, an EXTRA line when bytes past the last acknowledged offset differ from
      what the client sent (allowed: never acknowledged; reported to see it happen), and
      CHECK-SUMMARY key=value ... at the end.
"""
import hashlib
import http.client
import queue
import random
import sys
import threading
import urllib.parse

MAX_SIZE = 256 * 1024
_print_lock = threading.Lock()


def say(line):
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def plan(seed, i):
    """(body, list of part lengths, whether the POST carries the first part)."""
    rng = random.Random(f"{seed}-{i}")
    size = rng.randint(1, MAX_SIZE)
    body = rng.randbytes(size)
    nparts = min(size, rng.randint(1, 4))
    cuts = sorted(rng.sample(range(1, size), nparts - 1)) if nparts > 1 else []
    bounds = [0] + cuts + [size]
    parts = [bounds[k + 1] - bounds[k] for k in range(nparts)]
    return body, parts, rng.random() < 1 / 3


def sha(data):
    return hashlib.sha256(data).hexdigest()


def upload_one(conn, seed, i):
    body, parts, with_upload = plan(seed, i)
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(len(body))}
    offset = 0
    first = b""
    if with_upload:
        first = body[:parts[0]]
        headers["Content-Type"] = "application/offset+octet-stream"
        parts = parts[1:]
    conn.request("POST", "/files/", body=first, headers=headers)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 201:
        say(f"ERR create {i} status={resp.status}")
        return
    path = urllib.parse.urlsplit(resp.getheader("Location")).path
    say(f"ACK-CREATE {path} {i}")
    if with_upload:
        got = resp.getheader("Upload-Offset")
        if got is None or int(got) != len(first):
            say(f"ERR create-with-upload {i} {path} offset={got}")
            return
        offset = int(got)
        say(f"ACK-OFFSET {path} {offset} {sha(body[:offset])}")
    for n in parts:
        chunk = body[offset:offset + n]
        conn.request("PATCH", path, body=chunk, headers={
            "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        resp = conn.getresponse()
        resp.read()
        got = resp.getheader("Upload-Offset")
        if resp.status != 204 or got is None or int(got) != offset + n:
            say(f"ERR patch {i} {path} status={resp.status} offset={got}")
            return
        offset += n
        say(f"ACK-OFFSET {path} {offset} {sha(body[:offset])}")


def upload(port, seed, uploads, concurrency):
    todo = queue.Queue()
    for i in range(uploads):
        todo.put(i)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                upload_one(conn, seed, i)
            except Exception as e:  # noqa: BLE001 - report and go on with a new connection
                say(f"ERR {i} {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def check(port, seed, acks_path):
    uploads = {}  # path -> {"i": index, "offsets": {offset: sha}}
    for line in open(acks_path):
        f = line.split()
        if f[0] == "ACK-CREATE":
            uploads.setdefault(f[1], {"offsets": {}})["i"] = int(f[2])
        elif f[0] == "ACK-OFFSET":
            uploads.setdefault(f[1], {"offsets": {}})["offsets"][int(f[2])] = f[3]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    lost_uploads = lost_offsets = offsets = extra = 0
    for path, up in sorted(uploads.items()):
        offsets += len(up["offsets"])
        top = max(up["offsets"], default=0)
        conn.request("HEAD", path, headers={"Tus-Resumable": "1.0.0"})
        resp = conn.getresponse()
        resp.read()
        have = resp.getheader("Upload-Offset")
        if resp.status != 200 or have is None:
            lost_uploads += 1
            lost_offsets += len(up["offsets"])
            say(f"LOST upload {path} head={resp.status} acked_offset={top}")
            continue
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        if int(have) < top:
            say(f"LOST bytes {path} upload_offset={have} acked_offset={top}")
        for off, digest in sorted(up["offsets"].items()):
            if int(have) < off or len(data) < off or sha(data[:off]) != digest:
                lost_offsets += 1
                say(f"LOST offset {path} offset={off} upload_offset={have} got={len(data)}"
                    f" sha_ok={len(data) >= off and sha(data[:off]) == digest}")
        if "i" in up:
            body = plan(seed, up["i"])[0]
            if data != body[:len(data)]:
                extra += 1
                diff = next(k for k in range(len(data)) if k >= len(body) or data[k] != body[k])
                say(f"EXTRA {path} bytes past offset {top} differ (have {len(data)} of "
                    f"{len(body)}, first difference at {diff}, zeros from there: "
                    f"{not data[diff:].strip(bytes(1))})")
    say(f"CHECK-SUMMARY uploads={len(uploads)} offsets={offsets} lost_uploads={lost_uploads}"
        f" lost_offsets={lost_offsets} extra_mismatch={extra}")


if __name__ == "__main__":
    if sys.argv[1] == "upload":
        upload(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        say("UPLOADS-DONE")
    elif sys.argv[1] == "check":
        check(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"usage: {sys.argv[0]} upload|check ...")
