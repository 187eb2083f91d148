"""The measuring process of the host device (`python -m devices.worker`, driven by devices/host.py).

For each request: load the artifact with export.load(threads=N) (timed: load_ms), prepare the input (a seeded
random image normalised with the model's mean/std, made before any timing), run once (first_ms), run `warmup`
times untimed, then `iterations` times with time.perf_counter_ns() around the inference call alone. The garbage
collector is off during the timed loop. Afterwards the same loop times an empty callable: that is the harness's
own per-iteration cost, reported so a reader can check it is negligible next to the fastest cell.

CPU time per iteration (time.process_time_ns, read outside the wall-clock window) is kept beside the latency. With
one thread it is what the inference costs when nothing else wants the core; wall time above it is time the
process sat preempted by a neighbour, so on a shared machine it tells contention from the model's own spread.

Retries: if the caller allows them, a timed loop that is not steady (coefficient of variation above `retry_cv`, or
with one thread a median wall time more than `retry_contention` above the median CPU time: a neighbour had the
core) is run again on the same loaded session after a pause, up to `retries` more times and within the time
budget; the steadiest attempt is returned, with every attempt's CV for the record.

Peak memory: Linux lets a process reset its peak RSS (write "5" to /proc/self/clear_refs); the worker does so
before loading, then reads VmHWM after the loop, so the figure is this cell's peak (runtime + model + buffers,
plus the worker's own ~100 MB of Python and imports). Where the reset is not allowed, the figure is left out.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.subproc import one_line, serve
from models.common import CONTENTION_BOUND, UNSTABLE_CV, median
from models.errors import ToolkitError

CALIBRATION_ITERS = 2000
INPUT_SEED = 0
RETRY_PAUSE_S = 1.0  # times the attempt number


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


def cv(samples: list[int]) -> float:
    n = len(samples)
    mean = sum(samples) / n
    var = sum((s - mean) ** 2 for s in samples) / (n - 1)
    return (var ** 0.5) / mean if mean > 0 else float("inf")


def unsteadiness(wall: list[int], used: list[int], threads: int, retry_cv: float, retry_contention: float) -> float:
    """How far a timed loop is from steady (<= 1: steady): its CV against retry_cv and, with one thread, how much
    its median wall time exceeds its median CPU time, against retry_contention."""
    score = cv(wall) / retry_cv if retry_cv > 0 else float("inf")
    cpu = median(used)
    if threads == 1 and cpu > 0 and retry_contention > 0:
        score = max(score, (median(wall) / cpu - 1) / retry_contention)
    return score


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


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def make_input(manifest: dict[str, Any]):
    import numpy as np

    h, w = manifest["resolution"]
    spec = manifest.get("input", {})
    mean = np.asarray(spec.get("mean", (0.0, 0.0, 0.0)), np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.get("std", (1.0, 1.0, 1.0)), np.float32).reshape(1, 3, 1, 1)
    pixels = np.random.default_rng(INPUT_SEED).random((1, 3, h, w), dtype=np.float32)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


class Failure(Exception):
    def __init__(self, stage: str, exc: BaseException):
        super().__init__(one_line(exc))
        self.stage = stage


def measure(artifact: str, iterations: int, warmup: int, threads: int, cpus: list[int] | None, *,
            retries: int = 0, retry_cv: float = UNSTABLE_CV, retry_contention: float = CONTENTION_BOUND,
            budget_s: float = float("inf")) -> dict[str, Any]:
    import export
    from export.core import format_spec, package_version

    try:
        art = export.resolve(artifact)
        spec = format_spec(art.manifest["format"])
        x = make_input(art.manifest)
    except Exception as exc:  # noqa: BLE001 - reported as the cell's error
        raise Failure("load", exc) from None
    gc.collect()
    rss_known = _reset_peak_rss()
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.monotonic()
    try:
        t0 = time.perf_counter_ns()
        fn = export.load(art, threads=threads)
        load_ns = time.perf_counter_ns() - t0
    except Exception as exc:  # noqa: BLE001
        raise Failure("load", exc) from None
    try:
        t0 = time.perf_counter_ns()
        fn(x)
        first_ns = time.perf_counter_ns() - t0
        for _ in range(warmup):
            fn(x)
        attempts = []
        while True:
            t_attempt = time.monotonic()
            gc_on = gc.isenabled()
            gc.disable()
            try:
                wall, used = timed_loop(fn, x, iterations)
                overhead = harness_overhead_ns(x)
            finally:
                if gc_on:
                    gc.enable()
            attempts.append((unsteadiness(wall, used, threads, retry_cv, retry_contention), wall, used))
            took = time.monotonic() - t_attempt
            if (attempts[-1][0] <= 1 or len(attempts) > retries
                    or time.monotonic() - started + took + RETRY_PAUSE_S * len(attempts) > budget_s):
                break
            time.sleep(RETRY_PAUSE_S * len(attempts))  # a longer pause each time: let a neighbour's burst pass
    except Exception as exc:  # noqa: BLE001
        raise Failure("run", exc) from None
    peak = _peak_rss_mb() if rss_known else None
    del fn
    gc.collect()
    _, wall, used = min(attempts, key=lambda a: a[0])  # the steadiest attempt
    return {"samples_ms": [s / 1e6 for s in wall], "cpu_samples_ms": [s / 1e6 for s in used],
            "load_ms": load_ns / 1e6, "first_ms": first_ns / 1e6, "warmup": warmup, "threads": threads,
            "cpus": cpus, "peak_rss_mb": peak, "overhead_us": overhead / 1e3, "loadavg": loadavg,
            "attempt_cvs": [round(cv(a[1]), 5) for a in attempts], "runtime": spec.runtime,
            "runtime_versions": {p: package_version(p) for p in spec.runtime_packages}}


def main() -> None:
    cpus = pin()

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") != "measure":
            return {"ok": False, "stage": "run", "error": f"unknown request {req.get('op')!r}"}
        try:
            m = measure(req["artifact"], req["iterations"], req["warmup"], req["threads"], cpus,
                        retries=req.get("retries", 0), retry_cv=req.get("retry_cv", UNSTABLE_CV),
                        retry_contention=req.get("retry_contention", CONTENTION_BOUND),
                        budget_s=req.get("budget_s", float("inf")))
        except Failure as exc:
            return {"ok": False, "stage": exc.stage, "error": str(exc)}
        except ToolkitError as exc:
            return {"ok": False, "stage": "load", "error": one_line(exc)}
        return {"ok": True, "measurement": m}

    serve(handle)


if __name__ == "__main__":
    main()
