#!/usr/bin/python3
"""Uploads one file with tuspy (Debian's python3-tuspy), as a Python user would.

    tuspy_upload.py <endpoint> <file> [--chunk-size N] [--stop-at BYTES]

--stop-at: upload until at least that offset with one Uploader, then throw it away and
continue with a fresh Uploader given only the upload URL (it asks the server for the
offset with HEAD), so resumption through a real client is exercised too.

Prints one JSON object per line ({"event": "created"|"resume"|"done", ...}); exits 0
only when the server acknowledged the whole file.
"""
import argparse
import json
import os
import sys

from tusclient import client


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("file")
    ap.add_argument("--chunk-size", type=int, default=5 * 1024 * 1024)
    ap.add_argument("--stop-at", type=int, default=None)
    args = ap.parse_args()

    size = os.path.getsize(args.file)
    tus = client.TusClient(args.endpoint)
    meta = {"filename": os.path.basename(args.file), "filetype": "application/octet-stream"}

    up = tus.uploader(args.file, chunk_size=args.chunk_size, metadata=meta, retries=0)
    if args.stop_at is not None and 0 < args.stop_at < size:
        up.upload(stop_at=args.stop_at)
        url = up.url
        emit(event="created", url=url, offset=up.offset)
        # A new uploader that knows only the URL: it must learn the offset from HEAD.
        up = tus.uploader(args.file, chunk_size=args.chunk_size, url=url, retries=0)
        emit(event="resume", offset=up.offset)
        up.upload()
    else:
        up.upload()
        emit(event="created", url=up.url, offset=up.offset)
    if up.offset != size:
        print(f"tuspy_upload: final offset {up.offset} != size {size}", file=sys.stderr)
        return 1
    emit(event="done", url=up.url, offset=up.offset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
