"""The measuring process of the host device (`python -m devices.worker`, driven by devices/host.py).

One request times a group of artifacts in interleaved rounds (the protocol is devices/rounds.py). Each member is
loaded with export.load(threads=N) (timed: load_ms), given its input (a seeded random image normalised with the
model's mean/std, made before any timing), run once (first_ms) and `warmup` times untimed. Then, round by round
in each round's shuffled order, every member runs `switch_warmup` untimed and `per_round` timed iterations, with
time.perf_counter_ns() around the inference call alone and the garbage collector off. Every sample is returned
with its round. Afterwards the same loop times an empty callable: the harness's own per-iteration cost, reported
so a reader can check it is negligible next to the fastest cell. A group of one with one round is the classic
single burst (`--rounds 1 --per-round 100`).

CPU time per iteration (time.process_time_ns, read outside the wall-clock window) is kept beside the latency. With
one thread it is what the inference costs when nothing else wants the core; wall time above it is time the
process sat preempted by a neighbour, so on a shared machine it tells contention from the model's own spread.

Native members (a host profile with runner = "native", devices/native): a .pte member is timed by the et-bench
program instead, one child process per call: once at load time (`warmup` untimed runs: load_ms, first_ms) and once
per chunk (`--warmup switch_warmup --iters per_round`; each call loads the program again and runs it once untimed
before its warm-up). Its samples are the program's own steady-clock and process-CPU times; its peak memory is the
child's (the largest over its calls), its harness overhead the program's clock-read cost.

Peak memory: Linux lets a process reset its peak RSS (write "5" to /proc/self/clear_refs). The worker resets it
before loading each member and reads VmHWM after the member's first runs, so a member's figure is what a worker
holding only that model would peak at: the worker's own resident memory before any member was loaded (~100 MB of
Python and imports) plus the rise this member caused. Where the reset is not allowed, the figure is left out.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.subproc import one_line, serve
from models.common import median
from models.errors import ToolkitError

CALIBRATION_ITERS = 2000
INPUT_SEED = 0


def worker_env(threads: int, pin: bool, cpus: list[int] | None = None) -> dict[str, str]:
    """The environment a measuring worker starts with (here or on a board): every runtime's thread variables set to
    `threads` (some read them when they first load), and how to pin (read by pin() below)."""
    n = str(threads)
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TOOLKIT_PIN": "1" if pin else "0", "TOOLKIT_THREADS": n}
    if cpus:
        env["TOOLKIT_CPUS"] = ",".join(map(str, cpus))
    return env


def timed_loop(fn: Callable[[Any], Any], x: Any, n: int) -> tuple[list[int], list[int]]:
    """Nanoseconds of each of n calls fn(x): wall clock around the call alone, and the process's CPU time.

    The CPU-time reads sit outside the wall-clock window, so they add nothing to the latency samples.
    """
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    wall, used = [0] * n, [0] * n
    for i in range(n):
        c0 = cpu()
        t0 = clock()
        fn(x)
        t1 = clock()
        used[i] = cpu() - c0
        wall[i] = t1 - t0
    return wall, used


def _empty(x: Any) -> None:
    return None


def harness_overhead_ns(x: Any, n: int = CALIBRATION_ITERS) -> float:
    """Median per-iteration cost of the timing loop itself (an empty callable through timed_loop)."""
    return median(timed_loop(_empty, x, n)[0])


def pin() -> list[int] | None:
    """Pin this process to the cores chosen by the driver (TOOLKIT_CPUS) or the last `threads` allowed ones."""
    if os.environ.get("TOOLKIT_PIN", "1") != "1" or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        allowed = sorted(os.sched_getaffinity(0))
        wanted = [int(c) for c in os.environ.get("TOOLKIT_CPUS", "").split(",") if c.strip()]
        if not wanted:
            n = max(1, int(os.environ.get("TOOLKIT_THREADS", "1")))
            wanted = allowed[-n:]
        os.sched_setaffinity(0, wanted)
        return sorted(os.sched_getaffinity(0))
    except (OSError, ValueError):
        return None  # not allowed here (containers, macOS): measure unpinned and say so


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _peak_rss_mb() -> float | None:
    return _status_mb("VmHWM")


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def make_input(manifest: dict[str, Any]):
    import numpy as np

    h, w = manifest["resolution"]
    spec = manifest.get("input", {})
    mean = np.asarray(spec.get("mean", (0.0, 0.0, 0.0)), np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.get("std", (1.0, 1.0, 1.0)), np.float32).reshape(1, 3, 1, 1)
    pixels = np.random.default_rng(INPUT_SEED).random((1, 3, h, w), dtype=np.float32)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


class _Member:
    """One artifact of a group, loaded in this worker: its runtime session, input and figures so far."""

    def __init__(self, artifact: str, runner: str = "python"):
        self.artifact = artifact
        self.runner = runner
        self.native: Any = None  # devices.native.NativeProgram of a native member
        self.overhead_us: float | None = None  # a native member's own harness cost
        self.fn: Callable[[Any], Any] | None = None
        self.x: Any = None
        self.runtime, self.versions = "", {}
        self.load_ns = self.first_ns = 0
        self.peak_mb: float | None = None
        self.wall: list[int] = []
        self.used: list[int] = []
        self.rounds: list[int] = []
        self.runtime_samples: list[float] = []  # the runtime's own per-iteration timer, where it has one (Core ML)
        self.error: tuple[str, str] | None = None  # (stage, message)


def _load(art: Any, threads: int, units: str | None, m: _Member) -> Any:
    """The member's inference callable: the format's own loader, or on a Mac Core ML with the asked compute units
    (devices/apple.py: Core ML's own timers beside the wall clock)."""
    import export

    if units and art.manifest.get("format") == "coreml":
        from devices.apple import CoreMLTimed

        m.runtime = f"{m.runtime} {units}"
        return CoreMLTimed(art.file, units)
    return export.load(art, threads=threads)


def _load_member(m: _Member, threads: int, warmup: int, base_rss_mb: float | None, units: str | None = None) -> None:
    """Load one member, run it once (first_ms) and `warmup` more times. Its peak memory is measured as if it were
    alone in the worker: the worker's own resident memory before any member was loaded, plus how far this
    member's loading and first runs raised the peak above what was resident just before (peak reset per member)."""
    import export
    from export.core import format_spec, package_version

    try:
        art = export.resolve(m.artifact)
        spec = format_spec(art.manifest["format"])
        m.x = make_input(art.manifest)
        m.runtime, m.versions = spec.runtime, {p: package_version(p) for p in spec.runtime_packages}
    except Exception as exc:  # noqa: BLE001 - reported as the member's error
        m.error = ("load", one_line(exc))
        return
    if m.runner == "native":
        _load_native(m, art, threads, warmup)
        return
    gc.collect()
    before = _rss_mb() if base_rss_mb is not None and _reset_peak_rss() else None
    try:
        t0 = time.perf_counter_ns()
        m.fn = _load(art, threads, units, m)
        m.load_ns = time.perf_counter_ns() - t0
    except Exception as exc:  # noqa: BLE001
        m.error = ("load", one_line(exc))
        return
    try:
        t0 = time.perf_counter_ns()
        m.fn(m.x)
        m.first_ns = time.perf_counter_ns() - t0
        for _ in range(warmup):
            m.fn(m.x)
    except Exception as exc:  # noqa: BLE001
        m.error, m.fn = ("run", one_line(exc)), None
        return
    peak = _peak_rss_mb() if before is not None else None
    if peak is not None and before is not None and base_rss_mb is not None:
        m.peak_mb = round(base_rss_mb + max(0.0, peak - before), 1)


def _load_native(m: _Member, art: Any, threads: int, warmup: int) -> None:
    """A native member: et-bench loads it, runs it once and `warmup` more times (load_ms, first_ms, peak memory)."""
    from devices.native import RUNTIME, NativeProgram

    try:
        m.native = NativeProgram(_NATIVE["binary"], art.file, m.x, threads=threads, timeout=_NATIVE["timeout"])
        r = m.native.call(warmup, 0)
    except Exception as exc:  # noqa: BLE001 - a MeasureError names its stage
        m.error = (getattr(exc, "stage", "load"), one_line(exc))
        return
    m.load_ns, m.first_ns = int(r.load_ms * 1e6), int(r.first_ms * 1e6)
    m.overhead_us = r.overhead_us
    m.runtime, m.versions = RUNTIME, m.native.versions()
    m.fn = m.native.call  # marks the member as loaded; its chunks run through _chunk


_NATIVE: dict[str, Any] = {"binary": None, "timeout": 300.0}  # from the request: the et-bench path, its deadline


def _chunk(m: _Member, per_round: int, switch_warmup: int) -> tuple[list[int], list[int]]:
    """One chunk of a member: `switch_warmup` untimed and `per_round` timed iterations (ns: wall, CPU)."""
    if m.native is not None:
        r = m.native.call(switch_warmup, per_round)
        return [round(s * 1e6) for s in r.samples_ms], [round(s * 1e6) for s in r.cpu_samples_ms]
    for _ in range(switch_warmup):
        m.fn(m.x)
    own = getattr(m.fn, "samples", None)  # Core ML's own predict timer (devices/apple.py), read per iteration
    if own is not None:
        own.clear()
    wall, used = timed_loop(m.fn, m.x, per_round)
    if own is not None:
        m.runtime_samples += own
    return wall, used


def measure_group(artifacts: list[str], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, cpus: list[int] | None, seed: int, first_round: int = 0,
                  runners: list[str] | None = None, units: str | None = None) -> dict[str, Any]:
    """Time a group of artifacts in interleaved rounds (devices/rounds.py): all loaded at once, `warmup` untimed
    runs each after loading, then for every round, in that round's order, `switch_warmup` untimed and `per_round`
    timed iterations of each member. A member that fails is reported as failed; the others go on."""
    from devices.rounds import plan

    base_rss = _rss_mb() if _reset_peak_rss() else None
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    members = [_Member(a, r) for a, r in zip(artifacts, runners or ["python"] * len(artifacts))]
    for m in members:
        _load_member(m, threads, warmup, base_rss, units)
    the_plan = plan(len(members), rounds, per_round, switch_warmup, seed, first_round)
    gc_on = gc.isenabled()
    gc.disable()
    try:
        for rnd, i in the_plan.chunks():
            m = members[i]
            if m.fn is None:
                continue
            try:
                wall, used = _chunk(m, per_round, switch_warmup)
            except Exception as exc:  # noqa: BLE001 - this member stops; the others go on
                m.error, m.fn = (getattr(exc, "stage", "run"), one_line(exc)), None
                continue
            m.wall += wall
            m.used += used
            m.rounds += [rnd] * per_round
        overhead = harness_overhead_ns(members[0].x if members[0].x is not None else 0)
    finally:
        if gc_on:
            gc.enable()
    out = []
    for m in members:
        if m.native is not None:
            m.native.close()
        if m.error is not None:
            out.append({"ok": False, "stage": m.error[0], "error": m.error[1]})
            continue
        out.append({"ok": True, "measurement": {
            "samples_ms": [s / 1e6 for s in m.wall], "cpu_samples_ms": [s / 1e6 for s in m.used],
            "rounds": m.rounds, "per_round": per_round, "switch_warmup": switch_warmup,
            "load_ms": m.load_ns / 1e6, "first_ms": m.first_ns / 1e6, "warmup": warmup, "threads": threads,
            "cpus": cpus, "peak_rss_mb": m.native.peak_mb if m.native is not None else m.peak_mb,
            "overhead_us": m.overhead_us if m.native is not None else overhead / 1e3, "loadavg": loadavg,
            "runtime_samples_ms": m.runtime_samples, "runtime": m.runtime, "runtime_versions": m.versions}})
        m.fn = None
    gc.collect()
    return {"ok": True, "members": out}


def outputs(artifact: str, inputs_b64: str, shape: list[int], threads: int, units: str | None,
            native_runner: str | None = None) -> dict[str, Any]:
    """The artifact's outputs for the given inputs (float32, base64): how parity is checked on a device (a Mac's
    Core ML, a board's runtimes) against the PyTorch reference computed on the driver's machine. With
    `native_runner`, a .pte is run by that et-bench (a board without executorch's Python runtime)."""
    import base64

    import numpy as np

    import export

    art = export.resolve(artifact)
    x = np.frombuffer(base64.b64decode(inputs_b64), dtype=np.float32).reshape(shape)
    if native_runner and art.manifest.get("format") == "executorch":
        from devices import native

        y = native.outputs(native_runner, art.file, x, threads=threads).reshape(len(x), -1)
        return {"ok": True, "shape": list(y.shape), "outputs_b64": base64.b64encode(y.tobytes()).decode()}
    m = _Member(artifact)
    fn = _load(art, threads, units, m)
    y = np.concatenate([np.asarray(fn(x[i:i + 1]), dtype=np.float32).reshape(1, -1) for i in range(len(x))])
    return {"ok": True, "shape": list(y.shape), "outputs_b64": base64.b64encode(y.tobytes()).decode()}


def main() -> None:
    cpus = pin()

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") == "outputs":
            try:
                return outputs(str(req["artifact"]), str(req["inputs_b64"]), list(req["shape"]),
                               int(req.get("threads", 1)), req.get("units"), req.get("native_runner"))
            except Exception as exc:  # noqa: BLE001 - one line back to the driver
                return {"ok": False, "stage": "run", "error": one_line(exc)}
        if req.get("op") != "measure_group":
            return {"ok": False, "stage": "run", "error": f"unknown request {req.get('op')!r}"}
        try:
            _NATIVE.update(binary=req.get("native_runner"), timeout=float(req.get("timeout", 300.0)))
            return measure_group(list(req["artifacts"]), rounds=int(req["rounds"]), per_round=int(req["per_round"]),
                                 warmup=int(req["warmup"]), switch_warmup=int(req["switch_warmup"]),
                                 threads=int(req["threads"]), cpus=cpus, seed=int(req["seed"]),
                                 first_round=int(req.get("first_round", 0)), runners=req.get("runners"),
                                 units=req.get("units"))
        except (ToolkitError, ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "stage": "load", "error": one_line(exc)}

    serve(handle)


if __name__ == "__main__":
    main()
