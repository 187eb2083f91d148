"""Suite-wide set-up: the device and CPU locks (export/hostlock.py) live in a folder of this test session's own, so
the suite's small sweeps neither wait for nor block a real sweep someone runs on the same machine (the lock tests
point TOOLKIT_LOCK_DIR at folders of their own).

`export_root`: one artifacts folder for the session, so an artifact two modules need (Mobile-Former-26M as a .pte at
96x128 takes about two minutes) is converted once and is a cache hit the second time. Programs a test needs from the
system: `need_program` in tests/_system.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["TOOLKIT_LOCK_DIR"] = tempfile.mkdtemp(prefix="toolkit-test-locks-")


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session-artifacts")


# The smallest models at 64 and 96 px in ONNX, exported once per session (about 25 s each) for the suite's sweeps
# (tests/test_bench.py, tests/test_ssh.py): after the first sweep every other finds them cached.
SMALL = "mobilenetv3_small_075"
MF = "mobileformer_26m"
RES = (64, 96)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    import export

    out = tmp_path_factory.mktemp("artifacts")
    for model in (SMALL, MF):
        for r in RES:
            export.export(model, "onnx", r, out=out)
    return out


def wait_for_first_pass(proc, store: Path, timeout: float = 600) -> None:
    """Wait until a sweep running in `proc` has stored its first pass in `store` (or has ended)."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if store.exists() and sqlite3.connect(store).execute("SELECT COUNT(*) FROM passes").fetchone()[0]:
                return
        except sqlite3.OperationalError:  # the schema is not there yet
            pass
        time.sleep(0.05)
