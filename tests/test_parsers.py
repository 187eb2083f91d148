"""devices/parsers.py and devices/adb_parse.py on real-format samples (tests/data/parsers/, one file per variant, as
the programs print them): every field the output has, and one clear line for every bad output."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import adb_parse, parsers

DATA = Path(__file__).resolve().parent / "data" / "parsers"


def text(name: str) -> str:
    return (DATA / name).read_text()


# file -> (tool, variant, count, raw samples, fields that must have these values)
GOOD = {
    "benchmark_model_info_percentiles.txt": ("benchmark_model", "tflite classic", 50, False, dict(
        mean_ms=1240.27, median_ms=1239.807, min_ms=1238.588, max_ms=1252.566, std_ms=2.565, p5_ms=1238.753,
        p95_ms=1247.415, load_ms=5.579, first_ms=1357.602, warmup_ms=1357.6, warmup_runs=1, peak_memory_mb=115.941,
        threads=1, delegate="XNNPACK (partially, 3 delegate kernels)")),
    "benchmark_model_old_noprefix.txt": ("benchmark_model", "tflite classic", 50, False, dict(
        mean_ms=249.684, median_ms=None, p5_ms=None, min_ms=247.067, load_ms=16.242, warmup_runs=2,
        peak_memory_mb=62.6758, threads=4)),
    "benchmark_model_old_labels.txt": ("benchmark_model", "tflite classic (old labels)", 50, False, dict(
        mean_ms=83.0171, load_ms=2.818, warmup_ms=87.504, first_ms=None)),
    "benchmark_model_logcat.txt": ("benchmark_model", "tflite classic", 146, False, dict(
        median_ms=6.822, p95_ms=7.141, warmup_runs=71, threads=4,
        delegate="TfLiteXNNPackDelegate: 126 of 126 nodes")),
    "benchmark_model_g_numbers.txt": ("benchmark_model", "tflite classic", 20, False, dict(
        mean_ms=2950.34, warmup_ms=3512.39, median_ms=2944.106)),
    "benchmark_model_count1.txt": ("benchmark_model", "tflite classic", 1, True, dict(
        samples_ms=[12.104], mean_ms=12.104, median_ms=12.104, std_ms=None)),
    "benchmark_model_all_same.txt": ("benchmark_model", "tflite classic", 3, True, dict(
        samples_ms=[0.001] * 3, std_ms=0.0)),
    "benchmark_model_litert.txt": ("benchmark_model", "litert compiled-model", 100, False, dict(
        mean_ms=12.34, min_ms=11.98, max_ms=14.2, std_ms=0.31, median_ms=12.295, load_ms=35.21, first_ms=40.12,
        warmup_ms=13.01, warmup_runs=10, peak_memory_mb=88.14, threads=4)),
    "executor_runner_posix.txt": ("executor_runner", "iterations", 9, True, dict(
        first_ms=31.204511, load_ms=52.421833, warmup_runs=0)),
    "executor_runner_logcat.txt": ("executor_runner", "iterations", 5, True, dict(
        samples_ms=[30.55119, 30.478223, 30.612004, 30.390551, 30.505218], first_ms=40.412877, load_ms=31.802113)),
    "executor_runner_total_only.txt": ("executor_runner", "total only", 50, False, dict(
        mean_ms=1231.260098 / 50, samples_ms=None, load_ms=None)),
    "native.json": ("native", "et-bench v1", 10, True, dict(  # real output of et-bench (make native)
        load_ms=72.21958, first_ms=6.204023, warmup_runs=2, threads=1, mean_ms=4.0003167, peak_memory_mb=48.710938)),
    "onnxruntime_perf_test_new.txt": ("onnxruntime_perf_test", "new labels", 5, False, dict(
        mean_ms=98.961997, median_ms=99.5086, min_ms=95.8204, max_ms=101.519, p90_ms=101.519, load_ms=217.932,
        first_ms=196.0, peak_memory_mb=271122432 / 2**20, threads=1)),
    "onnxruntime_perf_test_old.txt": ("onnxruntime_perf_test", "old labels", 200, False, dict(
        mean_ms=14.7056, median_ms=14.6012, p99_ms=17.1893, first_ms=None, load_ms=71.2)),
    "xctest_values.txt": ("xctest", "measure line", 10, True, dict(mean_ms=4.1508)),
    "xctest_legacy.txt": ("xctest", "measure line (legacy Time)", 10, True, dict(mean_ms=12.1045)),
    "xcresult_metrics.json": ("xctest", "xcresulttool json", 10, True, dict(mean_ms=1.2038)),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_each_variant_parses_with_its_figures(name):
    tool, variant, count, raw, fields = GOOD[name]
    t = text(name)
    assert parsers.detect(t) == tool
    r = parsers.parse(t, tool)
    assert (r.tool, r.variant, r.count, r.raw_samples) == (tool, variant, count, raw)
    assert (r.samples_ms is not None) == raw
    if raw:
        assert len(r.samples_ms) == count
    for key, want in fields.items():
        got = getattr(r, key)
        assert got == (pytest.approx(want) if want is not None and not isinstance(want, str) else want), key
    assert parsers.parse(t) == r  # auto-detection gives the same record


def test_aggregate_tools_never_make_up_samples():
    for name, (_tool, _, count, raw, _) in GOOD.items():
        r = parsers.parse(text(name))
        if not raw:
            assert r.samples_ms is None and r.aggregates()["count"] == count


def test_xctest_uses_values_not_the_rounded_average():
    r = parsers.parse(text("xctest_values.txt"))
    assert r.samples_ms[:3] == pytest.approx([4.411, 4.123, 4.087])  # the line's average says 0.004 s
    assert r.cpu_samples_ms[:2] == pytest.approx([4.390, 4.101])
    assert r.extra["test"] == "-[CoreMLTests test_mobileformer_294m_224_cpu_and_ne]"
    j = parsers.parse(text("xcresult_metrics.json"))
    assert j.samples_ms[0] == pytest.approx(1.242) and j.extra["modelName"] == "iPhone 15 Pro"


def test_executor_runner_keeps_the_cold_iteration_apart():
    r = parsers.parse(text("executor_runner_posix.txt"), expected=10)
    assert r.first_ms == pytest.approx(31.204511) and r.samples_ms[0] == pytest.approx(24.118722)


BAD = {
    "benchmark_model_count0.txt": "benchmark_model reports count=0: no timed iteration ran",
    "benchmark_model_truncated.txt": "truncated benchmark_model output: no 'Inference timings in us' line",
    "benchmark_model_unparsable.txt": "unparsable number '1.2o4e+04' for avg= (line 5)",
    "executor_runner_truncated.txt": "truncated executor_runner output: 3 of 10 iteration lines",
    "onnxruntime_perf_test_truncated.txt": "truncated onnxruntime_perf_test output: no 'Average inference time cost'",
    "xctest_truncated.txt": "line 5: the values list is cut off (truncated output)",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_output_is_one_clear_line(name):
    with pytest.raises(parsers.ParseError) as exc:
        parsers.parse(text(name))
    assert BAD[name] in str(exc.value) and "\n" not in str(exc.value)
    assert isinstance(exc.value, parsers.ToolkitError)


def test_another_tools_output_and_garbage_are_refused():
    with pytest.raises(parsers.ParseError, match="this is onnxruntime_perf_test output, not benchmark_model"):
        parsers.parse(text("onnxruntime_perf_test_new.txt"), "benchmark_model")
    with pytest.raises(parsers.ParseError, match="this is xctest output, not executor_runner"):
        parsers.parse(text("xcresult_metrics.json"), "executor_runner")
    with pytest.raises(parsers.ParseError, match="not the output of benchmark_model"):
        parsers.parse("hello\nworld\n")
    with pytest.raises(parsers.ParseError, match="empty"):
        parsers.parse("  \n")
    with pytest.raises(parsers.ParseError, match="unknown tool 'perf'"):
        parsers.parse("x", "perf")


@pytest.mark.parametrize("name,expected,message", [
    ("benchmark_model_info_percentiles.txt", 100, "benchmark_model ran 50 timed iterations, 100 were expected"),
    ("executor_runner_logcat.txt", 5, "executor_runner ran 6 timed iterations, 5 were expected"),
    ("onnxruntime_perf_test_new.txt", 10, "onnxruntime_perf_test ran 5 timed iterations, 10 were expected"),
    ("xctest_values.txt", 5, "xctest ran 10 timed iterations, 5 were expected"),
    ("native.json", 11, "native runner ran 10 timed iterations, 11 were expected"),
])
def test_a_count_other_than_expected_is_refused(name, expected, message):
    with pytest.raises(parsers.ParseError, match=message):
        parsers.parse(text(name), expected=expected)


def test_mixed_or_damaged_outputs():
    bm = text("benchmark_model_info_percentiles.txt")
    with pytest.raises(parsers.ParseError, match="holds 2 benchmark runs"):
        parsers.parse(bm + bm)
    with pytest.raises(parsers.ParseError, match="disagrees with the statistics line"):
        parsers.parse(bm.replace("Inference (avg): 1.24027e+06", "Inference (avg): 2.5e+06"))
    with pytest.raises(parsers.ParseError, match="truncated or broken JSON"):
        parsers.parse(text("native.json")[:120])
    with pytest.raises(parsers.ParseError, match="'samples_ms' is not a list of numbers"):
        parsers.parse('{"tool": "et-bench", "samples_ms": [1, "x"]}')
    native = parsers.parse('{"tool": "et-bench", "samples_ms": [1.5, 2.5], "new_field": {"a": 1}}')
    assert native.extra == {"new_field": {"a": 1}} and native.load_ms is None  # extra fields are tolerated
    with pytest.raises(parsers.ParseError, match="not a list of numbers"):
        parsers.parse('[{"testIdentifier": "T", "testRuns": [{"metrics": [{"displayName": "Clock Monotonic Time", '
                      '"measurements": "fast", "unitOfMeasurement": "s"}]}]}]')
    with pytest.raises(parsers.ParseError, match="'Model executed successfully 5 time\\(s\\)' but 6 iteration"):
        parsers.parse(text("executor_runner_logcat.txt").replace("successfully 6 time", "successfully 5 time"))


# --------------------------------------------------------------------------------------------- adb helpers
@pytest.mark.parametrize("stderr,rc,line", [
    ("error: device 'R5CT' not found\n", 1, "device 'R5CT' not found: `adb devices` lists the connected serials"),
    ("error: no devices/emulators found\n", 1, "no devices/emulators found: connect the phone with USB debugging on"),
    ("error: device offline\n", 1, "device 'R5CT' is offline: reconnect the cable or run `adb reconnect`"),
    ("error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n", 1,
     "device 'R5CT' is unauthorized: accept the USB debugging prompt"),
    ("error: device still authorizing\n", 1, "device 'R5CT' is still authorizing"),
    ("error: more than one device/emulator\n", 1, "more than one device/emulator is connected: name one"),
    ("adb: error: failed to get feature set: device 'R5CT' not found\n", 1,
     "adb push/pull: device 'R5CT' not found"),
    ("adb: error: failed to get feature set: device offline\n", 1, "adb push/pull: device 'R5CT' is offline"),
    ("error: closed\n", 1, "adb failed (exit 1): closed"),
])
def test_adb_errors_are_one_clear_line(stderr, rc, line):
    got = adb_parse.adb_error_line(stderr, rc, "R5CT")
    assert got.startswith(line) and "\n" not in got
    with pytest.raises(adb_parse.AdbError):
        adb_parse.check_adb(stderr, rc, "R5CT")


def test_adb_success_and_shell_status():
    assert adb_parse.adb_error_line("", 0) is None
    assert adb_parse.shell_status("a\r\nb\r\nRC=3\r\n") == ("a\nb", 3)
    with pytest.raises(adb_parse.AdbError, match="no RC= line"):
        adb_parse.shell_status("a\nb\n")


THERMAL = """IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
Thermal Status: 2
Cached temperatures:
\tTemperature{mValue=30.0, mType=0, mName=CPU0, mStatus=0}
\tTemperature{mValue=28.5, mType=2, mName=battery, mStatus=0}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
\tTemperature{mValue=62.500004, mType=0, mName=CPU0, mStatus=0}
\tTemperature{mValue=71.2, mType=0, mName=CPU7, mStatus=1}
\tTemperature{mValue=48.1, mType=1, mName=GPU, mStatus=0}
\tTemperature{mValue=35.0, mType=2, mName=battery, mStatus=0}
Current cooling devices from HAL:
\tCoolingDevice{mValue=0, mType=2, mName=cpu0}
"""


def test_thermal_uses_the_live_hal_block():
    th = adb_parse.parse_thermal(THERMAL)
    assert th.status == 2 and [t.name for t in th.temperatures] == ["CPU0", "CPU7", "GPU", "battery"]
    assert th.cpu_max == pytest.approx(71.2)  # not the cached 30.0
    with pytest.raises(adb_parse.AdbError, match="not `dumpsys thermalservice` output"):
        adb_parse.parse_thermal("nothing here")


def test_big_cores_mask_and_getprop():
    caps = "\n".join(f"/sys/devices/system/cpu/cpu{i}/cpu_capacity:{v}" for i, v in
                     enumerate([261, 261, 261, 261, 871, 871, 1024, 1024]))
    assert adb_parse.big_cores_mask(caps) == "c0"
    assert adb_parse.big_cores_mask("cpu0 1800000\ncpu1 1800000\ncpu2 2400000\ncpu3 2400000\r\n") == "c"
    assert adb_parse.big_cores_mask("cpu0 100\ncpu1 100") == "3"  # one cluster: all cores
    with pytest.raises(adb_parse.AdbError, match="no 'cpuN ... value' lines"):
        adb_parse.big_cores_mask("permission denied")
    props = adb_parse.parse_getprop("[ro.product.model]: [Pixel 7]\r\n[ro.soc.model]: [GS201]\n"
                                    "[ro.build.version.sdk]: [34]\n")
    assert props == {"ro.product.model": "Pixel 7", "ro.soc.model": "GS201", "ro.build.version.sdk": "34"}
    with pytest.raises(adb_parse.AdbError, match="not getprop output"):
        adb_parse.parse_getprop("sh: getprop: not found")
