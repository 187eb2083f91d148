"""The host device: this machine's own runtimes (onnxruntime, LiteRT, ExecuTorch), timed in a worker process.

The driver never times anything itself. One persistent worker (`python -m devices.worker`) loads each artifact
with `export.load(threads=N)` and runs the timing loop; the answer comes back over a pipe. A worker is started
per thread count, with OMP/MKL/OpenBLAS thread variables set to N as well, because some runtimes read those
when they first load. A hung runtime is killed after the cell's timeout and a crashed one is reported with the
tail of its stderr; either way the next cell gets a fresh worker.

Pinning: the worker pins itself to `threads` cores with os.sched_setaffinity before any runtime creates its
threads (which inherit the mask). It takes the *last* cores of the allowed set, since core 0 usually takes more
interrupts; a profile can name the cores (`cpus = [2, 3]`) or switch pinning off (`pin = false`).

Runner: `runner = "native"` times the .pte members of a group through the native ExecuTorch program (et-bench,
devices/native) instead of executorch.runtime: the worker runs it once per member at load time and once per chunk of
the round protocol, as a child that inherits its pinning. Other formats stay in the worker. `native_runner = PATH`
names the binary; by default it is the `make native` build, which must exist (one line says to build it).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from devices.base import Kind, MeasureError, Measurement, OneBurst
from devices.subproc import Worker, WorkerError
from models.common import brief
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
    runner: str = "python"  # how .pte members are timed: executorch.runtime, or "native" (et-bench)
    native_runner: str | None = None  # the et-bench binary (default: the `make native` build)

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> HostProfile:
        valid = [f.name for f in fields(cls)]
        for key in prof:
            if key not in valid:
                raise ToolkitError(f"{where}: unknown key {brief(key)}; valid keys: {', '.join(valid)}")
        for key, typ, what in (("kind", str, "a string"), ("description", str, "a string"),
                               ("pin", bool, "true or false"), ("runner", str, "a string"),
                               ("native_runner", str, "a path (a string)")):
            if key in prof and not isinstance(prof[key], typ):
                raise ToolkitError(f"{where}: {key} must be {what}, not {brief(prof[key])}")
        cpus = prof.get("cpus")
        if cpus is not None:
            if (not isinstance(cpus, list) or not cpus
                    or not all(type(c) is int and not isinstance(c, bool) for c in cpus)):
                raise ToolkitError(f"{where}: cpus must be a list of core numbers, e.g. cpus = [1], not {brief(cpus)}")
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
        runner = prof.get("runner", "python")
        if runner not in RUNNERS:
            raise ToolkitError(f"{where}: runner must be one of {', '.join(RUNNERS)}, not {brief(runner)}")
        if "native_runner" in prof and runner != "native":
            raise ToolkitError(f"{where}: native_runner is set but runner is {brief(runner)}, not \"native\"")
        return cls(kind=prof.get("kind", "host"), description=prof.get("description", ""),
                   pin=prof.get("pin", True), cpus=cpus, runner=runner, native_runner=prof.get("native_runner"))


RUNNERS = ("python", "native")


class HostDevice(OneBurst):
    kind = "host"

    def __init__(self, name: str = "host", profile: HostProfile | None = None):
        profile = profile or HostProfile()
        self.name = name
        self.profile = profile
        self.pin = profile.pin
        self.cpus = list(profile.cpus) if profile.cpus else None
        self._worker: Worker | None = None
        self._threads: int | None = None
        self.native_binary: Path | None = None
        if profile.runner == "native":  # before any export or timing: a missing build is one line at once
            from devices.native import find_binary

            self.native_binary = find_binary(profile.native_runner)

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
            "runner": self.profile.runner,
            **({"native_runner": str(self.native_binary)} if self.native_binary else {}),
        }

    def check(self) -> tuple[list[str], list[str]]:
        """(facts, problems) for `devices check host`: which formats this machine can run, which runtime is missing."""
        import shutil

        from export.core import FORMATS, package_version

        facts = [f"this machine: {cpu_model()}, {os.cpu_count()} cores ({self.max_threads()} usable), "
                 f"{platform.platform()}, Python {platform.python_version()}"]
        problems, runnable = [], []
        for fmt, spec in FORMATS.items():
            why = self.can_run(fmt)
            missing = [p for p in spec.runtime_packages if package_version(p) in (None, "", "unknown")]
            if why is None and missing:
                problems.append(f"device {self.name}: cannot run {fmt}: {', '.join(missing)} not installed "
                                "(make setup)")
            elif why is None:
                runnable.append(fmt)
            else:
                facts.append(f"{fmt}: not run here ({why})")
        facts.append(f"formats it can run: {', '.join(runnable) or 'none'}")
        free = shutil.disk_usage(Path.cwd()).free / 2**30
        facts.append(f"free disk here: {free:.1f} GB")
        return facts, problems

    def _pin_note(self) -> str:
        if not self.pin:
            return "off"
        return f"cores {self.cpus}" if self.cpus else "the last `threads` cores of the allowed set"

    # ------------------------------------------------------------------------------------------ measuring
    def _worker_for(self, threads: int) -> Worker:
        if self._worker is not None and self._threads == threads:
            return self._worker
        self.close()
        from devices.worker import worker_env

        env = {**worker_env(threads, self.pin, self.cpus), "TOOLKIT_CPUS": ",".join(map(str, self.cpus or []))}
        self._worker = Worker("devices.worker", env=env, label=f"{self.name} worker")
        self._threads = threads
        return self._worker

    def run_group(self, artifacts: list[Any], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, timeout: float, seed: int, first_round: int = 0,
                  units: str | None = None) -> list[Measurement | MeasureError]:
        """Time a group in interleaved rounds, every member loaded in one worker (devices/worker.py). `timeout` is
        the whole group's: past it the worker is killed and MeasureError("timeout") raised."""
        return self.measure(artifacts, self.runners(artifacts), rounds=rounds, per_round=per_round, warmup=warmup,
                            switch_warmup=switch_warmup, threads=threads, timeout=timeout, seed=seed,
                            first_round=first_round, units=units)

    def runners(self, artifacts: list[Any]) -> list[str]:
        """How each member is timed: "native" for ExecuTorch members when the profile says runner = "native"."""
        if self.native_binary is None:
            return ["python"] * len(artifacts)
        return ["native" if _format_of(a) == "executorch" else "python" for a in artifacts]

    def measure(self, artifacts: list[Any], runners: list[str], *, rounds: int, per_round: int, warmup: int,
                switch_warmup: int, threads: int, timeout: float, seed: int, first_round: int = 0,
                units: str | None = None) -> list[Measurement | MeasureError]:
        """run_group with each member's runner given ("python" or "native"): a group may hold the same .pte twice,
        once per runner (`python -m devices.native compare`)."""
        if len(runners) != len(artifacts) or not set(runners) <= set(RUNNERS):
            raise ToolkitError(f"one runner ({', '.join(RUNNERS)}) per artifact expected, not {runners!r}")
        if rounds < 1 or per_round < 1 or rounds * per_round < 2:
            raise ToolkitError(f"a cell needs at least 2 timed iterations (rounds {rounds} x per round {per_round})")
        self.check_threads(threads)
        request = {"op": "measure_group", "artifacts": [str(Path(getattr(a, "dir", a))) for a in artifacts],
                   "rounds": int(rounds), "per_round": int(per_round), "warmup": int(warmup),
                   "switch_warmup": int(switch_warmup), "threads": int(threads), "seed": int(seed),
                   "first_round": int(first_round), "runners": list(runners), "timeout": float(timeout),
                   "units": units}
        if "native" in runners:
            if self.native_binary is None:
                from devices.native import find_binary

                self.native_binary = find_binary(self.profile.native_runner)
            request["native_runner"] = str(self.native_binary)
        try:
            reply = self._worker_for(threads).call(request, timeout)
        except WorkerError as exc:
            raise MeasureError(str(exc), exc.stage) from None
        if not reply.get("ok"):
            raise MeasureError(reply.get("error", "unknown error"), reply.get("stage", "run"))
        return [Measurement(**m["measurement"]) if m.get("ok") else MeasureError(m.get("error", "unknown error"),
                                                                                 m.get("stage", "run"))
                for m in reply["members"]]

    def outputs(self, artifact: Any, x: Any, *, threads: int = 1, units: str | None = None) -> Any:
        """The artifact's outputs on inputs x, computed in this device's worker (a parity check's device side)."""
        from devices.subproc import call_outputs

        try:
            return call_outputs(self._worker_for(threads), str(Path(getattr(artifact, "dir", artifact))), x,
                                threads=threads, units=units)
        except WorkerError as exc:
            raise MeasureError(str(exc), exc.stage) from None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._threads = None


KIND = Kind("host", HostProfile, HostDevice)


def _format_of(artifact: Any) -> str | None:
    """The artifact's format from its manifest (None when it has none that reads: the worker reports that)."""
    import export

    try:
        return export.resolve(artifact, verify=False).manifest.get("format")
    except ToolkitError:
        return None


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
