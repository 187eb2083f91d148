"""Locks that keep two jobs from spoiling each other's timing on one machine.

Two kinds of lock, both advisory `flock` locks on small files in one per-user folder (TOOLKIT_LOCK_DIR, default
`$XDG_RUNTIME_DIR/mobile-deploy-toolkit` or `/tmp/mobile-deploy-toolkit-<uid>`, created 0700):

- `device-<name>.lock`: held exclusively by whoever times on that device (a sweep for its whole length, or
  `python -m devices run`). A second sweep finds it taken and either waits (`--wait`) or stops with one line that
  names the run holding it; the holder writes its run id and pid into the file so the message can say so.
- `cpu.lock`: this machine's cores. Timing on a device that runs *here* (the host) takes it exclusively while it
  times; every export takes it shared while it converts and checks parity. So an export started next door waits
  for the timed loops to finish instead of stealing a core from them, and timing waits for running exports.

A lock dies with its process (kill -9 included), so there is nothing stale to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from models.common import check_name
from models.errors import ToolkitError


def lock_dir() -> Path:
    env = os.environ.get("TOOLKIT_LOCK_DIR")
    if env:
        d = Path(env)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        d = Path(os.environ["XDG_RUNTIME_DIR"]) / "mobile-deploy-toolkit"
    else:
        d = Path(tempfile.gettempdir()) / f"mobile-deploy-toolkit-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(f"cannot create the lock folder {d}: {exc.strerror}; set TOOLKIT_LOCK_DIR") from None
    st = d.lstat()
    if d.is_symlink() or st.st_uid != os.getuid():
        raise ToolkitError(f"lock folder {d} is not a folder of this user's own; set TOOLKIT_LOCK_DIR")
    return d


def _open(name: str):
    path = lock_dir() / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "r+")


def _holder(f) -> str:
    try:
        f.seek(0)
        info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"{info.get('owner', 'another process')} (pid {info.get('pid', '?')}, since {since})"


def _write_owner(f, owner: str) -> None:
    """Say in the lock file who holds it (read by whoever finds the lock taken)."""
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"owner": owner, "pid": os.getpid(), "since": time.time()}))
    f.flush()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class DeviceLock:
    """The exclusive right to time on one device: `with DeviceLock("host", "run host-1a2b", wait=False): ...`."""

    def __init__(self, device: str, owner: str, *, wait: bool = False, say: Callable[[str], None] = _say):
        self.device = check_name(device, "device name")
        self.owner = owner
        self.wait = wait
        self.say = say
        self._f = None

    def __enter__(self) -> DeviceLock:
        f = _open(f"device-{self.device}.lock")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            if not self.wait:
                f.close()
                raise ToolkitError(f"device {self.device} is being timed by {holder}; pass --wait to wait for it, "
                                   "or run again when it is done") from None
            self.say(f"waiting for device {self.device}: it is being timed by {holder}")
            fcntl.flock(f, fcntl.LOCK_EX)
        _write_owner(f, self.owner)
        self._f = f
        return self

    def set_owner(self, owner: str) -> None:
        """Say who holds the device (e.g. once the run id is known)."""
        self.owner = owner
        if self._f is not None:
            _write_owner(self._f, owner)

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.seek(0)
                self._f.truncate()
                self._f.flush()
            self._f.close()  # releases the lock
            self._f = None


@contextlib.contextmanager
def timing_cores(owner: str, say: Callable[[str], None] = _say) -> Iterator[None]:
    """Exclusive use of this machine's cores while timing here; waits for running exports to finish."""
    f = _open("cpu.lock")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for an export on this machine to finish before timing (a conversion next door spoils "
                "timed loops)")
            fcntl.flock(f, fcntl.LOCK_EX)
        _write_owner(f, owner)
        yield
    finally:
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
        f.close()


@contextlib.contextmanager
def exporting(say: Callable[[str], None] = _say) -> Iterator[None]:
    """Shared use of this machine's cores for a conversion; waits while something times here."""
    f = _open("cpu.lock")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"export waits: this machine is timing {_holder(f)}")
            fcntl.flock(f, fcntl.LOCK_SH)
        yield
    finally:
        f.close()
