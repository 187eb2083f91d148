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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from devices.base import Kind, MeasureError, Measurement
from devices.subproc import Worker, WorkerError
from devices.worker import unsteadiness
from models.common import CONTENTION_BOUND, UNSTABLE_CV
from models.errors import ToolkitError


def allowed_cpus() -> list[int]:
    """The cores this process may run on (its affinity mask), or all of them where the OS has no masks."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class HostProfile:
    """The keys a host profile may have. Unknown keys, wrong types and cores this machine does not let us use are
    one line each, naming the key, the profile and the file."""

    kind: str = "host"
    description: str = ""
    pin: bool = True
    cpus: tuple[int, ...] | None = None
    retries: int = 2  # re-time an unstable loop up to this many times (see _RetryPolicy); 0 = never

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> HostProfile:
        valid = [f.name for f in fields(cls)]
        for key in prof:
            if key not in valid:
                raise ToolkitError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        for key, typ, what in (("kind", str, "a string"), ("description", str, "a string"),
                               ("pin", bool, "true or false")):
            if key in prof and not isinstance(prof[key], typ):
                raise ToolkitError(f"{where}: {key} must be {what}, not {prof[key]!r}")
        retries = prof.get("retries", 2)
        if type(retries) is not int or not 0 <= retries <= 100:
            raise ToolkitError(f"{where}: retries must be a whole number from 0 to 100, not {retries!r}")
        cpus = prof.get("cpus")
        if cpus is not None:
            if (not isinstance(cpus, list) or not cpus
                    or not all(type(c) is int and not isinstance(c, bool) for c in cpus)):
                raise ToolkitError(f"{where}: cpus must be a list of core numbers, e.g. cpus = [1], not {cpus!r}")
            allowed = allowed_cpus()
            bad = sorted(set(cpus) - set(allowed))
            if bad:
                raise ToolkitError(f"{where}: cpus {bad} cannot be used here; this process may use cores "
                                   f"{allowed}")
            if len(set(cpus)) != len(cpus):
                raise ToolkitError(f"{where}: cpus lists a core twice: {cpus}")
            if prof.get("pin") is False:
                raise ToolkitError(f"{where}: cpus names cores to pin to, but pin = false")
            cpus = tuple(cpus)
        return cls(kind=prof.get("kind", "host"), description=prof.get("description", ""),
                   pin=prof.get("pin", True), cpus=cpus, retries=retries)


class _RetryPolicy:
    """Re-time unstable loops only while re-timing helps.

    On this machine a neighbour's burst passes within seconds (a retry then rescues the cell), but a neighbour's
    long job keeps a core shared for minutes, and then every retry fails too and only triples the sweep's time.
    So after GIVE_UP retried cells in a row that stayed unstable, cells get one attempt, until a cell comes out
    steady at once, which says the machine is quiet again.
    """

    GIVE_UP = 3

    def __init__(self, retries: int):
        self.retries = retries
        self.failed_in_a_row = 0

    def now(self) -> int:
        return self.retries if self.failed_in_a_row < self.GIVE_UP else 0

    def record(self, attempts: int, unstable: bool) -> None:
        if not unstable:
            self.failed_in_a_row = 0
        elif attempts > 1:
            self.failed_in_a_row += 1


class HostDevice:
    kind = "host"

    def __init__(self, name: str = "host", profile: HostProfile | None = None):
        profile = profile or HostProfile()
        self.name = name
        self.profile = profile
        self.pin = profile.pin
        self.cpus = list(profile.cpus) if profile.cpus else None
        self._worker: Worker | None = None
        self._threads: int | None = None
        self._retry = _RetryPolicy(profile.retries)

    def max_threads(self) -> int:
        """The most threads a cell can honestly use: the cores it is pinned to choose from, or all allowed."""
        return len(self.cpus) if self.cpus else len(allowed_cpus())

    def check_threads(self, threads: int) -> None:
        if type(threads) is not int or threads < 1:
            raise ToolkitError(f"threads must be a whole number of at least 1, not {threads!r}")
        if threads > self.max_threads():
            where = f"the cores {self.cpus} of its profile" if self.cpus else f"{self.max_threads()} core(s)"
            raise ToolkitError(f"device {self.name} cannot run {threads} threads: it has {where}")

    # ------------------------------------------------------------------------------------------ what it can do
    def can_run(self, fmt: str) -> str | None:
        import export

        try:
            return export.runs_here(fmt)
        except ImportError:
            return None  # the format's module is not there: exporting will say so as the cell's error

    def describe(self) -> dict[str, Any]:
        """CPU model, cores, OS, Python and runtime versions: stored with every run."""
        from export.core import FORMATS, package_version

        return {
            "device": self.name, "kind": self.kind, "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "allowed_cpus": allowed_cpus(), "max_threads": self.max_threads(),
            "pinning": self._pin_note(), "memory_gb": _memory_gb(),
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
            timeout: float = 300.0) -> Measurement:
        """Time `artifact` (an Artifact or its directory): `warmup` untimed runs, then `iterations` timed ones.

        A timed loop that is not steady (CV above UNSTABLE_CV, or with one thread a median wall time more than
        CONTENTION_BOUND above its median CPU time) is re-run up to the profile's `retries` times while the cell's
        `timeout` allows, and the steadiest attempt is kept (see devices/worker.py and _RetryPolicy).
        """
        if iterations < 2:
            raise ToolkitError(f"iterations must be at least 2, not {iterations}")
        self.check_threads(threads)
        directory = getattr(artifact, "dir", artifact)
        request = {"op": "measure", "artifact": str(Path(directory)), "iterations": int(iterations),
                   "warmup": int(warmup), "threads": int(threads), "retries": self._retry.now(),
                   "retry_cv": UNSTABLE_CV, "retry_contention": CONTENTION_BOUND, "budget_s": 0.8 * timeout}
        try:
            reply = self._worker_for(threads).call(request, timeout)
        except WorkerError as exc:
            raise MeasureError(str(exc), exc.stage) from None
        if not reply.get("ok"):
            raise MeasureError(reply.get("error", "unknown error"), reply.get("stage", "run"))
        m = Measurement(**reply["measurement"])
        steady = unsteadiness(m.samples_ms, m.cpu_samples_ms or m.samples_ms, threads, UNSTABLE_CV,
                              CONTENTION_BOUND) <= 1  # the worker's own rule
        self._retry.record(len(m.attempt_cvs), not steady)
        return m

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._threads = None


KIND = Kind("host", HostProfile, HostDevice)


def cpu_model() -> str:
    """The CPU's brand string (py-cpuinfo), or the platform's processor name."""
    try:
        import cpuinfo

        brand = cpuinfo.get_cpu_info().get("brand_raw")
        if brand:
            return str(brand)
    except Exception:  # noqa: BLE001 - a probe that fails leaves the platform's name
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        return None
