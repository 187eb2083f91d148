"""A persistent helper process spoken to in JSON lines, with a deadline on every request.

Why a separate process: a runtime that hangs or crashes (a segfault in a native kernel, an endless converter)
must cost one cell, not the sweep. The caller sends one JSON object per line on the child's stdin and reads one
JSON object per line back; if no answer comes before the deadline the child's whole process group is killed and
the caller gets a WorkerError with stage "timeout"; if the child dies, stage "crash" with the tail of its stderr.
The next request starts a fresh child.

Protocol hygiene: the child keeps a private duplicate of its stdout for replies and points file descriptor 1 at
stderr, so whatever a native runtime prints cannot corrupt the protocol. The child runs in its own session
(Ctrl-C in the terminal reaches only the driver, which then stops the child itself) and, on Linux, asks the
kernel to kill it when its parent dies, so a `kill -9` of the driver leaves no orphan measuring on a shared core.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from models.common import ROOT
from models.errors import ToolkitError


class WorkerError(ToolkitError):
    """A request that got no answer: the child hung (stage "timeout") or died (stage "crash")."""

    def __init__(self, message: str, stage: str, returncode: int | None = None):
        super().__init__(message)
        self.stage = stage
        self.returncode = returncode  # the child's exit status when it died (ssh: 255 = the connection failed)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Worker:
    """One child process running `python -m <module>` (or the given argument list, e.g. ssh running the worker on a
    board), restarted on demand after a timeout or crash."""

    def __init__(self, module: str, *, env: dict[str, str] | None = None, label: str | None = None,
                 argv: list[str] | None = None):
        self.module = module
        self.argv = argv or [sys.executable, "-m", module]
        self.label = label or module
        self.env = dict(os.environ, **(env or {}))
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.env["PYTHONUNBUFFERED"] = "1"
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._buf = b""
        self.stopped = False  # after stop(): no request starts a child again

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _start(self) -> subprocess.Popen:
        self._stderr = tempfile.TemporaryFile()
        self._buf = b""
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=self.env,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        if self.stopped:  # stop() ran while this child was starting
            self.kill()
            raise WorkerError(f"{self.label} was stopped", "stopped")
        return self._proc

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its reply; a hung or dead child is killed and reported."""
        if self.stopped:
            raise WorkerError(f"{self.label} was stopped", "stopped")
        proc = self._proc if self._proc and self._proc.poll() is None else self._start()
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerError(f"no answer within {timeout:g} s (hung runtime?); {self.label} killed", "timeout")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._died()
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:  # a board's worker is another machine's program: what it answers is data, checked like any
            reply = json.loads(line)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict):
            self.kill()
            raise WorkerError(f"{self.label} answered with a line that is not a reply ({line[:60]!r}); killed",
                              "crash")
        return reply

    def _died(self) -> WorkerError:
        proc = self._proc
        code = proc.wait(timeout=10) if proc else None
        tail = self._stderr_tail()
        self.kill()
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return WorkerError(f"{self.label} {how}" + (f": {tail}" if tail else ""), "crash", code)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return " | ".join(lines[-3:])[-400:]

    def kill(self) -> None:
        """Kill the child and everything it started (its own process group)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stop(self) -> None:
        """Kill the child for good: a thread about to send this worker its next request gets a WorkerError instead
        of starting a fresh child (how Ctrl-C during exports stops at once)."""
        self.stopped = True
        self.kill()

    def close(self) -> None:
        """Ask the child to finish (end of input), then kill it if it does not within a few seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


def call_outputs(worker: Worker, artifact: str, x: Any, *, threads: int, units: str | None,
                 timeout: float = 600.0, native_runner: str | None = None) -> Any:
    """Ask a worker (devices/worker.py, here or on a device) for an artifact's outputs on the inputs `x` (N,3,H,W):
    the device side of a parity check (a .pte through `native_runner`, et-bench, when given)."""
    import base64

    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    reply = worker.call({"op": "outputs", "artifact": artifact, "shape": list(x.shape), "threads": threads,
                         "units": units, "inputs_b64": base64.b64encode(x.tobytes()).decode(),
                         **({"native_runner": native_runner} if native_runner else {})}, timeout)
    if not reply.get("ok"):
        raise ToolkitError(reply.get("error", "unknown error"))
    return np.frombuffer(base64.b64decode(reply["outputs_b64"]), dtype=np.float32).reshape(reply["shape"])


def serve(handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The child's side: answer each JSON request line with handle(request), one JSON line on the real stdout."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints from native code and Python alike now go to stderr
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = handle(json.loads(line))
        replies.write(json.dumps(reply, default=str) + "\n")
        replies.flush()


def one_line(exc: BaseException) -> str:
    """An exception as one short line: ToolkitErrors as they are, anything else with its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ToolkitError):
        return text[:500]
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__
