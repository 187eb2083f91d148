"""Parsers for the saved output of native benchmark programs: pure functions from text to one `ToolResult`.

    parse(text, tool=None, expected=None) -> ToolResult     (tool=None: detect() says which program wrote it)
    detect(text) -> tool name                              (benchmark_model, executor_runner, native,
                                                             onnxruntime_perf_test, xctest)

What each program prints (docs/devices.md and /work/shared/DEVICES.md quote the lines):
  benchmark_model, classic TFLite tool: aggregates only (count/first/curr/min/max/avg/std, newer builds p5/median/
      p95, in microseconds, `%g` numbers), plus `Inference timings in us: Init, First inference, Warmup (avg),
      Inference (avg)` (very old builds: `Average inference timings in us: Warmup, Init, no stats`). Prefixes
      `INFO: ` (newer), none (older) or logcat's `I tflite  : ` (the APK).
  benchmark_model, LiteRT's CompiledModel tool (same name): a `BENCHMARK RESULTS` block in milliseconds,
      `Inference (avg): 12.34 ms (100 runs)`, min/max/std, `Model initialization`, `Warmup (first)`.
  executor_runner: `Iteration i of N: X ms` per execution (raw samples; iteration 1 is cold, as the runner has no
      warm-up flag, so it is `first_ms`, not a sample), `Model loaded in X ms.`, `Model executed successfully N
      time(s) in T ms.`; older runners print only the last line (an aggregate: the mean of N, cold one included).
  native: our runner's one JSON line (`"tool": "et-bench"`, devices/native/), raw samples.
  onnxruntime_perf_test: aggregates; percentiles in seconds, the average in ms (new label `Average inference time
      cost total`, old `Average inference time cost`).
  xctest: `measured [Clock Monotonic Time, s] ... values: [...]` (legacy `[Time, seconds]`) or the JSON of
      `xcrun xcresulttool get test-results metrics --compact`: raw samples. The rounded `average:` is never used.

Where a program prints only aggregates, `raw_samples` is False and `samples_ms` None: no sample is ever made up.
Bad text (another program's output, truncated, a zero count, an unparsable number, a count that differs from the
expected one) raises ParseError, a ToolkitError with one line. All times in the result are milliseconds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from models.errors import ToolkitError

TOOLS = ("benchmark_model", "executor_runner", "native", "onnxruntime_perf_test", "xctest")
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"  # what printf's %f / %g / %e print for a finite number
_NUM_RE = re.compile(NUM)


class ParseError(ToolkitError):
    """The text is not a complete, sane output of the program it was taken for (one line)."""


@dataclass
class ToolResult:
    """One benchmark program's result for one model. Fields the program did not print stay None."""

    tool: str  # one of TOOLS
    variant: str  # which build or form of the output, e.g. "tflite classic", "litert compiled-model"
    count: int  # timed iterations the program reports
    samples_ms: list[float] | None  # one per timed iteration, in order (None: the program prints aggregates only)
    raw_samples: bool
    mean_ms: float | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p5_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    load_ms: float | None = None  # loading / initialising the model (benchmark_model's Init, ORT's session)
    first_ms: float | None = None  # the first inference after loading
    warmup_ms: float | None = None  # average warm-up iteration
    warmup_runs: int | None = None
    peak_memory_mb: float | None = None
    delegate: str | None = None
    threads: int | None = None
    cpu_samples_ms: list[float] | None = None  # process CPU time per timed iteration (native, xctest)
    extra: dict[str, Any] = field(default_factory=dict)  # what else the program printed (QPS, CPU %, test, ...)

    def aggregates(self) -> dict[str, float | int]:
        """The printed figures that are set, by name (for storing beside an aggregate-only cell)."""
        names = ("count", "mean_ms", "median_ms", "min_ms", "max_ms", "std_ms", "p5_ms", "p90_ms", "p95_ms", "p99_ms")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


# --------------------------------------------------------------------------------------------- helpers
def number(text: str, what: str) -> float:
    """A finite number as a program printed it (%f, %g: `1.24027e+06`), else ParseError naming `what`."""
    t = text.strip()
    if not _NUM_RE.fullmatch(t):
        raise ParseError(f"unparsable number {t[:30]!r} for {what}")
    v = float(t)
    if not math.isfinite(v):
        raise ParseError(f"number {t[:30]!r} for {what} is not finite")
    return v


def _whole(text: str, what: str) -> int:
    v = number(text, what)
    if v != int(v) or v < 0:
        raise ParseError(f"{what} is {text.strip()!r}, not a whole number")
    return int(v)


def _search(pattern: str, text: str, what: str, *, required: str | None = None) -> float | None:
    """The number captured by the last match of `pattern` (group 1); None, or ParseError(required) if absent."""
    found = re.findall(pattern, text, re.MULTILINE)
    if not found:
        if required:
            raise ParseError(required)
        return None
    return number(found[-1] if isinstance(found[-1], str) else found[-1][0], what)


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _check_count(tool: str, count: int, expected: int | None) -> None:
    if count <= 0:
        raise ParseError(f"{tool} reports count={count}: no timed iteration ran")
    if expected is not None and count != expected:
        raise ParseError(f"{tool} ran {count} timed iterations, {expected} were expected")


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


# --------------------------------------------------------------------------------------------- detection
_SIGNS = (  # (tool, pattern): the first that matches names the program; the order matters (see detect)
    ("native", r'^\s*\{.*"tool"\s*:\s*"et-bench"'),
    ("xctest", r'"testRuns"\s*:|measured \[[^\]]*\] average:'),
    ("onnxruntime_perf_test", r"inference time cost|Session creation time cost|^\s*P50 Latency:"),
    ("executor_runner", r"Model executed successfully|Iteration \d+ of \d+: |executorch:executor_runner"),
    ("benchmark_model", r"Inference timings in us|\bcount=\d|Running benchmark for at least|Inference \(avg\):|"
                        r"BENCHMARK RESULTS"),
)


def detect(text: str) -> str:
    """Which program produced `text` (one of TOOLS); ParseError when none of them did."""
    for tool, pattern in _SIGNS:
        if re.search(pattern, text, re.MULTILINE):
            return tool
    raise ParseError("not the output of benchmark_model, executor_runner, the native runner, onnxruntime_perf_test "
                     "or xctest (none of their result lines is there)")


def parse(text: str, tool: str | None = None, expected: int | None = None) -> ToolResult:
    """Parse one program's saved output. Args:
        text: the output as saved (stdout, stderr or logcat; any mix of prefixes).
        tool: the program that wrote it (default: detect it); text from another program is a ParseError.
        expected: the timed iterations the program was asked for; a different count is a ParseError.
    """
    if tool is not None and tool not in TOOLS:
        raise ParseError(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")
    if not text.strip():
        raise ParseError("the output is empty")
    found = detect(text)
    if tool is not None and found != tool:
        raise ParseError(f"this is {found} output, not {tool} output")
    return PARSERS[found](text, expected)


# --------------------------------------------------------------------------------------------- benchmark_model
_STAT = re.compile(r"\bcount=(\S+)(.*)$")
_SUMMARY = re.compile(r"Inference timings in us: (.*)$")
_OLD_SUMMARY = re.compile(r"Average inference timings in us: (.*)$")
_LITERT_AVG = re.compile(rf"Inference \(avg\):\s*({NUM})\s*ms\s*\((\d+) runs\)")


def _stat_line(rest_count: str, rest: str, where: str) -> dict[str, float]:
    """count=N [first= curr= min= max= avg= std= [p5= median= p95=]] | count=N curr=X[(all same)] | count=0."""
    out = {"count": _whole(rest_count, f"count= ({where})")}
    if "(all same)" in rest:
        rest = rest.replace("(all same)", "")
        out["all_same"] = 1
    for key, val in re.findall(r"\b(\w+)=(\S+)", rest):
        out[key] = number(val, f"{key}= ({where})")
    return out


def _delegate(text: str) -> str | None:
    applied = re.findall(r"Explicitly applied (\S+) delegate, and the model graph will be (\w+) executed by the "
                         r"delegate(?: w/ (\d+) delegate kernels)?", text)
    replaced = re.findall(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\)", text)
    parts = []
    for name, how, kernels in applied:
        parts.append(f"{name} ({how}" + (f", {kernels} delegate kernels)" if kernels else ")"))
    for n, m, name in replaced:
        parts.append(f"{name}: {n} of {m} nodes")
    return "; ".join(dict.fromkeys(parts)) or None


def _benchmark_common(text: str, r: ToolResult) -> None:
    threads = re.findall(r"Num threads: \[(\d+)\]", text)
    r.threads = int(threads[-1]) if threads else None
    r.delegate = _delegate(text)
    peak = _search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})", text, "peak memory")
    if peak is None:
        peak = _search(rf"Peak memory footprint \(MB\): init=\S+ overall=({NUM})", text, "peak memory")
    if peak is None:
        peak = _search(rf"Peak memory:\s*({NUM}) MB", text, "peak memory")
    r.peak_memory_mb = peak
    delta = re.findall(rf"Memory footprint delta from the start of the tool \(MB\): init=({NUM}) overall=({NUM})",
                       text)
    if delta:
        r.extra["memory_delta_mb"] = {"init": float(delta[-1][0]), "overall": float(delta[-1][1])}


def parse_benchmark_model(text: str, expected: int | None = None) -> ToolResult:
    """TFLite's classic `benchmark_model` or LiteRT's CompiledModel tool of the same name (told apart by LiteRT's
    `Inference (avg): X ms (N runs)` line). Aggregates only: raw_samples is False, except with count=1 (the one
    value is the sample) or `count=N curr=X(all same)` (every sample is X)."""
    stats = []
    for i, line in enumerate(_lines(text), 1):
        m = _STAT.search(line)
        if m:
            stats.append(_stat_line(m.group(1), m.group(2), f"line {i}"))
    if _LITERT_AVG.search(text):
        return _litert(text, stats, expected)
    summaries = [m.group(1) for line in _lines(text) if (m := _SUMMARY.search(line))]
    old = [m.group(1) for line in _lines(text) if (m := _OLD_SUMMARY.search(line))]
    if len(summaries) + len(old) > 1:
        raise ParseError(f"holds {len(summaries) + len(old)} benchmark runs; save one run per file")
    if not summaries and not old:
        raise ParseError("truncated benchmark_model output: no 'Inference timings in us' line (the run did not "
                         "finish, or the file was cut)")
    if not stats:
        raise ParseError("truncated benchmark_model output: no 'count=' statistics line")
    inf = stats[-1]
    count = int(inf["count"])
    _check_count("benchmark_model", count, expected)
    r = ToolResult("benchmark_model", "tflite classic" if summaries else "tflite classic (old labels)", count, None,
                   False)
    if count == 1 or inf.get("all_same"):
        v = _ms(inf["curr"])
        r.samples_ms, r.raw_samples = [v] * count, True
        r.mean_ms = r.median_ms = r.min_ms = r.max_ms = v
        r.std_ms = 0.0 if count > 1 else None
    else:
        missing = [k for k in ("min", "max", "avg", "std") if k not in inf]
        if missing:
            raise ParseError(f"the statistics line lacks {', '.join(k + '=' for k in missing)} (truncated?)")
        r.mean_ms, r.min_ms, r.max_ms, r.std_ms = (_ms(inf[k]) for k in ("avg", "min", "max", "std"))
        r.median_ms, r.p5_ms, r.p95_ms = (_ms(inf.get(k)) for k in ("median", "p5", "p95"))
        r.extra["first_of_timed_ms"] = _ms(inf.get("first"))
    if len(stats) >= 2:
        r.warmup_runs = int(stats[-2]["count"])
    if summaries:
        fields = dict(re.findall(r"([A-Za-z][A-Za-z ()]*?): (\S+?)(?:,|$)", summaries[0].strip()))
        r.load_ms = _ms(number(fields["Init"], "Init")) if "Init" in fields else None
        r.first_ms = _ms(number(fields["First inference"], "First inference")) if "First inference" in fields \
            else None
        r.warmup_ms = _ms(number(fields["Warmup (avg)"], "Warmup (avg)")) if "Warmup (avg)" in fields else None
        avg = fields.get("Inference (avg)")
    else:
        fields = dict(re.findall(r"([A-Za-z][A-Za-z ]*?): (\S+?)(?:,|$)", old[0].strip()))
        r.load_ms = _ms(number(fields["Init"], "Init")) if "Init" in fields else None
        r.warmup_ms = _ms(number(fields["Warmup"], "Warmup")) if "Warmup" in fields else None
        avg = fields.get("no stats", fields.get("Inference"))
    if avg is None:
        raise ParseError("the 'Inference timings in us' line has no inference average (truncated?)")
    avg_ms = _ms(number(avg, "Inference (avg)"))
    if r.mean_ms is not None and abs(avg_ms - r.mean_ms) > 1e-3 * max(avg_ms, 1e-9) + 1e-6:
        raise ParseError(f"the summary's Inference (avg) {avg} us disagrees with the statistics line's avg "
                         f"({r.mean_ms * 1000:g} us): two runs mixed in one file?")
    r.mean_ms = avg_ms if r.mean_ms is None else r.mean_ms
    _benchmark_common(text, r)
    return r


def _litert(text: str, stats: list[dict[str, float]], expected: int | None) -> ToolResult:
    avgs = _LITERT_AVG.findall(text)
    if len(avgs) > 1:
        raise ParseError(f"holds {len(avgs)} benchmark runs; save one run per file")
    count = int(avgs[0][1])
    _check_count("benchmark_model (LiteRT)", count, expected)
    r = ToolResult("benchmark_model", "litert compiled-model", count, None, False)
    r.mean_ms = number(avgs[0][0], "Inference (avg)")
    r.min_ms = _search(rf"Inference \(min\):\s*({NUM})\s*ms", text, "Inference (min)")
    r.max_ms = _search(rf"Inference \(max\):\s*({NUM})\s*ms", text, "Inference (max)")
    r.std_ms = _search(rf"Inference \(std\):\s*({NUM})", text, "Inference (std)")
    r.load_ms = _search(rf"Model initialization:\s*({NUM})\s*ms", text, "Model initialization")
    r.first_ms = _search(rf"Warmup \(first\):\s*({NUM})\s*ms", text, "Warmup (first)")
    warm = re.findall(rf"Warmup \(avg\):\s*({NUM})\s*ms\s*\((\d+) runs\)", text)
    if warm:
        r.warmup_ms, r.warmup_runs = number(warm[-1][0], "Warmup (avg)"), int(warm[-1][1])
    timed = [s for s in stats if int(s["count"]) == count and "median" in s]
    if timed:  # the shared benchmark base also prints its statistics line (us): take its percentiles
        r.median_ms, r.p5_ms, r.p95_ms = (_ms(timed[-1].get(k)) for k in ("median", "p5", "p95"))
    if count == 1:
        r.samples_ms, r.raw_samples, r.median_ms = [r.mean_ms], True, r.mean_ms
    _benchmark_common(text, r)
    return r


# --------------------------------------------------------------------------------------------- executor_runner
_ITER = re.compile(rf"Iteration (\d+) of (\d+): ({NUM}) ms")
_DONE = re.compile(rf"Model executed successfully (\d+) time\(s\)(?: in ({NUM}) ms)?")


def parse_executor_runner(text: str, expected: int | None = None) -> ToolResult:
    """ExecuTorch's executor_runner (posix stderr with its `I 00:00:01.234567 executorch:...] ` prefix, or logcat
    lines of tag ExecuTorch). `expected` is --num_executions."""
    iters = [(int(a), int(b), number(c, f"iteration {a}")) for a, b, c in _ITER.findall(text)]
    done = _DONE.findall(text)
    if len(done) > 1:
        raise ParseError(f"holds {len(done)} executor_runner runs; save one run per file")
    load = _search(rf"Model loaded in ({NUM}) ms", text, "Model loaded in")
    if iters:
        totals = {b for _, b, _ in iters}
        if len(totals) > 1:
            raise ParseError(f"iteration lines of several runs (of {', '.join(map(str, sorted(totals)))}); save one "
                             "run per file")
        n = totals.pop()
        if [i for i, _, _ in iters] != list(range(1, len(iters) + 1)):
            raise ParseError("iteration lines are out of order or repeated: two runs mixed in one file?")
        if len(iters) < n:
            raise ParseError(f"truncated executor_runner output: {len(iters)} of {n} iteration lines")
        if not done:
            raise ParseError("truncated executor_runner output: no 'Model executed successfully' line")
        if int(done[0][0]) != n:
            raise ParseError(f"'Model executed successfully {done[0][0]} time(s)' but {n} iteration lines")
        _check_count("executor_runner", n, expected)
        if n < 2:
            raise ParseError("executor_runner ran 1 iteration, the cold first one: pass --num_executions of at "
                             "least 2 so there is a warm sample")
        samples = [v for _, _, v in iters[1:]]
        r = ToolResult("executor_runner", "iterations", len(samples), samples, True, first_ms=iters[0][2],
                       load_ms=load, warmup_runs=0)
        r.mean_ms = sum(samples) / len(samples)
        return r
    if not done:
        raise ParseError("truncated executor_runner output: no 'Iteration' and no 'Model executed successfully' line")
    n = int(done[0][0])
    _check_count("executor_runner", n, expected)
    if not done[0][1]:
        raise ParseError("this executor_runner prints no time (a build without timing): nothing to import")
    total = number(done[0][1], "executed in ms")
    r = ToolResult("executor_runner", "total only", n, None, False, mean_ms=total / n, load_ms=load, warmup_runs=0)
    r.extra["mean_includes_cold_first"] = True
    return r


# --------------------------------------------------------------------------------------------- native runner
def parse_native(text: str, expected: int | None = None) -> ToolResult:
    """Our native runner's one JSON line (devices/native/, `"tool": "et-bench"`), raw samples."""
    records = []
    for line in _lines(text):
        s = line[line.find("{"):] if "{" in line else ""
        if '"tool"' not in s:
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError:
            raise ParseError("truncated or broken JSON line from the native runner") from None
        if isinstance(obj, dict) and obj.get("tool") == "et-bench":
            records.append(obj)
    if not records:
        raise ParseError("no JSON line of et-bench (the native runner: \"tool\": \"et-bench\")")
    if len(records) > 1:
        raise ParseError(f"holds {len(records)} native runner results; save one per file")
    obj = records[0]

    def floats(key: str, required: bool) -> list[float] | None:
        v = obj.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise ParseError(f"native runner field {key!r} is not a list of numbers")
        if not all(math.isfinite(x) for x in v):
            raise ParseError(f"native runner field {key!r} holds a number that is not finite")
        return [float(x) for x in v]

    def scalar(key: str, kind: type) -> Any:
        v = obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (
                kind is int and v != int(v)):
            raise ParseError(f"native runner field {key!r} is {v!r}, not a {'whole ' if kind is int else ''}number")
        return kind(v)

    samples = floats("samples_ms", True)
    _check_count("native runner", len(samples), expected)
    cpu = floats("cpu_samples_ms", False)
    if cpu is not None and len(cpu) != len(samples):
        raise ParseError(f"native runner gives {len(samples)} samples but {len(cpu)} CPU samples")
    known = {"tool", "load_ms", "first_ms", "warmup", "threads", "samples_ms", "cpu_samples_ms", "peak_rss_mb"}
    r = ToolResult("native", f"et-bench v{obj.get('tool_version', '?')}", len(samples), samples, True,
                   load_ms=scalar("load_ms", float),
                   first_ms=scalar("first_ms", float), warmup_runs=scalar("warmup", int),
                   threads=scalar("threads", int), cpu_samples_ms=cpu or None,
                   peak_memory_mb=scalar("peak_rss_mb", float),
                   extra={k: v for k, v in obj.items() if k not in known})
    r.mean_ms = sum(samples) / len(samples)
    return r


# --------------------------------------------------------------------------------------------- onnxruntime_perf_test
def parse_onnxruntime_perf_test(text: str, expected: int | None = None) -> ToolResult:
    """onnxruntime_perf_test's summary: aggregates (the average in ms, Min/Max/P50...P999 in seconds)."""
    if len(re.findall(r"Total inference requests:", text)) > 1:
        raise ParseError("holds several onnxruntime_perf_test runs; save one run per file")
    new = re.search(r"Average inference time cost total:", text) is not None
    mean = _search(rf"Average inference time cost(?: total)?:\s*({NUM})\s*ms", text, "Average inference time cost",
                   required="truncated onnxruntime_perf_test output: no 'Average inference time cost' line")
    requests = _search(r"Total inference requests:\s*(\S+)", text, "Total inference requests",
                       required="truncated onnxruntime_perf_test output: no 'Total inference requests' line")
    if requests != int(requests) or requests < 0:
        raise ParseError(f"Total inference requests is {requests:g}, not a whole number")
    count = int(requests)
    _check_count("onnxruntime_perf_test", count, expected)
    runs = _search(r"^\s*Runs:\s*(\S+)", text, "Runs")
    if runs is not None and int(runs) != count:
        raise ParseError(f"'Runs:{int(runs)}' disagrees with 'Total inference requests: {count}'")
    r = ToolResult("onnxruntime_perf_test", "new labels" if new else "old labels", count, None, False, mean_ms=mean)

    def latency(label: str) -> float | None:
        v = _search(rf"^\s*{label} Latency:\s*({NUM})\s*s\b", text, f"{label} Latency")
        return None if v is None else v * 1000.0

    r.min_ms, r.max_ms, r.median_ms, r.p90_ms, r.p95_ms, r.p99_ms = (latency(k) for k in
                                                                      ("Min", "Max", "P50", "P90", "P95", "P99"))
    p999 = latency("P999")
    if p999 is not None:
        r.extra["p999_ms"] = p999
    session = _search(rf"Session creation time cost:\s*({NUM})\s*s", text, "Session creation time cost")
    r.load_ms = None if session is None else session * 1000.0
    r.first_ms = _search(rf"First inference time cost:\s*({NUM})\s*ms", text, "First inference time cost")
    peak = _search(r"Peak working set size:\s*(\d+)\s*bytes", text, "Peak working set size")
    r.peak_memory_mb = None if peak is None else peak / 2**20
    for key, pattern in (("qps", rf"Number of inferences per second:\s*({NUM})"),
                         ("cpu_usage_pct", rf"(?:Avg|Total) CPU usage:\s*({NUM})\s*%")):
        v = _search(pattern, text, key)
        if v is not None:
            r.extra[key] = v
    threads = re.findall(r"Setting intra_op_num_threads to (\d+)", text)
    r.threads = int(threads[-1]) if threads else None
    return r


# --------------------------------------------------------------------------------------------- xctest
_MEASURED = re.compile(r"Test Case '([^']*)' measured \[([^\],]+), ([^\]]+)\] average: (\S+?), relative standard "
                       r"deviation: (\S+?)%, values: \[([^\]]*)(\]?)")
_CLOCK_METRICS = ("Clock Monotonic Time", "Time")
_SECONDS = {"s": 1000.0, "seconds": 1000.0, "ms": 1.0}


def _values(text: str, unit: str, what: str) -> list[float]:
    if unit.strip() not in _SECONDS:
        raise ParseError(f"{what} is in {unit.strip()!r}, not seconds")
    scale = _SECONDS[unit.strip()]
    return [number(v, what) * scale for v in text.split(",") if v.strip()]


def parse_xctest(text: str, expected: int | None = None) -> ToolResult:
    """An XCTest measure block: the `measured [Clock Monotonic Time, s] ... values: [...]` line of `xcodebuild
    test` (legacy `[Time, seconds]`), or the JSON of `xcrun xcresulttool get test-results metrics --compact`."""
    stripped = text.strip()
    if stripped[:1] in "[{" and '"testRuns"' in stripped:
        return _xcresult(stripped, expected)
    clock: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    legacy = False
    for i, line in enumerate(_lines(text), 1):
        m = _MEASURED.search(line)
        if not m:
            continue
        test, metric, unit, _avg, _rsd, values, closed = m.groups()
        if not closed:
            raise ParseError(f"line {i}: the values list is cut off (truncated output)")
        if metric in _CLOCK_METRICS:
            if test in clock:
                raise ParseError(f"test {test} is measured twice; save one run per file")
            clock[test] = _values(values, unit, f"{metric} values (line {i})")
            legacy = legacy or metric == "Time"
        elif metric == "CPU Time":
            cpu[test] = _values(values, unit, f"CPU Time values (line {i})")
    if not clock:
        raise ParseError("no 'measured [Clock Monotonic Time, s]' or '[Time, seconds]' line (only other metrics, or "
                         "truncated)")
    if len(clock) > 1:
        raise ParseError(f"measures {len(clock)} tests ({', '.join(sorted(clock))}); save one test's output per file")
    test, samples = next(iter(clock.items()))
    _check_count("xctest", len(samples), expected)
    cpu_s = cpu.get(test)
    r = ToolResult("xctest", "measure line (legacy Time)" if legacy else "measure line", len(samples), samples, True,
                   cpu_samples_ms=cpu_s if cpu_s and len(cpu_s) == len(samples) else None, extra={"test": test})
    r.mean_ms = sum(samples) / len(samples)
    return r


def _xcresult(text: str, expected: int | None) -> ToolResult:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ParseError("truncated or broken xcresulttool JSON") from None
    tests = data if isinstance(data, list) else [data]
    found = []
    for t in tests:
        if not isinstance(t, dict):
            raise ParseError("xcresulttool JSON: expected a list of tests with testRuns")
        for run in t.get("testRuns") or []:
            metrics = {m.get("displayName"): m for m in (run.get("metrics") or []) if isinstance(m, dict)}
            clock = next((metrics[k] for k in _CLOCK_METRICS if k in metrics), None)
            if clock is None:
                clock = next((m for m in metrics.values() if "Clock" in str(m.get("identifier", ""))
                              or "WallClockTime" in str(m.get("identifier", ""))), None)
            if clock is not None:
                found.append((t.get("testIdentifier", "?"), run, clock, metrics.get("CPU Time")))
    if not found:
        raise ParseError("xcresulttool JSON has no clock-time metric (no XCTClockMetric measure in this bundle)")
    if len(found) > 1:
        raise ParseError(f"xcresulttool JSON holds {len(found)} measured test runs ("
                         f"{', '.join(sorted({f[0] for f in found}))}); pass --test-id to xcresulttool")
    test, run, clock, cpu = found[0]

    def series(metric: dict[str, Any], what: str) -> list[float]:
        vals = metric.get("measurements")
        if not isinstance(vals, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in vals):
            raise ParseError(f"xcresulttool JSON: {what} measurements are not a list of numbers")
        return _values(",".join(repr(float(v)) for v in vals), str(metric.get("unitOfMeasurement", "s")), what)

    samples = series(clock, str(clock.get("displayName")))
    _check_count("xctest", len(samples), expected)
    cpu_s = series(cpu, "CPU Time") if cpu else None
    device = run.get("device") if isinstance(run.get("device"), dict) else {}
    r = ToolResult("xctest", "xcresulttool json", len(samples), samples, True,
                   cpu_samples_ms=cpu_s if cpu_s and len(cpu_s) == len(samples) else None,
                   extra={"test": test, **{k: device[k] for k in ("deviceName", "modelName", "osVersion")
                                           if k in device}})
    r.mean_ms = sum(samples) / len(samples)
    return r


PARSERS = {"benchmark_model": parse_benchmark_model, "executor_runner": parse_executor_runner,
           "native": parse_native, "onnxruntime_perf_test": parse_onnxruntime_perf_test, "xctest": parse_xctest}
