"""A gate in front of the test board's Python (tests/test_ssh.py), so a test can cut the board off at a point it
controls instead of at a moment in time: the board (a real sshd, the real worker) runs exactly as before, with this
program relaying the worker's JSON lines; once the board has answered `hold_after` measuring requests (over all
workers of the session), every later answer is held back, and when the first one is, the file `held` appears in
the gate's folder. The test waits for that file, then kills the server: the sweep is then always in the same place,
blocked on the answer to the next request (no connection or worker is being opened at that moment), however busy
the machine is.

    GATE_DIR/config.json: {"python": the board's real interpreter, "hold_after": N or null (relay everything)}
    board python = GATE_DIR/python: `exec <this interpreter> tests/board_gate.py GATE_DIR "$@"`

Anything but `-m devices.worker` (the probe, a version check) is handed to the real interpreter unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path


def make_gate(folder: Path, python: str, hold_after: int | None) -> Path:
    """Lay out a gate in `folder`; returns the path to give as the profile's `python`."""
    folder.mkdir(parents=True, exist_ok=True)
    configure(folder, python, hold_after)
    wrapper = folder / "python"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).resolve()}' '{folder}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def configure(folder: Path, python: str, hold_after: int | None) -> None:
    (folder / "config.json").write_text(json.dumps({"python": python, "hold_after": hold_after}))
    (folder / "held").unlink(missing_ok=True)
    (folder / "answers").unlink(missing_ok=True)


def _answered(folder: Path, hold_after: int) -> bool:
    """Count one answer to a measuring request; False once `hold_after` of them went through (hold it back, and
    say so in the file `held`: the sweep is now waiting for this answer)."""
    with open(folder / "answers", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = len(f.read())
        if n >= hold_after:
            (folder / "held").write_text(str(os.getpid()))
            return False
        f.write("x")
        f.flush()
        return True


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    config = json.loads((folder / "config.json").read_text())
    args = argv[1:]
    if args[:2] != ["-m", "devices.worker"] or config["hold_after"] is None:
        os.execv(config["python"], [config["python"], *args])
    worker = subprocess.Popen([config["python"], *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ops: queue.Queue[str] = queue.Queue()

    def requests() -> None:
        for line in sys.stdin.buffer:
            try:
                ops.put(json.loads(line).get("op", ""))
            except ValueError:
                ops.put("")
            worker.stdin.write(line)
            worker.stdin.flush()
        worker.stdin.close()

    threading.Thread(target=requests, daemon=True).start()
    for line in worker.stdout:
        if ops.get() == "measure_group" and not _answered(folder, config["hold_after"]):
            while True:  # the board stops answering here; the test kills it
                time.sleep(60)
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    sys.exit(worker.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
