"""tusc-upload against real servers: whole trees byte-exact, metadata, resume of a
finished run, exit codes, --dry-run, --json, --parts."""
import base64
import os
import re
from pathlib import Path

import pytest

from uploadlib import make_tree, server_files, random_file


def rel_map(expect, prefix=""):
    return {prefix + k: v for k, v in expect.items()}


def test_tree_of_1000_files_and_large_ones_to_tusc(tusc, upload, tmp_path):
    srv = tusc()
    src = tmp_path / "src"
    expect = make_tree(src, 1000, 2048, large_sizes=(24 << 20, 9 << 20 | 123, 0))
    up = upload(srv.url("/files/"), [src], "-j", "8")
    assert up.rc == 0, up
    assert up.summary["uploaded"] == 1003 and up.summary["failed"] == 0, up
    assert server_files(srv.upload_dir) == expect
    assert all(f["url"].startswith(srv.url("/files/")) for f in up.files)

    # The same command again sends nothing: every file is skipped from the journal.
    again = upload(srv.url("/files/"), [src], "-j", "8")
    assert again.rc == 0, again
    assert again.summary["skipped"] == 1003 and again.summary["sent"] == 0, again


def test_tree_to_tus_node_server(node_server, upload, tmp_path):
    src = tmp_path / "src"
    expect = make_tree(src, 1000, 1024, large_sizes=(12 << 20, 5 << 20 | 77))
    # --parts falls back to one upload per file: @tus/server lacks concatenation.
    up = upload(node_server.url(), [src], "-j", "8", "--parts", "4", "--parts-min-size", "1M")
    assert up.rc == 0, up
    assert up.summary["uploaded"] == 1002, up
    assert node_server.files() == expect


def test_metadata_filename_type_relative_path_mtime_and_extra(tusc, upload, tmp_path):
    srv = tusc()
    src = tmp_path / "photos"
    (src / "2026" / "may").mkdir(parents=True)
    f = src / "2026" / "may" / "beach.JPG"
    f.write_bytes(b"\xff\xd8jpeg")
    os.utime(f, (1700000000, 1700000000))
    single = tmp_path / "notes.txt"
    single.write_text("hello")
    up = upload(srv.url("/files/"), [src, single], "-m", "camera=x100", "-m", "empty=")
    assert up.rc == 0, up
    metas = {}
    for info in Path(srv.upload_dir).rglob("*.info"):
        import json
        meta = json.loads(info.read_text())["MetaData"]
        metas[meta["filename"]] = meta
    assert metas["beach.JPG"] == {"filename": "beach.JPG", "filetype": "image/jpeg",
                                  "relativePath": "2026/may/beach.JPG", "mtime": "1700000000",
                                  "camera": "x100", "empty": ""}
    # A file argument has no relativePath.
    assert metas["notes.txt"]["filetype"] == "text/plain"
    assert "relativePath" not in metas["notes.txt"]


def test_parts_assembles_byte_exact_on_tusc(tusc, upload, tmp_path):
    srv = tusc()
    big = tmp_path / "big.bin"
    digest = random_file(big, 40 << 20 | 4321)
    up = upload(srv.url("/files/"), [big], "--parts", "4", "--parts-min-size", "1M")
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == {"big.bin": digest}
    # Four partial uploads and one final were created.
    import json
    infos = [json.loads(p.read_text()) for p in Path(srv.upload_dir).rglob("*.info")]
    assert sum(1 for i in infos if i.get("IsPartial")) == 4
    assert sum(1 for i in infos if i.get("IsFinal")) == 1


def test_dry_run_lists_and_sends_nothing(tusc, upload, tmp_path):
    srv = tusc()
    src = tmp_path / "src"
    make_tree(src, 5, 100)
    up = upload(srv.url("/files/"), [src], "--dry-run")
    assert up.rc == 0, up
    lines = up.out.splitlines()
    assert sum(1 for line in lines if line.startswith("upload ")) == 5, up.out
    assert "5 files" in lines[-1]
    assert not list(Path(srv.upload_dir).rglob("*.info"))


def test_usage_errors_exit_2(upload, tmp_path):
    assert upload("http://127.0.0.1:1/files/", []).rc == 2
    assert upload("ftp://x/", [tmp_path]).rc == 2
    assert upload("http://127.0.0.1:1/files/", [tmp_path], "-j", "0").rc == 2
    assert upload("http://127.0.0.1:1/files/", [tmp_path], "--chunk-size", "12Q").rc == 2
    assert upload("http://127.0.0.1:1/files/", [tmp_path], "-m", "no-equals").rc == 2


def test_missing_path_fails_that_path_only(tusc, upload, tmp_path):
    srv = tusc()
    ok = tmp_path / "ok.txt"
    ok.write_text("fine")
    up = upload(srv.url("/files/"), [tmp_path / "nope", ok])
    assert up.rc == 1, up
    assert [f["outcome"] for f in up.files] == ["failed", "uploaded"], up
    assert "No such file" in up.files[0]["error"]


def test_chunk_size_sends_several_patches(tusc, upload, tmp_path):
    srv = tusc()
    f = tmp_path / "f.bin"
    digest = random_file(f, 5 << 20 | 7)
    up = upload(srv.url("/files/"), [f], "--chunk-size", "1M")
    assert up.rc == 0, up
    assert server_files(srv.upload_dir) == {"f.bin": digest}
    patches = [l for l in srv.stderr().splitlines()
               if "event=ResponseOutgoing" in l and "method=PATCH" in l]
    assert len(patches) == 6, patches


def test_verify_downloads_and_compares(tusc, node_server, upload, tmp_path):
    srv = tusc()
    src = tmp_path / "src"
    expect = make_tree(src, 3, 3000, large_sizes=(2 << 20,))
    up = upload(srv.url("/files/"), [src], "--verify", state=tmp_path / "j1")
    assert up.rc == 0, up
    gets = [l for l in srv.stderr().splitlines()
            if "event=ResponseOutgoing" in l and "method=GET" in l and "status=200" in l]
    assert len(gets) == 4, gets
    assert server_files(srv.upload_dir) == expect
    up = upload(node_server.url(), [src], "--verify", state=tmp_path / "j2")
    assert up.rc == 0, up
    assert node_server.files() == expect


def test_plain_progress_lines_when_not_a_terminal(tusc, upload, tmp_path):
    srv = tusc()
    f = tmp_path / "f.bin"
    random_file(f, 3 << 20)
    up = upload(srv.url("/files/"), [f], "--progress", "plain", "--progress-interval", "1",
                "-j", "1", "--limit-rate", "1M", "--checksum", "none")
    assert up.rc == 0, up
    lines = [l for l in up.err.splitlines() if l.startswith("progress: ")]
    assert lines, up.err
    assert all(re.search(r" / 3\.0 MiB  files [01]/1 done, 0 failed ", l) for l in lines), lines
    assert "\x1b[" not in up.err  # no terminal control sequences in a log
    assert "finished: 1 uploaded, 0 already done, 0 failed" in up.err
