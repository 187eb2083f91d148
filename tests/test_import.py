"""`python -m bench import` and the report across devices, on the sample outputs of tests/data/parsers/ and on
outputs written here in the programs' formats: no export, no device."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.store import Store
from models.errors import cli_main

DATA = Path(__file__).resolve().parent / "data" / "parsers"
MF, V3 = "mobileformer_294m", "mobilenetv3_large_100"


def bench(tmp: Path, *args: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main(main, "bench", [*args[:1], "--store", str(tmp / "s.sqlite"), *args[1:]]
                  if args[0] in ("import", "list") else [*args, "--store", str(tmp / "s.sqlite"),
                                                          "--reports", str(tmp / "reports")])
    out, err = capsys.readouterr()
    return rc, out, err


def imp(tmp, capsys, tool, model, fmt, res, *files, device="pixel7", extra=()):
    return bench(tmp, "import", "--tool", tool, "--model", model, "--format", fmt, "--res", str(res), "--device",
                 device, *extra, *map(str, files), capsys=capsys)


def executor_runner_text(samples: list[float]) -> str:
    """executor_runner's stderr (posix build) for len(samples) + 1 executions, the first one cold."""
    runs = [samples[0] * 1.3, *samples]
    body = [f"I 00:00:01.{i:06d} executorch:executor_runner.cpp:791] Iteration {i} of {len(runs)}: {v:f} ms"
            for i, v in enumerate(runs, 1)]
    return "\n".join(["I 00:00:00.052890 executorch:executor_runner.cpp:371] Model loaded in 52.421833 ms.", *body,
                      f"I 00:00:01.999999 executorch:executor_runner.cpp:799] Model executed successfully "
                      f"{len(runs)} time(s) in {sum(runs):f} ms."]) + "\n"


def benchmark_model_text(median_us: int, avg_us: float) -> str:
    return (f"INFO: Num threads: [1]\nINFO: count=1 curr={median_us}\n"
            f"INFO: count=50 first={median_us} curr={median_us} min={median_us - 50} max={median_us * 11 // 10} "
            f"avg={avg_us:g} std=120 p5={median_us - 40} median={median_us} p95={median_us + 300}\n"
            f"INFO: Inference timings in us: Init: 4100, First inference: {median_us * 2}, Warmup (avg): "
            f"{median_us * 2}, Inference (avg): {avg_us:g}\n")


@pytest.mark.parametrize("tool,name,fmt,raw", [
    ("benchmark_model", "benchmark_model_info_percentiles.txt", "tflite", False),
    ("benchmark_model", "benchmark_model_litert.txt", "tflite", False),
    ("executor_runner", "executor_runner_posix.txt", "executorch", True),
    ("executor_runner", "executor_runner_total_only.txt", "executorch", False),
    ("native", "native.json", "executorch", True),
    ("onnxruntime_perf_test", "onnxruntime_perf_test_old.txt", "onnx", False),
    ("xctest", "xctest_values.txt", "coreml", True),
    ("xctest", "xcresult_metrics.json", "coreml", True),
])
def test_each_tool_imports_into_a_fresh_store_and_its_report_renders(tmp_path, capsys, tool, name, fmt, raw):
    rc, out, err = imp(tmp_path, capsys, tool, MF, fmt, 224, DATA / name)
    assert rc == 0, err
    assert f"{name}: {tool} (" in out and ("raw samples" if raw else "aggregates only") in out
    store = Store.open(tmp_path / "s.sqlite", readonly=True)
    run = store.run("pixel7-import")
    env = run["environment"]
    assert run["device"] == "pixel7" and env["kind"] == "imported"
    assert [(f["file"], f["tool"]) for f in env["imports"]] == [(name, tool)]
    (cell,) = store.cells("pixel7-import")
    assert cell["raw_samples"] is raw and (cell["samples_ms"] is not None) == raw
    assert cell["source"]["tool"] == tool and cell["median_ms"] or cell["mean_ms"]
    rc, out, err = bench(tmp_path, "report", "--run", "pixel7-import", capsys=capsys)
    assert rc == 0, err
    md = (tmp_path / "reports" / "pixel7-import" / "report.md").read_text()
    assert "## Imported files" in md and name in md
    assert ("†" in md) is not raw


def test_ratios_from_an_import_of_two_models_at_two_resolutions(tmp_path, capsys):
    subject = {160: [30.0, 30.3, 29.8, 30.1, 30.0], 224: [50.0, 50.4, 49.9, 50.2, 50.0]}
    baseline = {160: [20.0, 20.1, 19.9, 20.2, 20.0], 224: [40.0, 40.3, 39.8, 40.1, 40.0]}
    for model, series in ((MF, subject), (V3, baseline)):
        for res, samples in series.items():
            f = tmp_path / f"et_{model}_{res}.txt"
            f.write_text(executor_runner_text(samples))
            rc, out, err = imp(tmp_path, capsys, "executor_runner", model, "executorch", res, f, extra=("--iters", "6"))
            assert rc == 0, err
    rc, out, err = bench(tmp_path, "report", "--run", "pixel7-import", capsys=capsys)
    assert rc == 0, err
    assert f"On executorch, {MF} vs {V3}: Mobile-Former is slower at every size tested (160-224 px), from 1.50x at " \
           "160" in out
    ratios = (tmp_path / "reports" / "pixel7-import" / "ratios.csv").read_text().splitlines()
    assert ratios[1].startswith(f"executorch,{MF},{V3},160,160.0,1.5000,") and ",iterations,1," in ratios[1]
    assert ratios[2].startswith(f"executorch,{MF},{V3},224,224.0,1.2500,")
    # the same pair from aggregates only (benchmark_model): medians compared, no interval, marked
    for model, med in ((MF, {160: 30000, 224: 50000}), (V3, {160: 20000, 224: 40000})):
        for res, us in med.items():
            f = tmp_path / f"bm_{model}_{res}.txt"
            f.write_text(benchmark_model_text(us, us * 1.02))
            rc, out, err = imp(tmp_path, capsys, "benchmark_model", model, "tflite", res, f,
                               extra=("--run", "pixel7-tflite"))
            assert rc == 0, err
    rc, out, err = bench(tmp_path, "report", "--run", "pixel7-tflite", capsys=capsys)
    assert rc == 0, err
    assert "from 1.50x at 160 (aggregates only, no interval) to 1.25x at 224 (aggregates only, no interval)" in out
    d = tmp_path / "reports" / "pixel7-tflite"
    assert "tflite/unknown,mobileformer_294m,mobilenetv3_large_100,160,160.0,1.5000,,,aggregates: median,0,0,0" in \
        (d / "ratios.csv").read_text()
    md = (d / "report.md").read_text()
    assert "| resolution | 160† | 224† |" in md and "| 95% CI | none | none |" in md and "`†` = aggregates only" in md
    assert ",0," in (d / "results.csv").read_text().splitlines()[1]  # raw_samples = 0 in the cells' CSV


def test_a_bad_file_is_one_line_and_imports_nothing(tmp_path, capsys):
    for name in ("benchmark_model_count0.txt", "benchmark_model_truncated.txt", "benchmark_model_unparsable.txt",
                 "onnxruntime_perf_test_new.txt"):
        rc, out, err = imp(tmp_path, capsys, "benchmark_model", MF, "tflite", 224, DATA / name)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bench: error: {DATA / name}: ") and \
            lines[0].endswith("; nothing imported"), err
    assert Store.open(tmp_path / "s.sqlite", readonly=True).runs() == []
    # a good file beside a bad one is imported, the bad one is said
    rc, out, err = imp(tmp_path, capsys, "benchmark_model", MF, "tflite", 224, DATA / "benchmark_model_count0.txt",
                       DATA / "benchmark_model_logcat.txt")
    assert rc == 2 and "count=0" in err and "1 cell(s) added" in out
    assert len(Store.open(tmp_path / "s.sqlite", readonly=True).cells("pixel7-import")) == 1


def test_importing_the_same_file_twice_adds_nothing(tmp_path, capsys):
    f = DATA / "onnxruntime_perf_test_new.txt"
    assert imp(tmp_path, capsys, "onnxruntime_perf_test", V3, "onnx", 224, f)[0] == 0
    copy = tmp_path / "renamed.txt"
    copy.write_bytes(f.read_bytes())
    for again in (f, copy):  # known by its content, not its name, and whatever run is named
        rc, out, err = imp(tmp_path, capsys, "onnxruntime_perf_test", V3, "onnx", 224, again, extra=("--run", "b"))
        assert rc == 0 and "already imported into run pixel7-import" in out and "0 cell(s) added" in out
    store = Store.open(tmp_path / "s.sqlite", readonly=True)
    assert [r["run_id"] for r in store.runs()] == ["pixel7-import"] and len(store.cells("pixel7-import")) == 1
    # another file for the same cell of the same run is refused (one line), not merged (the old build does not print
    # its threads; the new one said 1)
    rc, out, err = imp(tmp_path, capsys, "onnxruntime_perf_test", V3, "onnx", 224,
                       DATA / "onnxruntime_perf_test_old.txt", extra=("--threads", "1"))
    assert rc == 2 and "has this cell already" in err


@pytest.mark.parametrize("args,needle", [
    (("benchmark_model", "nosuchmodel", "tflite", "224"), "unknown model 'nosuchmodel'"),
    (("benchmark_model", MF, "onnx", "224"), "benchmark_model runs tflite artifacts only, not onnx"),
    (("xctest", MF, "coreml", "22x"), "bad resolution '22x'"),
    (("xctest", MF, "nosuchformat", "224"), "nosuchformat"),
])
def test_bad_names_are_one_line(tmp_path, capsys, args, needle):
    rc, out, err = imp(tmp_path, capsys, *args, DATA / "xctest_values.txt")
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    rc, out, err = imp(tmp_path, capsys, "xctest", MF, "coreml", 224, DATA / "xctest_values.txt", device="../x")
    assert rc == 2 and "bad device name '../x'" in err


def test_an_older_store_gets_the_new_columns_and_table(tmp_path):
    Store.open(tmp_path / "s.sqlite").close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    conn.executescript("ALTER TABLE cells DROP COLUMN raw_samples; ALTER TABLE cells DROP COLUMN source; "
                       "DROP TABLE imports;")
    conn.close()
    store = Store.open(tmp_path / "s.sqlite")
    cols = {r[1] for r in store.conn.execute("PRAGMA table_info(cells)")}
    assert {"raw_samples", "source"} <= cols and store.imported("0" * 64) is None


def _host_run(store: Store) -> None:
    """A synthetic measured run on this machine (cells written directly, as a sweep stores them)."""
    store.add_run({"run_id": "host-1", "created": "2026-01-01T00:00:00", "args_hash": "x", "seed": 1,
                   "device": "host", "environment": {"kind": "host"}, "cells_total": 4,
                   "args": {"threads": [1], "iterations": 20, "warmup": 2}})
    for i, (model, fam, res, ms) in enumerate([(MF, "mobileformer", 160, 3.0), (MF, "mobileformer", 224, 4.0),
                                                (V3, "mobilenetv3", 160, 2.0), (V3, "mobilenetv3", 224, 5.0)]):
        store.add_cell({"run_id": "host-1", "cell_key": f"k{i}", "model": model, "family": fam, "overrides": "{}",
                        "format": "onnx", "converter": "torch-dynamo", "precision": "fp32", "device": "host",
                        "threads": 1, "height": res, "width": res, "status": "ok", "finished": f"2026-01-01T00:0{i}",
                        "samples_ms": json.dumps([ms] * 20), "median_ms": ms, "mean_ms": ms, "p10_ms": ms,
                        "p90_ms": ms, "cv": 0.0, "unstable": 0})


def test_a_report_across_devices_puts_them_side_by_side(tmp_path, capsys):
    store = Store.open(tmp_path / "s.sqlite")
    _host_run(store)
    store.close()
    for model, ms in ((MF, {160: 30000, 224: 50000}), (V3, {160: 20000, 224: 40000})):
        for res, us in ms.items():
            f = tmp_path / f"bm_{model}_{res}.txt"
            f.write_text(benchmark_model_text(us, us * 1.02))
            assert imp(tmp_path, capsys, "benchmark_model", model, "tflite", res, f)[0] == 0
    rc, out, err = bench(tmp_path, "report", "--run", "host-1", "--run", "pixel7-import", capsys=capsys)
    assert rc == 0, err
    folder = next((tmp_path / "reports").glob("devices-*"))
    assert f"report: {folder / 'report.md'}" in out
    assert {p.name for p in folder.iterdir()} == {"report.md", "ratio.png", "ratios.csv"}
    assert (folder / "ratio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (folder / "report.md").read_text()
    assert "| host / onnx | 1.50 (1.50-1.50) | 0.80 (0.80-0.80) |" in md
    assert "| pixel7 / tflite/unknown | 1.50† | 1.25† |" in md
    assert "| host | onnx | mobileformer_294m / mobilenetv3_large_100 | Crossover at 206 px (95% CI 206-206) |" in md
    assert "| pixel7 | tflite/unknown | mobileformer_294m / mobilenetv3_large_100 | No crossover in range |" in md
    assert "- **host**: On **onnx**" in md and "- **pixel7**: On **tflite/unknown**" in md
    assert "imported (benchmark_model)" in md and "measured (host)" in md
    csv = (folder / "ratios.csv").read_text().splitlines()
    assert csv[0].startswith("device,run_id,runtime,") and csv[1].startswith("host,host-1,onnx,")
    assert any(r.startswith("pixel7,pixel7-import,tflite/unknown,") for r in csv)
    # one run given: the single-run report, unchanged
    rc, out, err = bench(tmp_path, "report", "--run", "host-1", capsys=capsys)
    assert rc == 0 and f"report: {tmp_path / 'reports' / 'host-1' / 'report.md'}" in out
    rc, out, err = bench(tmp_path, "report", "--run", "host-1", "--run", "nope", capsys=capsys)
    assert rc == 2 and "no run 'nope'" in err


def test_import_help_answers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["import", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--tool {benchmark_model,executor_runner,native,onnxruntime_perf_test,xctest}" in out
    assert "examples:" in out and "xcresulttool get test-results metrics" in out


def test_a_report_of_means_only_at_two_resolutions_renders(tmp_path, capsys):
    """Cells with a mean and no median (old benchmark_model builds) at two resolutions of one model: the throughput
    plot and the fixed-cost fit (which needs raw samples) must leave them out rather than fail."""
    text = (DATA / "benchmark_model_old_noprefix.txt").read_text()
    for res in ("160", "224"):
        f = tmp_path / f"bm_{res}.txt"
        f.write_text(text + f"\n# saved at {res}\n")  # another file (another sha256), the same old format
        rc, _, err = imp(tmp_path, capsys, "benchmark_model", "mobileformer_294m", "tflite", res, f)
        assert rc == 0, err
    rc, out, err = bench(tmp_path, "report", "--run", "pixel7-import", capsys=capsys)
    assert rc == 0 and "Traceback" not in err and "report:" in out, err
