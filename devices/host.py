"""The host device: this machine's own runtimes (onnxruntime, LiteRT, ExecuTorch), timed in a worker process.

The driver never times anything itself. One persistent worker (`python -m devices.worker`) loads each artifact
with `export.load(threads=N)` and runs the timing loop; the answer comes back over a pipe. A worker is started
per thread count, with OMP/MKL/OpenBLAS thread variables set to N as well, because some runtimes read those
when they first load. A hung runtime is killed after the cell's timeout and a crashed one is reported with the
tail of its stderr; either way the next cell gets a fresh worker.

Pinning: the worker pins itself to `threads` cores with os.sched_setaffinity before any runtime creates its
threads (which inherit the mask). It takes the *last* cores of the allowed set, since core 0 usually takes more
interrupts; a profile can name the cores (`cpus = [2, 3]`) or switch pinning off (`pin = false`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from devices import MeasureError, Measurement
from devices.subproc import Worker, WorkerError
from models.errors import ToolkitError


class HostDevice:
    kind = "host"

    def __init__(self, name: str = "host", *, pin: bool = True, cpus: list[int] | None = None):
        if not isinstance(pin, bool):
            raise ToolkitError(f"device {name}: pin must be true or false, not {pin!r}")
        self.name = name
        self.pin = pin
        self.cpus = [int(c) for c in cpus] if cpus else None
        self._worker: Worker | None = None
        self._threads: int | None = None

    # ------------------------------------------------------------------------------------------ what it can do
    def runs_here(self, fmt: str) -> str | None:
        import export

        try:
            return export.runs_here(fmt)
        except ImportError:
            return None  # the format's module is not there: exporting will say so as the cell's error

    def describe(self) -> dict[str, Any]:
        """CPU model, cores, OS, Python and runtime versions: stored with every run."""
        from export.core import FORMATS, package_version

        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return {
            "device": self.name, "kind": self.kind, "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "allowed_cpus": allowed, "pinning": self._pin_note(), "memory_gb": _memory_gb(),
            "os": platform.platform(), "python": platform.python_version(),
            "runtimes": {f: {"runtime": s.runtime, **{p: package_version(p) for p in s.runtime_packages}}
                         for f, s in FORMATS.items()},
            "numpy": package_version("numpy"),
        }

    def _pin_note(self) -> str:
        if not self.pin:
            return "off"
        return f"cores {self.cpus}" if self.cpus else "the last `threads` cores of the allowed set"

    # ------------------------------------------------------------------------------------------ measuring
    def _worker_for(self, threads: int) -> Worker:
        if self._worker is not None and self._threads == threads:
            return self._worker
        self.close()
        n = str(threads)
        env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TOOLKIT_PIN": "1" if self.pin else "0", "TOOLKIT_THREADS": n,
               "TOOLKIT_CPUS": ",".join(map(str, self.cpus or []))}
        self._worker = Worker("devices.worker", env=env, label=f"{self.name} worker")
        self._threads = threads
        return self._worker

    def run(self, artifact: Any, *, iterations: int = 100, warmup: int = 10, threads: int = 1,
            timeout: float = 300.0, retries: int = 0, retry_cv: float = 0.10,
            retry_contention: float = 0.05) -> Measurement:
        """Time `artifact` (an Artifact or its directory): `warmup` untimed runs, then `iterations` timed ones.

        A timed loop with a coefficient of variation above `retry_cv` (or, with one thread, a median wall time more
        than `retry_contention` above its median CPU time) is re-run up to `retries` times while the cell's
        `timeout` allows, and the steadiest attempt is kept (see devices/worker.py).
        """
        if iterations < 2:
            raise ToolkitError(f"iterations must be at least 2, not {iterations}")
        directory = getattr(artifact, "dir", artifact)
        request = {"op": "measure", "artifact": str(Path(directory)), "iterations": int(iterations),
                   "warmup": int(warmup), "threads": int(threads), "retries": int(retries),
                   "retry_cv": float(retry_cv), "retry_contention": float(retry_contention),
                   "budget_s": 0.8 * timeout}
        try:
            reply = self._worker_for(threads).call(request, timeout)
        except WorkerError as exc:
            raise MeasureError(str(exc), exc.stage) from None
        if not reply.get("ok"):
            raise MeasureError(reply.get("error", "unknown error"), reply.get("stage", "run"))
        return Measurement(**reply["measurement"])

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._threads = None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None
