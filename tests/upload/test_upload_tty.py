"""The live progress display in a real terminal: tusc-upload runs inside tmux and the
pane is read with capture-pane while it works (the display is redrawn in place: one
summary line, one line per active file), then after it exits."""
import os
import re
import shutil
import subprocess
import uuid

import pytest

from uploadlib import UPLOAD_BIN, deadline_poll, random_file, sanitizer_env

MiB = 1 << 20


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (scripts/install-deps.sh test)", pytrace=False)
    sock = tmp_path / f"tmux-{uuid.uuid4().hex[:8]}"
    env = sanitizer_env()
    env["TERM"] = "xterm-256color"

    def tm(*args):
        return subprocess.run(["tmux", "-S", str(sock), *args], capture_output=True,
                              env=env, timeout=30)

    yield tm
    tm("kill-server")


def test_progress_display_in_tmux(tusc, tmux, tmp_path):
    srv = tusc()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        random_file(src / f"file{i}.bin", 3 * MiB)
    state = tmp_path / "journal"
    done = tmp_path / "exit-code"
    cmd = (f"{UPLOAD_BIN} --state {state} -j 2 --limit-rate 2M --checksum none "
           f"{srv.url('/files/')} {src}; echo $? > {done}")
    assert tmux("new-session", "-d", "-x", "120", "-y", "30", "-s", "up", "sh").returncode == 0
    assert tmux("send-keys", "-t", "up", cmd, "Enter").returncode == 0

    def pane():
        return tmux("capture-pane", "-p", "-t", "up").stdout.decode("utf-8", "replace")

    summary = re.compile(r"\d.* / 9\.0 MiB\s+files [0-3]/3 done, 0 failed\s+\S+ \S+/s\s+ETA")
    active = re.compile(r"^\s+\d+%\s+3\.0 MiB\s+file\d\.bin$", re.M)

    def display_while_running():
        text = pane()
        if done.exists():
            raise AssertionError(f"uploader ended before the display was seen:\n{text}")
        return text if summary.search(text) and len(active.findall(text)) == 2 else None

    text = deadline_poll(display_while_running, 60, interval=0.1,
                         what="the progress display with two active files")
    # Redrawn in place: the summary line is on screen once, not scrolled.
    assert len(summary.findall(text)) == 1, text
    deadline_poll(done.exists, 120, what="the uploader to exit")
    assert done.read_text().strip() == "0"
    final = pane()
    assert "finished: 3 uploaded, 0 already done, 0 failed" in final, final
    assert "files 3/3 done, 0 failed" in final, final
