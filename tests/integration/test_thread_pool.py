"""The thread pool that runs every fsync, create and password check is sized from the
cores (at least 8 threads), not libuv's default of 4; UV_THREADPOOL_SIZE still wins."""
import os

from conftest import deadline_poll


def threads(srv):
    return len(os.listdir(f"/proc/{srv.proc.pid}/task"))


def test_pool_is_sized_from_cores(tusc, monkeypatch):
    monkeypatch.delenv("UV_THREADPOOL_SIZE", raising=False)
    srv = tusc("-workers", "1", name="auto")
    before = threads(srv)
    up = srv.create(length=1)
    assert srv.patch(up, 0, b"x").status == 204
    default = deadline_poll(lambda: (threads(srv) - before) if threads(srv) - before >= 8 else None,
                            10, what="at least 8 pool threads")
    assert default >= 8


def test_operator_setting_wins(tusc, monkeypatch):
    monkeypatch.setenv("UV_THREADPOOL_SIZE", "2")
    srv = tusc("-workers", "1", name="two")
    before = threads(srv)
    up = srv.create(length=1)
    assert srv.patch(up, 0, b"x").status == 204
    deadline_poll(lambda: threads(srv) - before >= 2, 10, what="2 pool threads")
    assert threads(srv) - before == 2
