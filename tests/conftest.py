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
