"""bench why on synthetic rows (no sweep, no device): the difference method and its intervals, the per-unit slope,
the fixed-cost fit, the peak, the feedback path, the sentences, the CSV files and the plan of the why sweep.

Rounds carry a common drift factor (every cell of a round met the same machine), so a paired statistic cancels it
and can be asserted exactly; the real small `make why` is the `bench`-marked test at the end."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import analysis, fit, why
from bench.stats import CellSamples, round_statistic
from bench.why import plan as why_plan
from bench.why import report as why_report

ROOT = Path(__file__).resolve().parent.parent
DRIFT = [0.9, 1.0, 1.1, 1.0, 1.0, 1.2, 0.95, 1.0]  # median 1.0
RUN = {"run_id": "w1", "device": "host", "created": "2026-01-01T00:00:00", "finished": None, "cells_total": 0,
       "environment": {}, "args": {"threads": [1], "iterations": 40, "warmup": 2, "plan": "why:1"}}
M = "mobileformer_294m"


def row(model, family, res, ms, *, overrides=None, madds=None, fmt="onnx", threads=1, mode=None, session="s",
        per_round=5):
    samples, rounds = [], []
    for k, d in enumerate(DRIFT):
        samples += [ms * d] * per_round
        rounds += [k] * per_round
    key = f"{model}|{overrides}|{fmt}|{res}|{threads}|{mode}"
    return {"run_id": "w1", "cell_key": key, "model": model, "family": family, "overrides": overrides or {},
            "format": fmt, "converter": "torch-dynamo" if fmt == "onnx" else "xnnpack", "precision": "fp32",
            "device": "host", "threads": threads, "mode": mode, "height": res, "width": res, "status": "ok",
            "samples_ms": samples, "rounds": rounds, "session": f"{session}-{res}-{threads}", "median_ms": ms,
            "mean_ms": ms, "p10_ms": ms, "p90_ms": ms, "cv": 0.0, "cpu_median_ms": None, "unstable": 0,
            "madds": madds, "round_cv": 0.1, "n_rounds": len(DRIFT), "stage": None, "error": None,
            "overhead_us": None, "switch_warmup": 2, "runtime_versions": {"onnxruntime": "1.31.1"}}


def ablation_rows(res=128, scale=1.0, threads=1):
    mf = "mobileformer"
    g = (res / 128) ** 2
    return [row(M, mf, res, 20.0 * scale, madds=int(100e6 * g + 20e6), threads=threads),
            row(M, mf, res, 17.0 * scale, overrides={"dyrelu": False}, madds=int(99e6 * g + 20e6), threads=threads),
            row(M, mf, res, 11.0 * scale, overrides={"bridge": False}, madds=int(90e6 * g), threads=threads),
            row(M, mf, res, 15.0 * scale, overrides={"tokens": 1}, madds=int(100e6 * g + 5e6), threads=threads),
            row(M, mf, res, 17.0 * scale, overrides={"tokens": 3}, madds=int(100e6 * g + 11e6), threads=threads)]


def test_round_statistic_pairs_rounds_and_cancels_drift():
    a, b = CellSamples([10 * d for d in DRIFT], list(range(8)), "s"), CellSamples([6 * d for d in DRIFT],
                                                                                   list(range(8)), "s")
    share = round_statistic([a, b], lambda p, q: (p - q) / p)
    assert share.method == "rounds" and share.n_rounds == 8
    assert share.value == pytest.approx(0.4) and share.low == pytest.approx(0.4) and share.high == pytest.approx(0.4)
    diff = round_statistic([a, b], lambda p, q: p - q)
    assert diff.value == pytest.approx(4.0) and diff.low < 4.0 < diff.high  # the drift widens a difference in ms
    unpaired = round_statistic([a, CellSamples(b.samples, b.rounds, "other")], lambda p, q: p - q)
    assert unpaired.method == "unpaired" and unpaired.low <= 4.0 <= unpaired.high


def test_decomposition_by_difference():
    a = analysis.analyse(RUN, ablation_rows(128) + ablation_rows(256, scale=2.0))
    w = why.analyse_why(a)
    comp = {(c.component, c.height): c for c in w.components if c.method == "difference"}
    assert comp[("dyrelu", 128)].ms == pytest.approx(3.0)
    assert comp[("dyrelu", 128)].share_latency == pytest.approx(0.15)
    assert comp[("dyrelu", 128)].share_madds == pytest.approx(1e6 / 120e6)
    assert comp[("former_bridges", 128)].ms == pytest.approx(6.0)
    assert comp[("former_bridges", 256)].ms == pytest.approx(12.0)
    assert comp[("former_bridges", 128)].share_madds == pytest.approx((119e6 - 90e6) / 120e6)
    # tokens 1, 3 and the model's own 6: 15, 17, 20 ms -> least-squares slope
    slope = float(np.polyfit([1, 3, 6], [15, 17, 20], 1)[0])
    assert comp[("per_token", 128)].ms == pytest.approx(slope)
    assert comp[("per_token", 128)].share_latency == pytest.approx(slope / 20)
    lines = why.component_sentences(w)
    assert lines[0].startswith("On onnx, mobileformer_294m: dynamic ReLU: 3.00 ms (95% CI ")
    assert "= 15% of the latency at 128x128" in lines[0] and "3.00 ms per top-1 point at 128" in lines[0]
    assert "Former + bridges: 6.00 ms" in lines[0] and "2.31 ms per top-1 point" in lines[0]


def test_fit_recovers_a_line_with_intervals_and_ignores_an_outlier():
    g = [0.1, 0.2, 0.4, 0.8]
    cells = [CellSamples([(2 + 5 * x) * d for d in DRIFT], list(range(8))) for x in g]
    f = fit.fit_latency(g, cells)
    assert f.fixed_ms == pytest.approx(2.0) and f.ms_per_gmadd == pytest.approx(5.0)
    assert f.fixed_low_ms <= 2.0 <= f.fixed_high_ms and f.slope_low <= 5.0 <= f.slope_high
    assert f.fixed_high_ms > f.fixed_low_ms  # the drift gives the bootstrap something to resample
    b, s = fit.theil_sen([1, 2, 3, 4, 5], [3, 5, 7, 9, 100])
    assert (b, s) == pytest.approx((1.0, 2.0))
    with pytest.raises(ValueError):
        fit.fit_latency([0.1, 0.1], cells[:2])


def test_peak_is_the_best_round_of_the_probe():
    c = CellSamples([30.0] * 5 + [40.0] * 5, [0] * 5 + [1] * 5)
    assert fit.peak_gmadds_per_s([1_200_000_000], [c]) == pytest.approx(40.0)


def test_fit_peak_and_feedback_sentences():
    mf, probe = "mobileformer", ("roofline_gemm512", "roofline")
    rows = ablation_rows(128) + ablation_rows(256, scale=2.0)
    rows += [row(probe[0], probe[1], r, 30.0, madds=1_200_000_000) for r in (128, 256)]
    for res, ms in ((128, 20.0), (256, 40.0)):
        rows += [row(M, mf, res, ms * 0.9, overrides={"dyrelu_token": "input"}, madds=None)]
    a = analysis.analyse(RUN, rows)
    w = why.analyse_why(a)
    assert w.peaks["onnx"] == pytest.approx(40.0 / 0.9)  # best round: drift 0.9
    full_fit = next(f for f in w.fits if f["model"] == M)
    # 20 ms at 0.12 G and 40 ms at 0.42 G: slope 66.67 ms/G, fixed 12 ms
    assert full_fit["ms_per_gmadd"] == pytest.approx(20 / 0.3) and full_fit["fixed_ms"] == pytest.approx(12.0)
    text = why.fit_sentences(w)
    assert text[0].startswith("On onnx, mobileformer_294m: fixed cost 12.00 ms (95% CI ")
    assert "the fixed part is 60% of the latency at 128x128 and 30% at 256x256" in text[0]
    assert "6.0 GMAdd/s = 14% of the measured peak (44.4 GMAdd/s)" in text[0]
    header, table = why.headline(w)
    assert header == ["", "onnx 128", "onnx 256"]
    assert table[0][0].startswith("Former + bridges") and table[0][1] == "6.00 ms (5.40 to 7.20) = 30%, MAdds 24%"
    assert table[2][1:] == ["12.00 ms (10.40 to 14.80) = 60%", "12.00 ms (10.40 to 14.80) = 30%"]
    assert table[3][1:] == ["14% of 44.4 GMAdd/s", "24% of 44.4 GMAdd/s"]
    assert not any(r[0].startswith("breaking the feedback path, 2 threads") for r in table)  # none at 2 threads
    fb = why.feedback_sentences(w)
    assert fb[0].startswith("On onnx (1 thread(s), default execution mode), breaking the feedback path of "
                            "mobileformer_294m changes its latency by +2.00 ms (+10.0%, 95% CI +10.0% to +10.0%)")


def test_execution_mode_sentence_gives_the_paired_difference_and_a_verdict():
    mf = "mobileformer"
    rows = [row(M, mf, 128, 20.0, madds=100), row(M, mf, 128, 22.0, madds=100, mode="parallel"),
            row(M, mf, 128, 18.0, overrides={"dyrelu_token": "input"}, madds=100),
            row(M, mf, 128, 18.0, overrides={"dyrelu_token": "input"}, madds=100, mode="parallel")]
    w = why.analyse_why(analysis.analyse(RUN, rows))
    text = [t for t in why.feedback_sentences(w) if "execution mode is" in t]
    assert len(text) == 2
    assert "the parallel execution mode is slower than the default mode: -2.00 ms, -10.0%" in text[0]
    assert "no different, within the noise," in text[1] and "+0.00 ms" in text[1]
    assert not [v for v in w.variants if v["runtime"].startswith("onnx parallel")]  # a lone full cell is no ablation


def test_csv_files_have_the_issue_columns(tmp_path):
    a = analysis.analyse(RUN, ablation_rows(128) + ablation_rows(256, scale=2.0))
    md = why_report.write(a, {}, tmp_path)
    assert md.startswith("## Why Mobile-Former slows down on small images")
    with open(tmp_path / "why.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(why_report.WHY_COLUMNS)
    assert {r["component"] for r in rows} == {"dyrelu", "former_bridges", "per_token"}
    assert {r["method"] for r in rows} == {"difference"}
    with open(tmp_path / "fit.csv") as f:
        assert next(csv.reader(f)) == list(why_report.FIT_COLUMNS)
    assert (tmp_path / "why_components.png").exists()
    assert why_report.write(analysis.analyse(RUN, []), {}, tmp_path) == ""


def test_profile_rows_and_their_checks():
    rows = ablation_rows(128)
    profiles = {rows[1]["cell_key"]: {"tool": "onnxruntime profiler", "total_ms": 16.5, "plain_ms": 14.5,
                                      "components_ms": {"Former": 3.0, "bridge Mobile->Former": 2.0,
                                                        "bridge Mobile<-Former": 1.5, "conv": 10.0}}}
    w = why.analyse_why(analysis.analyse(RUN, rows), profiles)
    prof = [c for c in w.components if c.method == "profile"]
    assert {c.component for c in prof} == {"Former", "bridge Mobile->Former", "bridge Mobile<-Former", "conv"}
    assert w.closure[0]["ok"]  # 16.5 ms profiled vs 17.0 ms timed: within 10 %
    (ag,) = w.agreement
    assert ag["component"] == "former_bridges" and ag["profile_ms"] == pytest.approx(6.5)
    assert ag["difference_ms"] == pytest.approx(6.0)
    text = why.agreement_sentences(w)
    assert text[0].startswith("Difference vs profile on the host: ")
    assert "within 10% in 1 of 1 profiled cells" in text[1]
    # 16.5 profiled vs 14.5 unprofiled at the same moment: +14 %, outside; the unprofiled runs drifted 15 % from 17.0
    assert "add up within 10% in 0 of 1 cells" in text[2] and "differ from the timed medians by 15%" in text[2]


def test_a_difference_by_two_profiles_says_where_it_lands():
    rows = ablation_rows(128)  # full 20 ms, dyrelu=false 17 ms
    g = lambda fused, reorders: {"convs": 10, "convs_fused_activation": fused, "layout_reorders": reorders}  # noqa
    profiles = {rows[0]["cell_key"]: {"tool": "onnxruntime profiler", "total_ms": 20.5, "graph": g(0, 12),
                                      "components_ms": {"conv": 12.0, "DyReLU hyper-MLPs": 0.5, "Former": 8.0}},
                rows[1]["cell_key"]: {"tool": "onnxruntime profiler", "total_ms": 17.5, "graph": g(8, 4),
                                      "components_ms": {"conv": 9.5, "Former": 8.0}}}
    w = why.analyse_why(analysis.analyse(RUN, rows), profiles)
    ag = next(x for x in w.agreement if x["component"] == "dyrelu")
    assert ag["method"] == "profile difference" and ag["profile_ms"] == pytest.approx(3.0) and ag["inside"]
    assert list(ag["shift"])[:2] == ["conv", "DyReLU hyper-MLPs"]
    (text,) = [t for t in why.landing_sentences(w) if "dynamic ReLU" in t]
    assert "landing on conv +2.50 ms, DyReLU hyper-MLPs +0.50 ms" in text
    assert ("fuses the activation into 8 of 10 convolutions of mobileformer_294m:dyrelu=false but 0 of 10 of "
            "mobileformer_294m, and mobileformer_294m has 12 layout reorders against 4") in text


def test_profile_attribution_subtracts_the_profilers_floor_from_every_node():
    from bench.profile import attribute

    runs = [{"cat": "Session", "name": "model_run", "ts": t, "dur": 100} for t in (0, 1000, 2000)]
    node = lambda name, ts, dur: {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur}  # noqa: E731
    trace = runs + [node("conv", 5, 50), node("tiny", 60, 5),  # the warm-up run: left out
                    node("conv", 1005, 40), node("tiny", 1060, 3), node("conv", 2005, 44), node("tiny", 2060, 6)]
    out = attribute(trace, {"conv": "conv", "tiny": "Former"}, warmup=1, iterations=2, floor_us=4.0)
    assert out["raw_components_ms"] == pytest.approx({"conv": 0.042, "Former": 0.0045})
    assert out["components_ms"] == pytest.approx({"conv": 0.038, "Former": 0.001})  # 3-4 never goes below zero
    assert out["kernels_per_run"] == 2 and out["profiler_floor_us"] == 4.0


def test_the_profilers_floor_is_measured_with_real_onnxruntime():
    from bench import profile

    profile._FLOORS.clear()
    floor = profile.profiler_floor_us(1, runs=10, warmup=2)
    assert 0.0 <= floor < 1000.0 and profile._FLOORS[1] == floor  # measured once per thread count


def test_the_why_plan():
    assert why_plan.ablation_models(M) == [{}, {"dyrelu": False}, {"bridge": False}, {"tokens": 1},
                                           {"tokens": 3}, {"dyrelu_token": "input"}]
    assert why_plan.ablation_models("mobilenetv3_large_100") == [{}]
    from bench import sweep
    from bench.why import run as why_run

    labels = why_run.expand_models(f"{M},mobilenetv3_large_100").split(",")
    PROBES = ("roofline_gemm512", "nodechain_250", "nodechain_500")  # the peak and the per-node cost probes
    assert labels[0] == M and set(PROBES) <= set(labels) and f"{M}:dyrelu_token=input" in labels
    args = sweep.parse_args(device="host", models_arg=",".join(labels), formats="onnx,tflite", res="128",
                            threads="1,2")
    import dataclasses

    args = dataclasses.replace(args, modes=("", "parallel"), plan=why_plan.why_plan((1,)))
    cells = args.cells()
    t2 = {(c.model_label, c.format, c.mode) for c in cells if c.threads == 2}
    assert t2 == {(lbl, f, m) for lbl in (M, f"{M}:dyrelu_token=input") for f, m in
                  (("onnx", ""), ("onnx", "parallel"), ("tflite", ""))} | {(p, f, "") for f in ("onnx", "tflite")
                                                                           for p in PROBES}
    assert not any(c.mode and c.format != "onnx" for c in cells)
    assert len([c for c in cells if c.threads == 1 and not c.mode]) == len(labels) * 2
    plain = dataclasses.replace(args, modes=("",), plan="")
    assert "modes" not in plain.canonical() and "plan" not in plain.canonical()
    assert '"mode"' not in plain.cells()[0].key  # keys of default-mode cells are those of earlier runs


def test_why_cli_errors_are_one_line():
    out = subprocess.run([sys.executable, "-m", "bench", "why", "--models", "nosuchmodel", "--store",
                          "/nonexistent/x.sqlite"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "nosuchmodel" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.bench
def test_a_small_real_make_why(tmp_path):
    """One small real `bench why` on the smallest variant (ONNX only, two small resolutions, few rounds)."""
    cmd = [sys.executable, "-m", "bench", "why", "--models", "mobileformer_26m", "--formats", "onnx", "--res",
           "64,96", "--iters", "20", "--rounds", "4", "--warmup", "2", "--store", str(tmp_path / "r.sqlite"),
           "--reports", str(tmp_path / "reports"), "--artifacts", str(tmp_path / "artifacts")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = next((tmp_path / "reports").glob("host-*"))
    md = (report / "report.md").read_text()
    assert "## Why Mobile-Former slows down on small images" in md and "### The DyReLU feedback path" in md
    with open(report / "why.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"dyrelu", "former_bridges", "per_token"} <= {r["component"] for r in rows}
    assert any(r["method"] == "profile" for r in rows)
    with open(report / "fit.csv") as f:
        fits = list(csv.DictReader(f))
    assert fits and all(float(r["peak_gmadds_per_s"]) > 0 for r in fits)


@pytest.mark.export
def test_the_executorch_profile_adds_up_to_method_execute_and_says_what_it_cannot_resolve(export_root):
    """ETDump of a real .pte (the one tests/test_native.py times): operator kinds plus the delegate's uncovered
    time add up to Method::execute, and the note says why no module mapping is possible."""
    import export
    from bench.why import worker as why_worker

    art = export.export("mobileformer_26m", "executorch", (96, 128), out=export_root)
    p = why_worker.profile_executorch(str(art.dir), 1)
    assert p["tool"] == "ExecuTorch ETDump" and p["total_ms"] > 0
    assert sum(p["components_ms"].values()) == pytest.approx(p["total_ms"], rel=1e-6, abs=0.006)
    assert any(k.startswith("XNNPACK convolution") for k in p["components_ms"])
    assert "empty debug-handle map" in p["note"] and why_worker.DELEGATE_REST in p["note"]


def test_a_why_runs_answer_compares_the_subject_as_built_and_a_component_without_fixed_part():
    base = [row("mobilenetv3_large_100", "mobilenetv3", r, 5.0 * r / 128, madds=int(50e6 * (r / 128) ** 2))
            for r in (128, 256)]
    rows = ablation_rows(128) + ablation_rows(256, scale=2.0) + base
    a = analysis.analyse(RUN, rows)
    items = analysis.answer(a)
    compared = [t for t in items if " vs mobilenetv3_large_100" in t]
    assert len(compared) == 1 and "mobileformer_294m vs" in compared[0]
    assert any(t.startswith(f"The {len(a.pairs) - 1} comparisons of the ablation variants") for t in items)
    plain = analysis.analyse({**RUN, "args": {**RUN["args"], "plan": ""}}, rows)
    assert len([t for t in analysis.answer(plain) if " vs mobilenetv3_large_100" in t]) == len(plain.pairs)
    w = why.analyse_why(a)
    w.peaks["onnx"] = 40.0
    w.components = [why.Component(M, "onnx", r, r, "former_bridges", "difference", ms, ms, ms, 0.3, 0.2, madds=m)
                    for r, ms, m in ((128, 3.0, 25e6), (256, 18.0, 75e6))]  # 3x the MAdds, 6x the time
    (text,) = why.component_fit_sentences(w)
    assert "3.0x the MAdds cost 6.0x the time, so none of it is a fixed cost" in text


def test_the_time_outside_the_operators_is_set_beside_the_fixed_cost():
    rows = ablation_rows(128) + ablation_rows(256, scale=2.0)
    w = why.analyse_why(analysis.analyse(RUN, rows))
    name = why.OUTSIDE_OPERATORS + " (set-up, copies)"
    w.components += [why.Component(M, "onnx", r, r, name, "profile", ms, None, None, None, None)
                     for r, ms in ((128, 2.5), (256, 2.75))]
    (text,) = why.overhead_sentences(w)
    assert text.startswith("On onnx, mobileformer_294m: the profile's time outside the operators")
    assert "is 2.50 ms at 128x128 and 2.75 ms at 256x256, beside a fitted fixed cost of 12.00 ms" in text
