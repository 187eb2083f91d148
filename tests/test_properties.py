"""Property tests (Hypothesis) of every parser of hostile text and of the device-profile reader: whatever the bytes,
a parser returns a result whose numbers are finite, positive and consistent, or raises its one-line error; a
profiles file gives a device or one ToolkitError, never another exception; 1 MB of adversarial input is parsed in
well under a second (asserted with a generous bound: the machine is shared). Examples Hypothesis found (against the
code before issue 18, or since) are kept as files in tests/data/parsers/ (found_*) and parsed on every run.

Runs are derandomized (the same examples every time, so CI is reproducible) and keep no database.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devices import adb_parse, parsers
from devices.parse_base import MAX_COUNT, MAX_SAMPLES, MAX_THREADS
from models.errors import ToolkitError

DATA = Path(__file__).resolve().parent / "data" / "parsers"
FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GENEROUS_S = 2.0  # for 1 MB; the linear parsers take about 0.1-0.3 s here, the quadratic ones took hours


# --------------------------------------------------------------------------------------------- the property
def _le(a: float, b: float) -> bool:
    return a <= b * (1 + 1e-3) + 1e-3


def sane(r: parsers.ToolResult) -> None:
    """The numbers of a parsed result are what a real run can print (an independent restatement of the rule)."""
    assert r.tool in parsers.TOOLS and isinstance(r.count, int) and 1 <= r.count <= MAX_COUNT
    if r.raw_samples:
        assert r.samples_ms is not None
    if r.samples_ms is not None:
        assert len(r.samples_ms) == r.count <= MAX_SAMPLES
        assert all(math.isfinite(v) and v > 0 for v in r.samples_ms)
    if r.cpu_samples_ms is not None:
        assert len(r.cpu_samples_ms) == len(r.samples_ms) and all(math.isfinite(v) and v >= 0
                                                                  for v in r.cpu_samples_ms)
    for k in ("mean_ms", "median_ms", "min_ms", "max_ms", "p5_ms", "p90_ms", "p95_ms", "p99_ms", "first_ms",
              "warmup_ms", "peak_memory_mb"):
        v = getattr(r, k)
        assert v is None or (math.isfinite(v) and v > 0), (k, v)
    for k in ("load_ms", "std_ms"):
        v = getattr(r, k)
        assert v is None or (math.isfinite(v) and v >= 0), (k, v)
    assert r.threads is None or 1 <= r.threads <= MAX_THREADS
    assert r.warmup_runs is None or 0 <= r.warmup_runs <= MAX_COUNT
    lo, hi = r.min_ms, r.max_ms
    for v in (r.mean_ms, r.median_ms, r.p5_ms, r.p95_ms):
        if v is not None:
            assert (lo is None or _le(lo, v)) and (hi is None or _le(v, hi))
    json.dumps(r.extra, default=str)  # what is kept of the rest can be stored


def parses_or_one_line(text: str, tool: str | None = None) -> None:
    try:
        r = parsers.parse(text, tool)
    except parsers.ParseError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    sane(r)


# --------------------------------------------------------------------------------------------- strategies
HOSTILE_NUMBERS = st.one_of(
    st.integers(-10**6, 10**7).map(str), st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.floats(-1e6, 1e6).map(lambda v: f"{v:g}"),
    st.sampled_from(["0", "-0", "nan", "inf", "1e999", "-1e999", "1e307", "1.2.3", "", "9" * 400, "9" * 5000,
                     "1e-320", "+5", ".5", "5.", "0x10", "1,5"]))


def _line(template: str) -> st.SearchStrategy[str]:
    """A template with {} holes, each filled with a hostile number."""
    n = template.count("{}")
    return st.tuples(*[HOSTILE_NUMBERS] * n).map(lambda xs: template.format(*xs))


TEMPLATES = {
    "benchmark_model": ["count={} first={} curr={} min={} max={} avg={} std={}",
                        "count={} first={} curr={} min={} max={} avg={} std={} p5={} median={} p95={}",
                        "count={} curr={}(all same)", "count={} curr={}", "count={}",
                        "Inference timings in us: Init: {}, First inference: {}, Warmup (avg): {}, Inference (avg): {}",
                        "Average inference timings in us: Warmup: {}, Init: {}, no stats: {}",
                        "Num threads: [{}]", "Overall peak memory footprint (MB) via periodic monitoring: {}",
                        "Inference (avg): {} ms ({} runs)", "Inference (min): {} ms", "Inference (std): {}",
                        "Warmup (avg): {} ms ({} runs)", "Model initialization: {} ms",
                        "Replacing {} out of {} node(s) with delegate ({})",
                        "Memory footprint delta from the start of the tool (MB): init={} overall={}"],
    "executor_runner": ["Iteration {} of {}: {} ms", "Model executed successfully {} time(s) in {} ms.",
                        "Model executed successfully {} time(s).", "Model loaded in {} ms."],
    "onnxruntime_perf_test": ["Total inference requests: {}", "Average inference time cost total: {} ms",
                              "Average inference time cost: {} ms", "Runs:{}", "Min Latency: {} s",
                              "Max Latency: {} s", "P50 Latency: {} s", "P99 Latency: {} s", "P999 Latency: {} s",
                              "Session creation time cost: {} s", "First inference time cost: {} ms",
                              "Peak working set size: {} bytes", "Setting intra_op_num_threads to {}"],
    "xctest": ["Test Case '-[T t]' measured [Clock Monotonic Time, s] average: {}, relative standard deviation: {}%, "
               "values: [{}, {}, {}]", "Test Case '-[T t]' measured [Time, seconds] average: {}, relative standard "
               "deviation: {}%, values: [{}, {}]", "Test Case '-[T t]' measured [CPU Time, s] average: {}, relative "
               "standard deviation: {}%, values: [{}, {}, {}]"],
}
PREFIXES = st.sampled_from(["", "INFO: ", "I tflite  : ", "I 00:00:01.000000 executorch:executor_runner.cpp:1] ",
                            "  ", "\t"])


def tool_text(tool: str) -> st.SearchStrategy[str]:
    """Lines of one program's vocabulary with hostile numbers, prefixes, noise and line ends."""
    line = st.one_of(*[_line(t) for t in TEMPLATES[tool]], st.text(max_size=40))
    lines = st.lists(st.tuples(PREFIXES, line).map("".join), min_size=1, max_size=14)
    return st.tuples(lines, st.sampled_from(["\n", "\r\n", "\r"])).map(lambda x: x[1].join(x[0]))


@st.composite
def consistent_run(draw, tool: str) -> str:
    """One run's result lines whose cross-checks agree (so a parser gets past them to the numbers themselves)."""
    n, x = draw(HOSTILE_NUMBERS), draw(HOSTILE_NUMBERS)
    if tool == "benchmark_model":
        lines = [f"count={n} first={draw(HOSTILE_NUMBERS)} curr={x} min={draw(HOSTILE_NUMBERS)} "
                 f"max={draw(HOSTILE_NUMBERS)} avg={x} std={draw(HOSTILE_NUMBERS)}",
                 f"Inference timings in us: Init: {draw(HOSTILE_NUMBERS)}, First inference: {draw(HOSTILE_NUMBERS)}, "
                 f"Warmup (avg): {draw(HOSTILE_NUMBERS)}, Inference (avg): {x}"]
    elif tool == "executor_runner":
        k = draw(st.integers(1, 6))
        lines = [f"Iteration {i} of {k}: {draw(HOSTILE_NUMBERS)} ms" for i in range(1, k + 1)]
        lines.append(f"Model executed successfully {k} time(s) in {x} ms.")
    elif tool == "onnxruntime_perf_test":
        lines = [f"Total inference requests: {n}", f"Runs:{n}", f"Average inference time cost total: {x} ms",
                 f"P50 Latency: {draw(HOSTILE_NUMBERS)} s"]
    else:
        values = ", ".join(draw(st.lists(HOSTILE_NUMBERS, min_size=1, max_size=5)))
        lines = [f"Test Case '-[T t]' measured [Clock Monotonic Time, s] average: {x}, relative standard deviation: "
                 f"1.0%, values: [{values}]"]
    extra = draw(st.lists(st.one_of(*[_line(t) for t in TEMPLATES[tool]]), max_size=3))
    return "\n".join(draw(st.permutations(lines + extra)))


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**25, 10**25), st.floats(allow_nan=False),
                      st.text(max_size=20))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                    max_leaves=30)
NUMBER_LISTS = st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 10**6)),
                        max_size=12)


@st.composite
def native_line(draw) -> str:
    obj = {"tool": "et-bench", "samples_ms": draw(st.one_of(NUMBER_LISTS, JSON))}
    for key in ("tool_version", "threads", "warmup", "iters", "load_ms", "first_ms", "peak_rss_mb",
                "cpu_samples_ms"):
        if draw(st.booleans()):
            obj[key] = draw(st.one_of(JSON_LEAF, NUMBER_LISTS) if key == "cpu_samples_ms" else JSON_LEAF)
    obj.update(draw(st.dictionaries(st.text(max_size=8), JSON, max_size=3)))
    return draw(PREFIXES) + json.dumps(obj)


@st.composite
def xcresult(draw) -> str:
    metric = st.fixed_dictionaries({"displayName": st.sampled_from(["Clock Monotonic Time", "Time", "CPU Time", "x"]),
                                    "measurements": st.one_of(NUMBER_LISTS, JSON),
                                    "unitOfMeasurement": st.sampled_from(["s", "ms", "seconds", "kB", ""])})
    run = st.fixed_dictionaries({"metrics": st.one_of(st.lists(metric, max_size=3), JSON)},
                                optional={"device": st.one_of(JSON, st.fixed_dictionaries(
                                    {"deviceName": JSON_LEAF, "modelName": JSON_LEAF}))})
    test = st.fixed_dictionaries({"testRuns": st.one_of(st.lists(run, max_size=2), JSON)},
                                 optional={"testIdentifier": JSON_LEAF})
    return json.dumps(draw(st.one_of(st.lists(test, max_size=2), test, JSON)))


# --------------------------------------------------------------------------------------------- the parsers
@pytest.mark.parametrize("tool", sorted(TEMPLATES))
@FAST
@given(data=st.data())
def test_any_output_of_the_programs_vocabulary(tool, data):
    text = data.draw(tool_text(tool))
    parses_or_one_line(text, tool)
    parses_or_one_line(text)


@pytest.mark.parametrize("tool", sorted(TEMPLATES))
@FAST
@given(data=st.data())
def test_any_numbers_in_a_run_that_hangs_together(tool, data):
    parses_or_one_line(data.draw(consistent_run(tool)), tool)


@FAST
@given(st.lists(native_line(), min_size=1, max_size=2).map("\n".join))
def test_any_native_runner_json(text):
    parses_or_one_line(text, "native")


@FAST
@given(xcresult())
def test_any_xcresult_json(text):
    parses_or_one_line(text)
    parses_or_one_line(text, "xctest")


@FAST
@given(st.binary(max_size=400))
def test_any_bytes(raw):
    parses_or_one_line(raw.decode("utf-8", errors="replace"))
    parses_or_one_line(raw.decode("latin-1"))


@FAST
@given(st.text(max_size=300))
def test_the_adb_helpers_on_any_text(text):
    for fn in (adb_parse.parse_thermal, adb_parse.parse_getprop, adb_parse.big_cores_mask, adb_parse.shell_status):
        try:
            out = fn(text)
        except adb_parse.AdbError as exc:
            assert "\n" not in str(exc)
            continue
        if fn is adb_parse.parse_thermal:
            assert out.status is None or 0 <= out.status <= 999
            assert all(math.isfinite(t.celsius) and -100 <= t.celsius <= 400 for t in out.temperatures)
        elif fn is adb_parse.big_cores_mask:
            assert int(out, 16) > 0
        elif fn is adb_parse.shell_status:
            assert 0 <= out[1] <= 999


def test_found_examples_stay_fixed():
    """Inputs Hypothesis found (tests/data/parsers/found_*), kept as regression files."""
    found = sorted(DATA.glob("found_*"))
    assert found
    for path in found:
        parses_or_one_line(path.read_bytes().decode("utf-8", errors="replace"))


# --------------------------------------------------------------------------------------------- 1 MB, linear
LITERALS = ["count=", "count=1 ", "a=", "Inference timings in us: ", "Init: ", "Inference (avg): ", "Iteration 1 of ",
            "Model executed successfully ", "Test Case 'a", "' measured [", "] average: ", ", values: [",
            '{"tool": "et-bench", ', '"testRuns": ', "P50 Latency:", "Runs:", "Replacing 1 out of 2 node(s) with "
            "delegate (", "Num threads: [", "Peak memory footprint (MB): init=", "Total inference requests:",
            "Explicitly applied "]
FILLERS = ["", "a", "1", " ", "\n", "[", "{", ",", "(", "'", ".", "e", "\t", "\"", ":"]


HEADS = ["", "count=5 first=1 curr=1 min=1 max=2 avg=1.5 std=0.1\n", "Total inference requests: 5\n"]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(HEADS), st.sampled_from(LITERALS), st.sampled_from(FILLERS), st.integers(0, 40),
       st.booleans())
@example("count=5 first=1 curr=1 min=1 max=2 avg=1.5 std=0.1\n", "Inference timings in us: ", "a", 0, False)
@example("", "P50 Latency:", "\n", 0, False)
@example("", "Inference (avg): ", "1", 0, False)
def test_one_megabyte_of_adversarial_input_is_parsed_in_well_under_a_second(head, literal, filler, width, once):
    """Each literal the parsers look for with each filler: repeated (many starts) or followed by one long run of the
    filler (one start, a long scan); the examples are the three shapes that were quadratic before issue 18."""
    unit = literal + filler * width
    text = head + (literal + filler * 2**20 if once else unit * (2**20 // max(len(unit), 1) + 1))
    text = text[:2**20]
    t0 = time.monotonic()
    parses_or_one_line(text)
    assert time.monotonic() - t0 < GENEROUS_S, (head, literal, filler, width, once)


@pytest.mark.parametrize("name", ["native.json", "xcresult_metrics.json", "benchmark_model_info_percentiles.txt",
                                  "executor_runner_posix.txt", "onnxruntime_perf_test_new.txt", "xctest_values.txt"])
def test_a_real_output_padded_to_a_megabyte(name):
    real = (DATA / name).read_text()
    for pad in ("x" * 2**20, "\n" * 2**20, real.splitlines()[-1] * (2**20 // len(real.splitlines()[-1]))):
        t0 = time.monotonic()
        parses_or_one_line(real + pad)
        parses_or_one_line(pad + real)
        assert time.monotonic() - t0 < 2 * GENEROUS_S, name


# --------------------------------------------------------------------------------------------- the profile reader
KEYS = ["kind", "description", "serial", "adb", "workdir", "host", "port", "user", "identity_file", "known_hosts",
        "python", "pin", "cpus", "runner", "native_runner", "cores", "cooldown_c", "cooldown_timeout_s", "delegate",
        "benchmark_model", "onnxruntime_perf_test", "mac", "udid", "team_id", "compute_units", "connect_timeout",
        "colour"]
TOML_LEAF = st.one_of(st.sampled_from(["host", "ssh", "macos", "android", "ios", "toaster", "", "/tmp", "~/x",
                                       "R5CT1234", "127.0.0.1", "big", "all", "f0", "xnnpack", "native", "ALL",
                                       "00008120-001A2C3E0E98201E", "ABCDE12345", "/dev/null", "/", "-oX=y"]),
                      st.text(max_size=12), st.integers(-2**63, 2**63 - 1), st.booleans(),
                      st.floats(allow_nan=True, allow_infinity=True))
TOML_VALUE = st.recursive(TOML_LEAF, lambda inner: st.lists(inner, max_size=4), max_leaves=10)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


@st.composite
def profiles_text(draw) -> str:
    tables = draw(st.dictionaries(st.sampled_from(["pi", "phone", "mac", "iphone", "host", "a.b", "x y", "latest"]),
                                  st.dictionaries(st.sampled_from(KEYS), TOML_VALUE, max_size=8), min_size=1,
                                  max_size=3))
    out = []
    for name, keys in tables.items():
        out.append(f"[{json.dumps(name)}]")
        out += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(out) + "\n" + draw(st.sampled_from(["", "x", "[", "a = [" * 50, "\x00", "[pi]\n"]))


def reads_or_one_error(path: Path) -> None:
    import devices

    try:
        names = list(devices.profiles(path))
    except ToolkitError as exc:
        assert str(exc)
        return
    for name in names:
        try:
            dev = devices.get(name, path)
        except ToolkitError as exc:
            assert str(exc)
            continue
        assert dev.name == name and dev.kind in devices.KINDS
        dev.close()


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=profiles_text())
def test_any_profiles_file_gives_devices_or_one_error(tmp_path, text):
    p = tmp_path / "p.toml"
    p.write_text(text, errors="surrogatepass")
    reads_or_one_error(p)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_a_profiles_file(tmp_path, raw):
    p = tmp_path / "p.toml"
    p.write_bytes(raw)
    reads_or_one_error(p)
