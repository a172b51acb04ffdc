"""Fixtures for the tusc-upload tests: the real uploader against real servers (tusc,
@tus/server). Helpers live in uploadlib.py.

  - `tusc`, `server`: the integration suite's fixtures (servers stopped by PID, a
    sanitizer report fails the test), shared rather than copied;
  - `upload(...)`: runs tusc-upload with --json and returns an uploadlib.Upload (a
    sanitizer report in its stderr fails the test);
  - `node_server`: @tus/server + @tus/file-store (bench/node, npm ci'd by make clients);
  - `proxy_factory`: fault-injecting proxies (faultproxy.py), closed at teardown.

Run: TUSC_BIN=build-asan/tusc /usr/bin/python3 -m pytest -q tests/upload
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from uploadlib import (NODE_DIR, UPLOAD_BIN, UPLOAD_TIMEOUT, NodeServer,  # noqa: E402
                       harness, run_upload)

tusc = harness.tusc
server = harness.server
pytest_runtest_makereport = harness.pytest_runtest_makereport


def pytest_sessionstart(session):
    """Test modules of tests/integration do `from conftest import ...`. When both
    directories run in one session and pytest loaded this conftest after theirs, the
    name `conftest` would point here; point it back at the integration conftest that
    pytest loaded, which is what those modules mean (ours import uploadlib instead)."""
    target = str(harness.REPO / "tests" / "integration" / "conftest.py")
    for plugin in session.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == target:
            sys.modules["conftest"] = plugin


@pytest.fixture(scope="session", autouse=True)
def _upload_binary_exists():
    if not os.access(UPLOAD_BIN, os.X_OK):
        pytest.fail(f"tusc-upload not found or not executable: {UPLOAD_BIN} "
                    f"(set TUSC_UPLOAD_BIN or TUSC_BIN)", pytrace=False)


@pytest.fixture
def upload(tmp_path):
    """upload(url, paths, *args, state=None) -> Upload; the journal defaults to one
    per test."""
    def run(url, paths, *args, state=None, timeout=UPLOAD_TIMEOUT, env=None):
        return run_upload(url, paths, state or tmp_path / "journal", *args, timeout=timeout,
                          env=env)
    return run


@pytest.fixture
def node_server(tmp_path):
    if not (NODE_DIR / "node_modules" / "@tus" / "server").exists():
        pytest.fail("bench/node/node_modules missing: run `make clients` (npm ci)",
                    pytrace=False)
    srv = NodeServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy_factory():
    from faultproxy import FaultProxy
    proxies = []

    def make(port, delay=0.0):
        p = FaultProxy(port, delay=delay)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()
