"""The parsers of programs that print raw per-iteration samples as data: our native runner's one JSON line and an
XCTest measure block (the `measured [...] values: [...]` line of `xcodebuild test`, or the JSON of `xcrun
xcresulttool get test-results metrics --compact`). Used through devices/parsers.py (`parse`), which checks every
result with `check_result`; the rules they keep (linear time, bounded counts, bounded JSON) are
devices/parse_base.py's.
"""

from __future__ import annotations

import math
from typing import Any

from devices.parse_base import (
    MAX_SAMPLES,
    MAX_THREADS,
    ParseError,
    ToolResult,
    check_count,
    lines,
    load_json,
    number,
    short_text,
)


# --------------------------------------------------------------------------------------------- native runner
def parse_native(text: str, expected: int | None = None) -> ToolResult:
    """Our native runner's one JSON line (devices/native/, `"tool": "et-bench"`), raw samples."""
    records = []
    for line in lines(text):
        s = line[line.find("{"):] if "{" in line else ""
        if '"tool"' not in s:
            continue
        obj = load_json(s, "the native runner's JSON line")
        if isinstance(obj, dict) and obj.get("tool") == "et-bench":
            records.append(obj)
            if len(records) > 1:
                raise ParseError("holds several native runner results; save one per file")
    if not records:
        raise ParseError("no JSON line of et-bench (the native runner: \"tool\": \"et-bench\")")
    obj = records[0]

    def floats(key: str, required: bool) -> list[float] | None:
        v = obj.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise ParseError(f"native runner field {key!r} is not a list of numbers")
        if len(v) > MAX_SAMPLES:
            raise ParseError(f"native runner field {key!r} holds {len(v)} values; one cell keeps at most "
                             f"{MAX_SAMPLES}")
        return [float(x) for x in v]

    def scalar(key: str, kind: type, lo: float = 0) -> Any:
        v = obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (
                kind is int and v != int(v)) or v < lo:
            raise ParseError(f"native runner field {key!r} is {v!r}, not a {'whole ' if kind is int else ''}number "
                             f"of at least {lo:g}")
        return kind(v)

    samples = floats("samples_ms", True)
    check_count("native runner", len(samples), expected)
    iters = scalar("iters", int)
    if iters is not None and iters != len(samples):
        raise ParseError(f"the native runner says it ran {iters} timed iterations but gives {len(samples)} samples")
    cpu = floats("cpu_samples_ms", False)
    if cpu is not None and len(cpu) != len(samples):
        raise ParseError(f"native runner gives {len(samples)} samples but {len(cpu)} CPU samples")
    threads = scalar("threads", int, 1)
    if threads is not None and threads > MAX_THREADS:
        raise ParseError(f"native runner field 'threads' is {threads}: more than {MAX_THREADS}")
    version = obj.get("tool_version")
    version = "?" if version is None else short_text(version, "the native runner's tool_version")
    known = {"tool", "load_ms", "first_ms", "warmup", "threads", "samples_ms", "cpu_samples_ms", "peak_rss_mb",
             "iters"}
    r = ToolResult("native", f"et-bench v{version}", len(samples), samples, True,
                   load_ms=scalar("load_ms", float), first_ms=scalar("first_ms", float),
                   warmup_runs=scalar("warmup", int), threads=threads, cpu_samples_ms=cpu or None,
                   peak_memory_mb=scalar("peak_rss_mb", float), extra={k: v for k, v in obj.items() if k not in known})
    r.mean_ms = math.fsum(samples) / len(samples)
    return r


# --------------------------------------------------------------------------------------------- xctest
_CLOCK_METRICS = ("Clock Monotonic Time", "Time")
_SECONDS = {"s": 1000.0, "seconds": 1000.0, "ms": 1.0}


def _values(text: str, unit: str, what: str) -> list[float]:
    if unit.strip() not in _SECONDS:
        raise ParseError(f"{what} is in {unit.strip()[:30]!r}, not seconds")
    scale = _SECONDS[unit.strip()]
    out = []
    for v in text.split(","):
        if v.strip():
            out.append(number(v, what) * scale)  # finite before scaling; check_result: finite and > 0 after it
            if len(out) > MAX_SAMPLES:
                raise ParseError(f"{what} holds more than {MAX_SAMPLES} values; one cell keeps at most that many")
    return out


def _measure_line(line: str) -> tuple[str, str, str, str, bool] | None:
    """(test, metric, unit, values text, closed) of a `Test Case '...' measured [M, U] average: ..., values: [...]`
    line, or None (str methods only: linear in the line)."""
    at = line.find("' measured [")
    if at < 0:
        return None
    start = line.rfind("Test Case '", 0, at)
    if start < 0:
        return None
    test = line[start + 11:at]
    rest = line[at + 12:]
    end = rest.find("]")
    if end < 0 or not rest[end:].startswith("] average: "):
        return None
    metric, sep, unit = rest[:end].partition(", ")
    if not sep:
        return None
    values_at = rest.find(", values: [", end)
    if values_at < 0:
        return None
    values = rest[values_at + 11:]
    close = values.find("]")
    return test, metric, unit, values[:close] if close >= 0 else values, close >= 0


def parse_xctest(text: str, expected: int | None = None) -> ToolResult:
    """An XCTest measure block: the `measured [Clock Monotonic Time, s] ... values: [...]` line of `xcodebuild
    test` (legacy `[Time, seconds]`), or the JSON of `xcrun xcresulttool get test-results metrics --compact`."""
    stripped = text.strip()
    if stripped[:1] in "[{" and '"testRuns"' in stripped:
        return _xcresult(stripped, expected)
    clock: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    legacy = False
    for i, line in enumerate(lines(text), 1):
        m = _measure_line(line)
        if not m:
            continue
        test, metric, unit, values, closed = m
        if not closed:
            raise ParseError(f"line {i}: the values list is cut off (truncated output)")
        if metric in _CLOCK_METRICS:
            if test in clock:
                raise ParseError(f"test {short_text(test, 'the test name')} is measured twice; save one run per file")
            clock[test] = _values(values, unit, f"{metric} values (line {i})")
            legacy = legacy or metric == "Time"
        elif metric == "CPU Time":
            cpu[test] = _values(values, unit, f"CPU Time values (line {i})")
    if not clock:
        raise ParseError("no 'measured [Clock Monotonic Time, s]' or '[Time, seconds]' line (only other metrics, or "
                         "truncated)")
    if len(clock) > 1:
        raise ParseError(f"measures {len(clock)} tests; save one test's output per file")
    test, samples = next(iter(clock.items()))
    check_count("xctest", len(samples), expected)
    cpu_s = cpu.get(test)
    r = ToolResult("xctest", "measure line (legacy Time)" if legacy else "measure line", len(samples), samples, True,
                   cpu_samples_ms=cpu_s if cpu_s and len(cpu_s) == len(samples) else None,
                   extra={"test": short_text(test, "the test name")})
    r.mean_ms = math.fsum(samples) / len(samples)
    return r


def _dicts(value: Any, what: str) -> list[dict[str, Any]]:
    """A JSON list of objects (an absent value: none), else ParseError: the xcresult JSON's shape, checked."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ParseError(f"xcresulttool JSON: {what} is not a list of objects")
    return value


def _xcresult(text: str, expected: int | None) -> ToolResult:
    data = load_json(text, "xcresulttool JSON")
    tests = _dicts(data if isinstance(data, list) else [data], "the top level")
    found = []
    for t in tests:
        for run in _dicts(t.get("testRuns"), "testRuns"):
            metrics = {}
            for m in _dicts(run.get("metrics"), "metrics"):
                metrics.setdefault(str(m.get("displayName"))[:100], m)
            clock = next((metrics[k] for k in _CLOCK_METRICS if k in metrics), None)
            if clock is None:
                clock = next((m for m in metrics.values() if "Clock" in str(m.get("identifier", ""))[:200]
                              or "WallClockTime" in str(m.get("identifier", ""))[:200]), None)
            if clock is not None:
                found.append((t.get("testIdentifier", "?"), run, clock, metrics.get("CPU Time")))
    if not found:
        raise ParseError("xcresulttool JSON has no clock-time metric (no XCTClockMetric measure in this bundle)")
    if len(found) > 1:
        raise ParseError(f"xcresulttool JSON holds {len(found)} measured test runs; pass --test-id to xcresulttool")
    test, run, clock, cpu = found[0]

    def series(metric: dict[str, Any], what: str) -> list[float]:
        vals = metric.get("measurements")
        if not isinstance(vals, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in vals):
            raise ParseError(f"xcresulttool JSON: {what} measurements are not a list of numbers")
        return _values(",".join(repr(float(v)) for v in vals), str(metric.get("unitOfMeasurement", "s"))[:30], what)

    samples = series(clock, str(clock.get("displayName"))[:100])
    check_count("xctest", len(samples), expected)
    cpu_s = series(cpu, "CPU Time") if cpu else None
    device = run.get("device") if isinstance(run.get("device"), dict) else {}
    r = ToolResult("xctest", "xcresulttool json", len(samples), samples, True,
                   cpu_samples_ms=cpu_s if cpu_s and len(cpu_s) == len(samples) else None,
                   extra={"test": short_text(test, "testIdentifier"),
                          **{k: short_text(device[k], k) for k in ("deviceName", "modelName", "osVersion")
                             if k in device}})
    r.mean_ms = math.fsum(samples) / len(samples)
    return r
