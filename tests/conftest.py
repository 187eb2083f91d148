"""Suite-wide set-up: the device and CPU locks (export/hostlock.py) live in a folder of this test session's own, so
the suite's small sweeps neither wait for nor block a real sweep someone runs on the same machine (the lock tests
point TOOLKIT_LOCK_DIR at folders of their own)."""

from __future__ import annotations

import os
import tempfile

os.environ["TOOLKIT_LOCK_DIR"] = tempfile.mkdtemp(prefix="toolkit-test-locks-")
