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
  native: our runner's one JSON line (`"tool": "et-bench"`, devices/native/), raw samples (devices/parse_raw.py).
  onnxruntime_perf_test: aggregates; percentiles in seconds, the average in ms (new label `Average inference time
      cost total`, old `Average inference time cost`).
  xctest: `measured [Clock Monotonic Time, s] ... values: [...]` (legacy `[Time, seconds]`) or the JSON of
      `xcrun xcresulttool get test-results metrics --compact`: raw samples (devices/parse_raw.py). The rounded
      `average:` is never used.

Where a program prints only aggregates, `raw_samples` is False and `samples_ms` None: no sample is ever made up.
Bad text (another program's output, truncated, a zero count, an unparsable number, a count that differs from the
expected one) raises ParseError, a ToolkitError with one line. So does a result no real run can have printed
(`check_result`: a time that is not finite and above zero after scaling, a negative load, peak memory or warm-up,
threads below 1, a count its samples do not match, a minimum above a maximum). All times are milliseconds. Time and
memory are linear in the input (devices/parse_base.py says how).
"""

from __future__ import annotations

import math
import re

from devices.parse_base import (
    MAX_COUNT,
    MAX_SAMPLES,
    MAX_THREADS,
    NUM,
    ParseError,
    ToolResult,
    check_count,
    digits,
    lines,
    ms,
    number,
    search,
    whole,
)
from devices.parse_raw import parse_native, parse_xctest
from models.errors import ToolkitError

__all__ = ["TOOLS", "NUM", "ParseError", "ToolResult", "ToolkitError", "check_result", "detect", "number", "parse"]

TOOLS = ("benchmark_model", "executor_runner", "native", "onnxruntime_perf_test", "xctest")


# --------------------------------------------------------------------------------------------- detection
_SIGNS = (  # (tool, literals, pattern): the first whose pattern matches names the program; the order matters (see
    # detect). The pattern is only tried where one of its literals occurs (a substring test runs at memory speed).
    ("native", ('"et-bench"',), r'^[ \t]*+\{.*"tool"[ \t]*+:[ \t]*+"et-bench"'),
    ("xctest", ('"testRuns"', "] average:"), r'"testRuns"[ \t]*+:|measured \[[^\]\n]{0,60}\] average:'),
    ("onnxruntime_perf_test", ("inference time cost", "Session creation time cost", "P50 Latency:"),
     r"inference time cost|Session creation time cost|^[ \t]*+P50 Latency:"),
    ("executor_runner", ("Model executed successfully", " of ", "executorch:executor_runner"),
     r"Model executed successfully|Iteration \d++ of \d++: |executorch:executor_runner"),
    ("benchmark_model", ("Inference timings in us", "count=", "Running benchmark for at least", "Inference (avg):",
                         "BENCHMARK RESULTS"),
     r"Inference timings in us|\bcount=\d|Running benchmark for at least|Inference \(avg\):|BENCHMARK RESULTS"),
)


def detect(text: str) -> str:
    """Which program produced `text` (one of TOOLS); ParseError when none of them did."""
    for tool, literals, pattern in _SIGNS:
        if any(x in text for x in literals) and re.search(pattern, text, re.MULTILINE):
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
    return check_result(PARSERS[found](text, expected))


# --------------------------------------------------------------------------------------------- sanity
_POSITIVE = ("mean_ms", "median_ms", "min_ms", "max_ms", "p5_ms", "p90_ms", "p95_ms", "p99_ms", "first_ms",
             "warmup_ms", "peak_memory_mb")
_ORDER = ("min_ms", "p5_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")  # never decreasing


def _le(a: float, b: float) -> bool:
    """a <= b up to the rounding of printed figures (6 significant digits, ORT's microseconds in seconds)."""
    return a <= b * (1 + 1e-3) + 1e-3


def check_result(r: ToolResult) -> ToolResult:
    """`r` if its numbers can come from a real run, else ParseError (one line saying which number and why)."""
    who = r.tool
    check_count(who, r.count, None)
    if r.samples_ms is not None:
        if len(r.samples_ms) != r.count:
            raise ParseError(f"{who} reports {r.count} timed iterations but gives {len(r.samples_ms)} samples")
        if len(r.samples_ms) > MAX_SAMPLES:
            raise ParseError(f"{who} gives {len(r.samples_ms)} samples; one cell keeps at most {MAX_SAMPLES}")
        bad = next((v for v in r.samples_ms if not (math.isfinite(v) and v > 0)), None)
        if bad is not None:
            raise ParseError(f"{who} gives a timed iteration of {bad:g} ms: a time must be finite and above 0")
    if r.cpu_samples_ms is not None:
        if r.samples_ms is None or len(r.cpu_samples_ms) != len(r.samples_ms):
            raise ParseError(f"{who} gives {len(r.cpu_samples_ms)} CPU-time samples for "
                             f"{len(r.samples_ms or [])} samples")
        if not all(math.isfinite(v) and v >= 0 for v in r.cpu_samples_ms):
            raise ParseError(f"{who} gives a CPU time that is negative or not finite")
    values = {k: getattr(r, k) for k in _POSITIVE}
    values.update({k: r.extra[k] for k in ("first_of_timed_ms", "p999_ms") if r.extra.get(k) is not None})
    for key, v in values.items():
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ParseError(f"{who} reports {key.removesuffix('_ms').replace('_', ' ')} = {v!r}: it must be "
                             "finite and above 0")
    for key in ("load_ms", "std_ms"):
        v = getattr(r, key)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ParseError(f"{who} reports {key.removesuffix('_ms')} = {v:g} ms: it cannot be negative")
    if r.warmup_runs is not None and not 0 <= r.warmup_runs <= MAX_COUNT:
        raise ParseError(f"{who} reports {r.warmup_runs} warm-up runs")
    if r.threads is not None and not 1 <= r.threads <= MAX_THREADS:
        raise ParseError(f"{who} reports {r.threads} threads: from 1 to {MAX_THREADS}")
    present = [(k, getattr(r, k)) for k in _ORDER if getattr(r, k) is not None]
    for (ka, a), (kb, b) in zip(present, present[1:]):
        if not _le(a, b):
            raise ParseError(f"{who} reports {ka.removesuffix('_ms')} {a:g} ms above {kb.removesuffix('_ms')} "
                             f"{b:g} ms: not one run's statistics")
    if r.mean_ms is not None and not ((r.min_ms is None or _le(r.min_ms, r.mean_ms))
                                      and (r.max_ms is None or _le(r.mean_ms, r.max_ms))):
        raise ParseError(f"{who} reports a mean of {r.mean_ms:g} ms outside its own minimum and maximum "
                         f"({r.min_ms}-{r.max_ms} ms): not one run's statistics")
    return r


# --------------------------------------------------------------------------------------------- benchmark_model
_LITERT_AVG = re.compile(rf"Inference \(avg\):[ \t]*({NUM})[ \t]*ms[ \t]*\((\d+) runs\)")
_FIELD = re.compile(r"[A-Za-z][A-Za-z ()]*")
_COUNT = re.compile(r"(?<!\w)count=(?=\S)")


def _stat_line(rest: str, where: str) -> dict[str, float]:
    """After `count=`: N [first= curr= min= max= avg= std= [p5= median= p95=]] | N curr=X[(all same)] | 0."""
    count, rest = (rest.split(None, 1) + [""])[:2]
    out: dict[str, float] = {"count": whole(count, f"count= ({where})")}
    if "(all same)" in rest:
        rest = rest.replace("(all same)", "")
        out["all_same"] = 1
    for item in rest.split():
        key, sep, val = item.partition("=")
        if sep and key.isidentifier() and key not in out:
            out[key] = number(val, f"{key}= ({where})")
    return out


def _fields(summary: str) -> dict[str, str]:
    """`Init: 4100, First inference: 8200, ...` as {label: value} (str methods: linear in the line)."""
    out = {}
    for part in summary.split(","):
        key, sep, val = part.partition(": ")
        key, val = key.strip(), val.strip()
        if sep and val and " " not in val and _FIELD.fullmatch(key):
            out[key] = val
    return out


def _delegate(text: str) -> str | None:
    applied = re.findall(r"Explicitly applied (\S{1,100}) delegate, and the model graph will be (\w{1,20}) executed "
                         r"by the delegate(?: w/ (\d{1,9}) delegate kernels)?", text)
    replaced = re.findall(r"Replacing (\d{1,9}) out of (\d{1,9}) node\(s\) with delegate \(([^)\n]{0,100})\)", text)
    parts = []
    for name, how, kernels in applied:
        parts.append(f"{name} ({how}" + (f", {kernels} delegate kernels)" if kernels else ")"))
    for n, m, name in replaced:
        parts.append(f"{name}: {n} of {m} nodes")
    return "; ".join(list(dict.fromkeys(parts))[:8]) or None


def _benchmark_common(text: str, r: ToolResult) -> None:
    threads = re.findall(r"Num threads: \[(-?\d+)\]", text)
    r.threads = None
    if threads and not threads[-1].startswith("-"):  # -1: the runtime's default, not a count
        r.threads = digits(threads[-1], "Num threads", MAX_THREADS) or None
    r.delegate = _delegate(text)
    peak = search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})", text, "peak memory")
    if peak is None:
        peak = search(rf"Peak memory footprint \(MB\): init=\S+ overall=({NUM})", text, "peak memory")
    if peak is None:
        peak = search(rf"Peak memory:[ \t]*({NUM}) MB", text, "peak memory")
    r.peak_memory_mb = peak
    delta = re.findall(rf"Memory footprint delta from the start of the tool \(MB\): init=({NUM}) overall=({NUM})",
                       text)
    if delta:
        r.extra["memory_delta_mb"] = {"init": number(delta[-1][0], "memory delta"),
                                      "overall": number(delta[-1][1], "memory delta")}


def parse_benchmark_model(text: str, expected: int | None = None) -> ToolResult:
    """TFLite's classic `benchmark_model` or LiteRT's CompiledModel tool of the same name (told apart by LiteRT's
    `Inference (avg): X ms (N runs)` line). Aggregates only: raw_samples is False, except with count=1 (the one
    value is the sample) or `count=N curr=X(all same)` (every sample is X, kept up to MAX_SAMPLES of them)."""
    stats, summaries, old = [], [], []
    for i, line in enumerate(lines(text), 1):
        m = _COUNT.search(line)
        if m:
            stats.append(_stat_line(line[m.end():], f"line {i}"))
        at = line.find("Average inference timings in us: ")
        if at >= 0:
            old.append(line[at + 33:])
        elif (at := line.find("Inference timings in us: ")) >= 0:
            summaries.append(line[at + 25:])
    if _LITERT_AVG.search(text):
        return _litert(text, stats, expected)
    if len(summaries) + len(old) > 1:
        raise ParseError(f"holds {len(summaries) + len(old)} benchmark runs; save one run per file")
    if not summaries and not old:
        raise ParseError("truncated benchmark_model output: no 'Inference timings in us' line (the run did not "
                         "finish, or the file was cut)")
    if not stats:
        raise ParseError("truncated benchmark_model output: no 'count=' statistics line")
    inf = stats[-1]
    count = int(inf["count"])
    check_count("benchmark_model", count, expected)
    r = ToolResult("benchmark_model", "tflite classic" if summaries else "tflite classic (old labels)", count, None,
                   False)
    if count == 1 or inf.get("all_same"):
        if "curr" not in inf:
            raise ParseError("the statistics line lacks curr= (truncated?)")
        v = ms(inf["curr"])
        r.mean_ms = r.median_ms = r.min_ms = r.max_ms = v
        r.std_ms = 0.0 if count > 1 else None
        if count <= MAX_SAMPLES:
            r.samples_ms, r.raw_samples = [v] * count, True
    else:
        missing = [k for k in ("min", "max", "avg", "std") if k not in inf]
        if missing:
            raise ParseError(f"the statistics line lacks {', '.join(k + '=' for k in missing)} (truncated?)")
        r.mean_ms, r.min_ms, r.max_ms, r.std_ms = (ms(inf[k]) for k in ("avg", "min", "max", "std"))
        r.median_ms, r.p5_ms, r.p95_ms = (ms(inf.get(k)) for k in ("median", "p5", "p95"))
        if inf.get("first") is not None:
            r.extra["first_of_timed_ms"] = ms(inf["first"])
    if len(stats) >= 2:
        r.warmup_runs = int(stats[-2]["count"])
    fields = _fields(summaries[0] if summaries else old[0])
    r.load_ms = ms(number(fields["Init"], "Init")) if "Init" in fields else None
    if summaries:
        r.first_ms = ms(number(fields["First inference"], "First inference")) if "First inference" in fields \
            else None
        r.warmup_ms = ms(number(fields["Warmup (avg)"], "Warmup (avg)")) if "Warmup (avg)" in fields else None
        avg = fields.get("Inference (avg)")
    else:
        r.warmup_ms = ms(number(fields["Warmup"], "Warmup")) if "Warmup" in fields else None
        avg = fields.get("no stats", fields.get("Inference"))
    if avg is None:
        raise ParseError("the 'Inference timings in us' line has no inference average (truncated?)")
    avg_ms = ms(number(avg, "Inference (avg)"))
    if r.mean_ms is not None and abs(avg_ms - r.mean_ms) > 1e-3 * max(abs(avg_ms), 1e-9) + 1e-6:
        raise ParseError(f"the summary's Inference (avg) {avg} us disagrees with the statistics line's avg "
                         f"({r.mean_ms * 1000:g} us): two runs mixed in one file?")
    r.mean_ms = avg_ms if r.mean_ms is None else r.mean_ms
    _benchmark_common(text, r)
    return r


def _litert(text: str, stats: list[dict[str, float]], expected: int | None) -> ToolResult:
    avgs = _LITERT_AVG.findall(text)
    if len(avgs) > 1:
        raise ParseError(f"holds {len(avgs)} benchmark runs; save one run per file")
    count = digits(avgs[0][1], "Inference (avg) runs")
    check_count("benchmark_model (LiteRT)", count, expected)
    r = ToolResult("benchmark_model", "litert compiled-model", count, None, False)
    r.mean_ms = number(avgs[0][0], "Inference (avg)")
    r.min_ms = search(rf"Inference \(min\):[ \t]*({NUM})[ \t]*ms", text, "Inference (min)")
    r.max_ms = search(rf"Inference \(max\):[ \t]*({NUM})[ \t]*ms", text, "Inference (max)")
    r.std_ms = search(rf"Inference \(std\):[ \t]*({NUM})", text, "Inference (std)")
    r.load_ms = search(rf"Model initialization:[ \t]*({NUM})[ \t]*ms", text, "Model initialization")
    r.first_ms = search(rf"Warmup \(first\):[ \t]*({NUM})[ \t]*ms", text, "Warmup (first)")
    warm = re.findall(rf"Warmup \(avg\):[ \t]*({NUM})[ \t]*ms[ \t]*\((\d+) runs\)", text)
    if warm:
        r.warmup_ms = number(warm[-1][0], "Warmup (avg)")
        r.warmup_runs = digits(warm[-1][1], "Warmup (avg) runs")
    timed = [s for s in stats if int(s["count"]) == count and "median" in s]
    if timed:  # the shared benchmark base also prints its statistics line (us): take its percentiles
        r.median_ms, r.p5_ms, r.p95_ms = (ms(timed[-1].get(k)) for k in ("median", "p5", "p95"))
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
    done = _DONE.findall(text)
    if len(done) > 1:
        raise ParseError(f"holds {len(done)} executor_runner runs; save one run per file")
    load = search(rf"Model loaded in ({NUM}) ms", text, "Model loaded in")
    iters = []
    for a, b, c in _ITER.findall(text):
        iters.append((digits(a, "Iteration"), digits(b, "Iteration ... of"), number(c, f"iteration {a}")))
        if len(iters) > MAX_SAMPLES + 1:
            raise ParseError(f"more than {MAX_SAMPLES} iteration lines: not one cell's output")
    if iters:
        totals = {b for _, b, _ in iters}
        if len(totals) > 1:
            raise ParseError(f"iteration lines of several runs (of {', '.join(map(str, sorted(totals)))}); save one "
                             "run per file")
        n = totals.pop()
        if [i for i, _, _ in iters] != list(range(1, len(iters) + 1)) or len(iters) > n:
            raise ParseError("iteration lines are out of order or repeated: two runs mixed in one file?")
        if len(iters) < n:
            raise ParseError(f"truncated executor_runner output: {len(iters)} of {n} iteration lines")
        if not done:
            raise ParseError("truncated executor_runner output: no 'Model executed successfully' line")
        if digits(done[0][0], "Model executed successfully") != n:
            raise ParseError(f"'Model executed successfully {done[0][0][:20]} time(s)' but {n} iteration lines")
        check_count("executor_runner", n, expected)
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
    n = digits(done[0][0], "Model executed successfully")
    check_count("executor_runner", n, expected)
    if not done[0][1]:
        raise ParseError("this executor_runner prints no time (a build without timing): nothing to import")
    total = number(done[0][1], "executed in ms")
    r = ToolResult("executor_runner", "total only", n, None, False, mean_ms=total / n, load_ms=load, warmup_runs=0)
    r.extra["mean_includes_cold_first"] = True
    return r


# --------------------------------------------------------------------------------------------- onnxruntime_perf_test
def parse_onnxruntime_perf_test(text: str, expected: int | None = None) -> ToolResult:
    """onnxruntime_perf_test's summary: aggregates (the average in ms, Min/Max/P50...P999 in seconds)."""
    if text.count("Total inference requests:") > 1:
        raise ParseError("holds several onnxruntime_perf_test runs; save one run per file")
    new = "Average inference time cost total:" in text
    mean = search(rf"Average inference time cost(?: total)?:[ \t]*({NUM})[ \t]*ms", text,
                  "Average inference time cost",
                  required="truncated onnxruntime_perf_test output: no 'Average inference time cost' line")
    requests = re.findall(r"Total inference requests:[ \t]*(\S{0,40})", text)
    if not requests:
        raise ParseError("truncated onnxruntime_perf_test output: no 'Total inference requests' line")
    count = whole(requests[-1], "Total inference requests")
    check_count("onnxruntime_perf_test", count, expected)
    runs = re.findall(r"^[ \t]*Runs:[ \t]*(\S{0,40})", text, re.MULTILINE)
    if runs and whole(runs[-1], "Runs") != count:
        raise ParseError(f"'Runs:{runs[-1]}' disagrees with 'Total inference requests: {count}'")
    r = ToolResult("onnxruntime_perf_test", "new labels" if new else "old labels", count, None, False, mean_ms=mean)

    def latency(label: str) -> float | None:
        v = search(rf"^[ \t]*{label} Latency:[ \t]*({NUM})[ \t]*s\b", text, f"{label} Latency")
        return None if v is None else v * 1000.0

    r.min_ms, r.max_ms, r.median_ms, r.p90_ms, r.p95_ms, r.p99_ms = (latency(k) for k in
                                                                      ("Min", "Max", "P50", "P90", "P95", "P99"))
    p999 = latency("P999")
    if p999 is not None:
        r.extra["p999_ms"] = p999
    session = search(rf"Session creation time cost:[ \t]*({NUM})[ \t]*s", text, "Session creation time cost")
    r.load_ms = None if session is None else session * 1000.0
    r.first_ms = search(rf"First inference time cost:[ \t]*({NUM})[ \t]*ms", text, "First inference time cost")
    peak = re.findall(r"Peak working set size:[ \t]*(\d+)[ \t]*bytes", text)
    r.peak_memory_mb = digits(peak[-1], "Peak working set size", 10**15) / 2**20 if peak else None
    for key, pattern in (("qps", rf"Number of inferences per second:[ \t]*({NUM})"),
                         ("cpu_usage_pct", rf"(?:Avg|Total) CPU usage:[ \t]*({NUM})[ \t]*%")):
        v = search(pattern, text, key)
        if v is not None:
            r.extra[key] = v
    threads = re.findall(r"Setting intra_op_num_threads to (\d+)", text)
    r.threads = digits(threads[-1], "intra_op_num_threads", MAX_THREADS) if threads else None
    return r


PARSERS = {"benchmark_model": parse_benchmark_model, "executor_runner": parse_executor_runner,
           "native": parse_native, "onnxruntime_perf_test": parse_onnxruntime_perf_test, "xctest": parse_xctest}
