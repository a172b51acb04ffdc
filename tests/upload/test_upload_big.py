"""--parts 4 on a 1 GiB file: four partial uploads at once, then the final,
assembled byte-exact by tusc. The file is generated in the tmp dir (distinct 1 MiB
blocks, so a part in the wrong place changes the hash)."""
import hashlib
import os
import struct

from uploadlib import server_files

MiB = 1 << 20


def block_file(path, mib):
    base = bytearray(os.urandom(MiB))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            base[:8] = struct.pack(">Q", i)
            h.update(base)
            f.write(base)
    return h.hexdigest()


def test_parts_4_on_1_gib_byte_exact(tusc, upload, tmp_path):
    srv = tusc()
    big = tmp_path / "big.bin"
    digest = block_file(big, 1024)
    up = upload(srv.url("/files/"), [big], "--parts", "4", "-j", "1")
    assert up.rc == 0, up
    assert up.files[0]["sent"] == 1 << 30
    assert server_files(srv.upload_dir) == {"big.bin": digest}
    finals = [l for l in srv.stderr().splitlines()
              if "event=ResponseOutgoing" in l and "method=POST" in l and "status=201" in l]
    assert len(finals) == 5  # four partials and the final
