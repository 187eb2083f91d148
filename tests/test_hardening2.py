"""The second hostile review's breaks (issue 18), one test or more each, numbered as in the issue: the device and
import paths under hostile input. Everything runs for real: `bench import` and `bench report` as commands, the
stand-in phone of tests/standin_adb.py (the only stand-in: it replaces the phone; the programs it "runs" are shell
scripts printing what the real programs print, named STAND-IN, as onnxruntime_perf_test cannot be built here), make,
sqlite, the parsers on the bytes an attacker would write. The real headless browser is tests/test_browser.py; the
property tests are tests/test_properties.py; the deterministic board kill is tests/test_ssh.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standin_adb import make_phone

from bench.__main__ import main as bench_main
from bench.store import Store
from devices import parsers
from models.errors import cli_main

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "parsers"
STANDIN = Path(__file__).resolve().parent / "standin_adb.py"
MF, V3 = "mobileformer_294m", "mobilenetv3_large_100"
XSS_NAME = "<img src=x onerror=alert(1)>.json"
XSS_VERSION = "<script>alert(1)</script>"


def bench(tmp: Path, *args: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    extra = ["--store", str(tmp / "s.sqlite")] + ([] if args[0] == "import" else ["--reports", str(tmp / "reports")])
    rc = cli_main(bench_main, "bench", [args[0], *extra, *args[1:]])
    out, err = capsys.readouterr()
    return rc, out, err


def imp(tmp: Path, capsys, tool: str, fmt: str, *files, model: str = MF, res: str = "224", device: str = "pixel7",
        extra=()) -> tuple[int, str, str]:
    return bench(tmp, "import", "--tool", tool, "--model", model, "--format", fmt, "--res", res, "--device", device,
                 *extra, *map(str, files), capsys=capsys)


def one_error(rc: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def native_json(samples, **keys) -> str:
    return json.dumps({"tool": "et-bench", "tool_version": 1, "threads": 1, "warmup": 2, "iters": len(samples),
                       "load_ms": 50.0, "first_ms": 6.0, "samples_ms": samples, **keys}) + "\n"


def cli(pkg: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", pkg, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------------------------- 1. stored XSS
def test_an_imported_script_and_file_name_are_text_in_report_md_and_html(tmp_path, capsys):
    evil = tmp_path / XSS_NAME
    evil.write_text(native_json([4.0, 4.1, 4.2], tool_version=XSS_VERSION))
    rc, out, err = imp(tmp_path, capsys, "native", "executorch", evil)
    assert rc == 0, err
    rc, out, err = bench(tmp_path, "report", "--run", "pixel7-import", capsys=capsys)
    assert rc == 0, err
    d = tmp_path / "reports" / "pixel7-import"
    html = (d / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;.json" in html
    md = (d / "report.md").read_text()
    assert "\\<script\\>alert(1)\\</script\\>" in md and "\\<img src=x onerror=alert(1)\\>.json" in md


def test_a_phones_words_in_the_environment_cannot_break_the_report(tmp_path):
    """getprop values (model, manufacturer, SoC) reach a run's environment: with HTML, a table pipe, a newline and
    backticks in them, report.md keeps its structure and report.html shows them as text."""
    from bench import analysis, writers

    evil = "<img src=x onerror=alert(1)> | x\n# y `z`"
    run = {"run_id": "r1", "device": "phone", "created": "2026-01-01", "cells_total": 1, "finished": "2026-01-01",
           "argv": ["python", "-m", "bench", "run", "--models", "`a` | <b>"], "seed": 1,
           "environment": {"kind": "android", "cpu_model": evil, "os": evil, "cores": evil},
           "args": {"threads": [1], "iterations": 2, "warmup": 0}}
    row = {"model": "mobileformer_26m", "overrides": {}, "family": "mobileformer", "format": "onnx",
           "converter": "torch-dynamo", "precision": "fp32", "device": "phone", "threads": 1, "height": 64, "width": 64,
           "status": "failed", "stage": "run", "error": evil, "unstable": None, "samples_ms": None}
    md = writers.markdown(analysis.analyse(run, [row]))
    assert not re.search(r"(?<!\\)<img", md) and "\n# y" not in md  # escaped (in a code span `<b>` is text)
    failures = md.partition("## Failures")[2].split("\n## ")[0]
    table = [ln for ln in failures.splitlines() if ln.startswith("|")]
    assert all(ln.replace("\\|", "").count("|") == 6 for ln in table), table  # 5 cells, however the error reads
    for name in analysis.PLOT_NAMES:  # html() inlines the plots; their pixels do not matter here
        (tmp_path / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    html = writers.html(md, tmp_path, "t")
    assert "<img src=x" not in html and "<b>" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_escape_is_one_rule_for_every_medium():
    from models.escape import escape

    s = "a\nb\x1b[2J\u202e|`<x>`_y_"
    assert escape(s, "terminal") == "a\\nb\\x1b[2J\\u202e|`<x>`_y_"
    assert "\n" not in escape(s, "markdown") and "\\|" in escape(s, "markdown") and "\\<x\\>" in escape(s, "markdown")
    assert escape("mobileformer_294m", "markdown") == "mobileformer_294m"  # an underscore in a word cannot emphasise
    assert escape("a``b", "code") == "```a``b```" and escape("`x", "code") == "`` `x ``"
    assert escape('<a href="x">', "html") == "&lt;a href=&quot;x&quot;&gt;"
    assert escape("=cmd|' /C calc'!A0", "csv").startswith("'=")


# --------------------------------------------------------------------------------------------- 2. hangs, memory, time
def test_import_of_a_fifo_or_a_device_is_one_line_at_once(tmp_path):
    fifo = tmp_path / "out.txt"
    os.mkfifo(fifo)
    for path, needle in ((fifo, "not a regular file"), (Path("/dev/zero"), "not a regular file")):
        t0 = time.monotonic()
        proc = cli("bench", "import", "--tool", "benchmark_model", "--model", MF, "--format", "tflite", "--res",
                   "224", "--device", "p", "--store", str(tmp_path / "s.sqlite"), str(path), timeout=60)
        assert proc.returncode == 2 and needle in proc.stderr and time.monotonic() - t0 < 30, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_file_over_the_cap_is_refused_from_its_size(tmp_path, capsys):
    from bench.importer import MAX_BYTES

    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: nothing is written, nothing read beyond the cap
    one_error(*imp(tmp_path, capsys, "benchmark_model", "tflite", big)[::2], "larger than 16 MB")


@pytest.mark.parametrize("text", [
    "count=5 first=1 curr=1 min=1 max=2 avg=1.5 std=0.1\nInference timings in us: " + "a" * 100_000,
    "\n" * 100_000 + "P50 Latency: 1 s",
    "Inference (avg): " + "1" * 100_000 + "x",
    "Test Case 'a' measured [Time, s" * 4000,
    "Replacing 1 out of 2 node(s) with delegate (" * 3000 + "\ncount=1 curr=5\nInference timings in us: "
    "Inference (avg): 5\n",
], ids=["summary-letters", "blank-lines", "digits", "test-case", "replacing"])
def test_parsers_are_linear_on_the_inputs_that_were_quadratic(text):
    t0 = time.monotonic()
    try:
        parsers.parse(text)
    except parsers.ParseError:
        pass
    assert time.monotonic() - t0 < 2.0  # 100 KB: seconds to minutes before, milliseconds now


def test_counts_are_bounded_before_they_allocate():
    r = parsers.parse("count=1000000 curr=2(all same)\nInference timings in us: Inference (avg): 2\n")
    assert r.count == 1_000_000 and r.samples_ms is None and r.median_ms == pytest.approx(0.002)  # not 7 MB
    with pytest.raises(parsers.ParseError, match="not a whole number from 0 to 100000000"):
        parsers.parse("count=1000000000 curr=2(all same)\nInference timings in us: Inference (avg): 2\n")


# --------------------------------------------------------------------------------------------- 3. android sweeps
PROGRAM_ORT = """#!/bin/sh
# STAND-IN for onnxruntime_perf_test (its summary lines, as the real program prints them; it cannot be built here)
n=1; while [ $# -gt 0 ]; do [ "$1" = -r ] && n=$2; shift; done
echo "Session creation time cost: 0.05 s"
echo "Total inference requests: $n"
echo "Average inference time cost total: 4.2 ms"
echo "P50 Latency: 0.0041 s"
printf 'Runs:%s' "$n"
"""
PROGRAM_HUNG = """#!/bin/sh
# STAND-IN for a benchmark program that hangs on the phone: writes its pid (the pid of what runs) and sleeps
echo $$ > "$STANDIN_ADB_ROOT/hung.pid"
exec sleep 600
"""


@pytest.fixture
def phone(tmp_path):
    """The stand-in phone (no native build needed): (root, profiles file, env)."""
    root = tmp_path / "phone"
    make_phone(root, capacities={0: 512, 1: 1024})
    env = {"STANDIN_ADB_ROOT": str(root), "STANDIN_ADB_SERIAL": "standin-phone"}
    os.environ.update(env)
    yield root, env
    for k in env:
        os.environ.pop(k, None)


def _program(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o755)
    return p


def _phone_profile(tmp_path: Path, **keys) -> Path:
    prof = {"kind": "android", "serial": "standin-phone", "adb": str(STANDIN), "cooldown_c": 45,
            "cooldown_timeout_s": 1, **keys}
    p = tmp_path / "phone.toml"
    p.write_text("[phone]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in prof.items()))
    return p


@pytest.mark.bench
def test_an_aggregate_program_with_one_round_is_an_aggregate_cell_and_resumes(tmp_path, phone, artifacts):
    ort = _program(tmp_path, "onnxruntime_perf_test", PROGRAM_ORT)
    profiles = _phone_profile(tmp_path, onnxruntime_perf_test=str(ort))
    args = ["run", "--device", "phone", "--profiles", str(profiles), "--models", "mobilenetv3_small_075",
            "--formats", "onnx", "--res", "64", "--rounds", "1", "--iters", "5", "--warmup", "1", "--artifacts",
            str(artifacts), "--store", str(tmp_path / "r.sqlite"), "--reports", str(tmp_path / "reports")]
    for _ in range(2):  # the run, then the same command again (it crashed the same way before)
        proc = cli("bench", *args, env=phone[1], timeout=600)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    (cell,) = Store.open(tmp_path / "r.sqlite", readonly=True).cells(
        Store.open(tmp_path / "r.sqlite", readonly=True).runs()[0]["run_id"])
    assert cell["status"] == "ok" and cell["raw_samples"] is False and cell["median_ms"] == pytest.approx(4.1)


def test_a_single_aggregate_measurement_is_stored_not_a_crash():
    from types import SimpleNamespace

    from bench import sweep
    from devices.base import Measurement

    cell = sweep.Cell("mobileformer_26m", (), "onnx", "torch-dynamo", "fp32", 64, 64, "phone", 1)
    m = Measurement([4.2], None, None, 1, 1, raw_samples=False)
    row = sweep.cell_row("r", 0, cell, args=SimpleNamespace(iterations=5, warmup=1), status="ok", measurement=m)
    assert row["median_ms"] == row["mean_ms"] == 4.2 and row["raw_samples"] == 0 and row["cv"] is None


def test_a_thermal_dump_that_is_not_numbers_is_one_line(tmp_path, phone):
    root, env = phone
    dumpsys = root / "bin/dumpsys"
    dumpsys.write_text("#!/bin/sh\necho 'Thermal Status: 0'\necho 'Current temperatures from HAL:'\n"
                       "echo '\tTemperature{mValue=1.2.3, mType=0, mName=CPU0, mStatus=0}'\n"
                       "echo '\tTemperature{mValue=38.0, mType=0, mName=CPU1, mStatus=999999999999999999}'\n")
    ort = _program(tmp_path, "onnxruntime_perf_test", PROGRAM_ORT)
    r = cli("devices", "check", "phone", "--profiles", str(_phone_profile(tmp_path, onnxruntime_perf_test=str(ort))),
            env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 0, r.stderr
    assert "thermal: status 0, CPU None C (thermalservice)" in r.stdout


# --------------------------------------------------------------------------------------------- 4. tracebacks
@pytest.mark.parametrize("tool,fmt,text,needle", [
    ("executor_runner", "executorch", "Model executed successfully " + "9" * 400 + " time(s) in 5.0 ms.\n",
     "beyond"),  # was an OverflowError (5.0 / a 400-digit count)
    ("executor_runner", "executorch", "Model executed successfully " + "9" * 25 + " time(s) in 5.0 ms.\n",
     "beyond"),  # was an OverflowError in store.add_import (beyond SQLite's INTEGER)
    ("benchmark_model", "tflite", (DATA / "benchmark_model_logcat.txt").read_text() + "Num threads: [" + "9" * 30
     + "]\n", "Num threads"),
    ("executor_runner", "executorch", "Model executed successfully " + "9" * 5000 + " time(s) in 5.0 ms.\n",
     "beyond"),
    ("native", "executorch", '{"tool": "et-bench", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "nested"),
    ("native", "executorch", '{"tool": "et-bench", "samples_ms": [1, 2], "warmup": ' + "9" * 5000 + "}\n",
     "JSON integer of 5000 digits"),
    ("xctest", "coreml", '[{"testRuns": "abc"}]', "testRuns is not a list of objects"),
    ("xctest", "coreml", '[{"testRuns": [{"metrics": {"a": 1}}]}]', "metrics is not a list of objects"),
    ("xctest", "coreml", '[{"testRuns": [{"metrics": [{"displayName": ["x"]}]}]}]', "no clock-time metric"),
    ("xctest", "coreml", '{"testRuns": [1]}', "testRuns is not a list of objects"),
    ("xctest", "coreml", '[1, {"testRuns": []}]', "the top level is not a list of objects"),
], ids=["400-digits", "beyond-sqlite", "5000-digits", "threads-30-digits", "json-100000-deep", "json-5000-digits",
        "testruns-str", "metrics-dict", "displayname-list", "testruns-int", "top-level-int"])
def test_hostile_files_are_one_line_and_import_nothing(tmp_path, capsys, tool, fmt, text, needle):
    f = tmp_path / "out.txt"
    f.write_text(text)
    one_error(*imp(tmp_path, capsys, tool, fmt, f)[::2], needle, "nothing imported")
    assert Store.open(tmp_path / "s.sqlite", readonly=True).runs() == []


def test_a_count_beyond_sqlite_is_one_line_at_the_store(tmp_path):
    from models.errors import ToolkitError

    store = Store.open(tmp_path / "s.sqlite")
    with pytest.raises(ToolkitError, match="beyond what .* can store"):
        store.add_run({"run_id": "r", "created": "x", "args_hash": "x", "args": {}, "seed": 2**70, "device": "d",
                       "environment": {}, "cells_total": 0})
    assert store.runs() == []


# --------------------------------------------------------------------------------------------- 5. impossible numbers
IMPOSSIBLE = {
    "native negative sample": native_json([4.0, -1.0, 4.2]),
    "native zero sample": native_json([4.0, 0.0, 4.2]),
    "native infinite sample": native_json([4.0, 1e308 * 10, 4.2]).replace("Infinity", "1e999"),
    "native negative load": native_json([4.0, 4.1], load_ms=-3.0),
    "native negative warmup": native_json([4.0, 4.1], warmup=-1),
    "native negative peak": native_json([4.0, 4.1], peak_rss_mb=-5.0),
    "native threads 0": native_json([4.0, 4.1], threads=0),
    "native threads -3": native_json([4.0, 4.1], threads=-3),
    "native iters 10, 3 samples": native_json([4.0, 4.1, 4.2], iters=10),
    "executor_runner negative": "Iteration 1 of 3: 5.0 ms\nIteration 2 of 3: -1.0 ms\nIteration 3 of 3: 5.0 ms\n"
                                "Model executed successfully 3 time(s) in 9.0 ms.\n",
    "executor_runner -5 ms": "Model executed successfully 3 time(s) in -5 ms.\n",
    "xctest zero": "Test Case 'T' measured [Clock Monotonic Time, s] average: 0.0, relative standard deviation: "
                   "0.0%, values: [0.0, 0.001, 0.001]\n",
    "xctest 1e307 s": "Test Case 'T' measured [Clock Monotonic Time, s] average: 0.0, relative standard deviation: "
                      "0.0%, values: [1e307, 0.001, 0.001]\n",
    "benchmark_model negative avg": "count=50 first=1 curr=1 min=-9 max=2 avg=-1.5 std=0.1\n"
                                    "Inference timings in us: Inference (avg): -1.5\n",
    "benchmark_model negative std": "count=50 first=1 curr=1 min=1 max=2 avg=1.5 std=-0.1\n"
                                    "Inference timings in us: Inference (avg): 1.5\n",
    "benchmark_model min above max": "count=50 first=1 curr=1 min=9 max=2 avg=1.5 std=0.1\n"
                                     "Inference timings in us: Inference (avg): 1.5\n",
    "ort negative mean": "Total inference requests: 5\nAverage inference time cost total: -4.2 ms\n",
    "ort negative P50": "Total inference requests: 5\nAverage inference time cost total: 4.2 ms\nP50 Latency: -1 s\n",
}


@pytest.mark.parametrize("name", sorted(IMPOSSIBLE))
def test_impossible_numbers_are_refused(name):
    with pytest.raises(parsers.ParseError) as exc:
        parsers.parse(IMPOSSIBLE[name])
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------------- 6. hung programs
@pytest.mark.bench
def test_a_hung_program_is_killed_on_the_phone(tmp_path, phone, artifacts):
    import devices

    root, _ = phone
    hung = _program(tmp_path, "onnxruntime_perf_test", PROGRAM_HUNG)
    dev = devices.get("phone", _phone_profile(tmp_path, onnxruntime_perf_test=str(hung)))
    art = next(p.parent for p in artifacts.rglob("manifest.json") if "64x64" in str(p))
    try:
        (res,) = dev.run_group([str(art)], rounds=1, per_round=2, warmup=0, switch_warmup=0, threads=1, timeout=3,
                               seed=0)
    finally:
        dev.close()
    assert isinstance(res, devices.MeasureError) and res.stage == "timeout", res
    assert str(res).count("device phone:") == 1, str(res)
    pid = int((root / "hung.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the hung program is still running on the phone"


# --------------------------------------------------------------------------------------------- 7. adb in the profile
def test_a_bad_adb_or_an_empty_program_is_one_line(tmp_path):
    (tmp_path / "adbdir").mkdir()
    noexec = tmp_path / "adb-noexec"
    noexec.write_text("#!/bin/sh\n")
    empty = tmp_path / "empty_runner"
    empty.write_text("")
    for keys, needle in [({"adb": str(tmp_path / "adbdir")}, "is a directory"), ({"adb": ""}, "adb must be"),
                         ({"adb": str(noexec)}, "is not executable"), ({"adb": "ad\x00b"}, "NUL byte"),
                         ({"native_runner": str(empty)}, "is an empty file")]:
        p = tmp_path / "p.toml"
        body = {"kind": "android", "serial": "X1", **keys}
        p.write_text("[phone]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items()))
        r = cli("devices", "check", "phone", "--profiles", str(p))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------- 8. make settings
@pytest.mark.parametrize("var", ["VENV_CACHE", "XDG_CACHE_HOME", "HOME", "PYTHON"])
def test_make_settings_are_never_expanded(tmp_path, var):
    pwned = tmp_path / "pwned"
    value = f"$(shell touch {pwned})"
    for how in ("environment", "command line"):
        env = {**os.environ, var: value} if how == "environment" else dict(os.environ)
        cmd = ["make", "--no-print-directory", "help"] + ([f"{var}={value}"] if how == "command line" else [])
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
        assert not pwned.exists(), f"{var} from the {how} ran a command"
    subprocess.run(["make", "--no-print-directory", "help", f"ANYTHING={value}"], cwd=ROOT, capture_output=True,
                   timeout=60)
    assert not pwned.exists(), "a command-line variable ran a command"


# --------------------------------------------------------------------------------------------- 9. profiles
@pytest.mark.parametrize("body,needle", [
    ("[x]\nkind = 'host'\ndescription = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ('[x]\nkind = "ssh"\nhost = "h"\npython = "py\\u0000thon"\n', "python holds a NUL byte"),
    ('[x]\nkind = "ssh"\nhost = "h\\n"\n', "is not a host name"),
    ('[x]\nkind = "ssh"\nhost = "h"\nuser = "u\\n"\n', "is not a user name"),
    ('[x]\nkind = "android"\nserial = "R5CT\\n"\n', "is not an adb serial"),
    ('[x]\nkind = "ios"\nmac = "m"\nudid = "00008120-001A2C3E0E98201E\\n"\nteam_id = "ABCDE12345"\n',
     "is not a device identifier"),
    ('[x]\nkind = "ios"\nmac = "m"\nudid = "00008120-001A2C3E0E98201E"\nteam_id = "ABCDE12345\\n"\n',
     "is not an Apple development team id"),
])
def test_hostile_profiles_are_one_line(tmp_path, body, needle):
    p = tmp_path / "p.toml"
    p.write_text(body)
    r = cli("devices", "check", "x", "--profiles", str(p))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------- 10. bench why
@pytest.mark.parametrize("args,needle", [
    (["--threads", "abc"], "--threads takes a whole number"),
    (["--threads", "99999"], "--threads takes a whole number from 1 to 1024"),
    (["--threads", "1000"], "cannot run 1000 threads"),
    (["--models", ","], "names no model"),
    (["--models", "mobilenetv3_large_100"], "names no Mobile-Former model"),
    (["--models", "mobileformer_26m,roofline_gemm512"], "roofline_gemm512 is not a subject or a baseline"),
    (["--formats", "coreml"], "cannot run coreml"),
])
def test_bench_why_refuses_what_it_cannot_honour(tmp_path, args, needle):
    base = {"--models": "mobileformer_26m", "--formats": "onnx", "--res": "64", "--threads": "1"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    r = cli("bench", "why", *[x for kv in base.items() for x in kv], "--store", str(tmp_path / "s.sqlite"),
            "--artifacts", str(tmp_path / "a"), "--reports", str(tmp_path / "r"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "a").exists()  # refused before anything was exported


# --------------------------------------------------------------------------------------------- 11. smaller
def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path, capsys):
    f = tmp_path / "bm\nINJECTED.txt"
    f.write_bytes((DATA / "benchmark_model_logcat.txt").read_bytes())
    rc, out, err = imp(tmp_path, capsys, "benchmark_model", "tflite", f)
    assert rc == 0 and "bm\\nINJECTED.txt: benchmark_model" in out and not out.startswith("INJECTED")
    assert all(not ln.startswith("INJECTED") for ln in out.splitlines())


def test_a_long_device_name_gets_a_default_run_id_it_can_use(tmp_path, capsys):
    device = "d" * 60
    rc, out, err = imp(tmp_path, capsys, "benchmark_model", "tflite", DATA / "benchmark_model_logcat.txt",
                       device=device)
    assert rc == 0, err
    (run,) = Store.open(tmp_path / "s.sqlite", readonly=True).runs()
    assert len(run["run_id"]) <= 64 and run["run_id"].startswith("d" * 48) and run["run_id"].endswith("-import")
    rc, out, err = imp(tmp_path, capsys, "benchmark_model", "tflite", DATA / "benchmark_model_info_percentiles.txt",
                       device=device, res="160")
    assert rc == 0 and f"run {run['run_id']}" in out, err  # the same run the second time


def test_the_same_file_as_another_cell_says_as_what(tmp_path, capsys):
    f = DATA / "benchmark_model_logcat.txt"
    assert imp(tmp_path, capsys, "benchmark_model", "tflite", f)[0] == 0
    rc, out, err = imp(tmp_path, capsys, "benchmark_model", "tflite", f)
    assert rc == 0 and f"as benchmark_model output of {MF} tflite 224x224 on pixel7" in out
    line = one_error(*imp(tmp_path, capsys, "benchmark_model", "tflite", f, model=V3)[::2])
    assert f"as benchmark_model output of {MF} tflite 224x224 on pixel7" in line and "not imported again as " \
        f"benchmark_model output of {V3} tflite 224x224 on pixel7" in line


def test_output_without_a_final_newline_keeps_its_exit_code(phone):
    from devices.android import AndroidDevice, AndroidProfile

    dev = AndroidDevice("phone", AndroidProfile(serial="standin-phone", adb=str(STANDIN)))
    assert dev.adb.shell("printf 'no newline'") == ("no newline", 0)  # was: "the connection dropped?"
    assert dev.adb.shell("printf 'a\\n'; false") == ("a\n", 1)


# --------------------------------------------------------------------------------------------- found on the way
def test_a_worker_answer_that_is_not_a_reply_is_one_error():
    """A board's worker is another machine's program: a line that is not a JSON object is a failed call."""
    from devices.subproc import Worker, WorkerError

    prog = "import sys; sys.stdin.readline(); print('[' * 100000, flush=True); sys.stdin.readline()"
    w = Worker("liar", argv=[sys.executable, "-c", prog], label="liar worker")
    try:
        with pytest.raises(WorkerError, match="not a reply") as exc:
            w.call({"op": "measure_group"}, 30)
        assert exc.value.stage == "crash"
    finally:
        w.close()
