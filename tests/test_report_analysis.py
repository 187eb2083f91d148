"""The report's analysis on synthetic rows (no sweep, no device): the answer's sentences, the crossover interpolation,
failed cells, and families taken from the registry (a third baseline gets its own pairs, named by its display name).

Samples are 20 equal values per cell, so every bootstrap replicate equals the point estimate and the sentences can be
asserted to the character.
"""

from __future__ import annotations

import json

import pytest

from bench import analysis, writers
from bench.why import report as why_report

SUBJECT = ("mobileformer_26m", "mobileformer")
V3 = ("mobilenetv3_small_075", "mobilenetv3")
V4 = ("mobilenetv4_conv_small", "mobilenetv4")
VIT = ("mobilevit_xs", "mobilevit")
RUN = {"run_id": "r1", "device": "host", "created": "2026-01-01T00:00:00", "finished": "2026-01-01T01:00:00",
       "cells_total": 0, "environment": {}, "args": {"threads": [1], "iterations": 20, "warmup": 2}}


def row(model: tuple[str, str], res: int | tuple[int, int], ms: float | None, *, status: str = "ok",
        cpu: float | None = None, unstable: bool = False, fmt: str = "onnx", converter: str = "torch-dynamo"):
    h, w = (res, res) if isinstance(res, int) else res
    r = {"model": model[0], "family": model[1], "overrides": {}, "format": fmt, "converter": converter,
         "precision": "fp32", "device": "host", "threads": 1, "height": h, "width": w, "status": status,
         "samples_ms": None, "median_ms": None, "mean_ms": None, "p10_ms": None, "p90_ms": None, "cv": None,
         "cpu_median_ms": None, "unstable": None, "stage": None, "error": None, "madds": None, "overhead_us": None}
    if status == "ok":
        r.update(samples_ms=[ms] * 20, median_ms=ms, mean_ms=ms, p10_ms=ms, p90_ms=ms, cv=0.0, cpu_median_ms=cpu,
                 unstable=unstable)
    else:
        r.update(stage="load", error="broken artifact")
    return r


def pair_rows(resolutions, subject_ms, baseline_ms, baseline=V3):
    return ([row(SUBJECT, r, ms) for r, ms in zip(resolutions, subject_ms)]
            + [row(baseline, r, ms) for r, ms in zip(resolutions, baseline_ms)])


def only_pair(rows):
    a = analysis.analyse(RUN, rows)
    assert len(a.pairs) == 1
    return a, a.pairs[0]


def test_slower_everywhere():
    a, p = only_pair(pair_rows([128, 160, 224], [3.0, 4.8, 6.0], [2.0, 3.0, 5.0]))
    assert (p.runtime, p.numer, p.denom, p.family, p.subject, p.baseline) == (
        "onnx", "mobileformer_26m", "mobilenetv3_small_075", "mobilenetv3", "Mobile-Former", "MobileNetV3")
    assert p.labels == ["128", "160", "224"] and p.curve.xs == [128.0, 160.0, 224.0]
    assert p.curve.ratios == pytest.approx([1.5, 1.6, 1.2]) and p.curve.crossings == []
    assert analysis.answer(a) == [
        "On **onnx**, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at every size tested "
        "(128-224 px), from 1.50x at 128 (95% CI 1.50-1.50) to 1.20x at 224 (95% CI 1.20-1.20); at most 1.60x "
        "(60% slower) at 160. No crossover in range."]


def test_faster_everywhere():
    a, p = only_pair(pair_rows([128, 160, 224], [1.0, 1.5, 2.0], [2.0, 2.5, 5.0]))
    assert p.curve.ratios == pytest.approx([0.5, 0.6, 0.4])
    assert analysis.answer(a) == [
        "On **onnx**, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is faster at every size tested "
        "(128-224 px), from 0.50x at 128 (95% CI 0.50-0.50) to 0.40x at 224 (95% CI 0.40-0.40); at best 0.40x at "
        "224. No crossover in range."]


def test_one_crossing_is_interpolated_in_equivalent_resolution():
    rows = pair_rows([128, 160, (192, 256)], [3.0, 2.2, 1.4], [2.0, 2.0, 2.0])
    for r, cpu in zip(rows, [2.7, 2.0, 1.2, 2.0, 2.0, 2.0]):  # CPU-time ratios 1.35, 1.0, 0.6
        r["cpu_median_ms"] = cpu
    a, p = only_pair(rows)
    assert p.curve.xs == [128.0, 160.0, 221.7]  # sqrt(192 * 256) = 221.70
    assert p.labels == ["128", "160", "192x256"]
    # ratio 1.1 at 160 and 0.7 at 221.7: 1 is crossed a quarter of the way, 160 + 61.7 / 4
    assert p.curve.crossings == [pytest.approx(175.425)]
    assert p.curve.crossing_low == pytest.approx(175.425) and p.curve.crossing_high == pytest.approx(175.425)
    assert p.curve.crossing_share == 1.0
    assert p.cpu_ratios == pytest.approx([1.35, 1.0, 0.6])
    assert analysis.answer(a) == [
        "On **onnx**, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at 128, 160 px (up to 1.50x "
        "at 128 (95% CI 1.50-1.50)) and faster at 192x256 px (down to 0.70x at 192x256 (95% CI 0.70-0.70)). "
        "Crossover at 175 px (95% CI 175-175). [CPU time: 1.35x at 128 to 0.60x at 192x256, crossover at 160 px.]"]


def test_two_crossings():
    a, p = only_pair(pair_rows([128, 192, 256], [8.0, 12.0, 9.0], [10.0, 10.0, 10.0]))
    assert p.curve.crossings == [pytest.approx(160.0), pytest.approx(192 + 64 * 2 / 3)]
    assert analysis.crossover_text(p) == "Crossover at 160 px (95% CI 160-160) and again at 235 px"
    assert analysis.answer(a) == [
        "On **onnx**, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at 192 px (up to 1.20x at "
        "192 (95% CI 1.20-1.20)) and faster at 128, 256 px (down to 0.80x at 128 (95% CI 0.80-0.80)). Crossover at "
        "160 px (95% CI 160-160) and again at 235 px."]


def test_a_failed_cell_in_the_middle_drops_that_point_only():
    rows = pair_rows([128, 192], [3.0, 1.5], [2.0, 2.0])
    rows.insert(1, row(SUBJECT, 160, None, status="failed"))
    rows.append(row(V3, 160, 2.0))
    a, p = only_pair(rows)
    assert p.labels == ["128", "192"] and p.curve.ratios == pytest.approx([1.5, 0.75])
    assert p.curve.crossings == [pytest.approx(128 + 64 * 0.5 / 0.75)]  # interpolated across the missing point
    assert analysis.answer(a) == [
        "On **onnx**, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at 128 px (up to 1.50x at "
        "128 (95% CI 1.50-1.50)) and faster at 192 px (down to 0.75x at 192 (95% CI 0.75-0.75)). Crossover at 171 px "
        "(95% CI 171-171)."]
    md = writers.markdown(a)
    assert "| resolution | 128 | 192 |\n|---|---|---|\n| ratio | 1.50 | 0.75 |\n" in md
    assert "| mobileformer_26m | onnx | 160 | load | broken artifact |" in md
    assert "Cells: 6 stored of 0 (5 measured, 1 failed, 0 not run, 0 unstable)." in md


def test_a_third_baseline_gets_its_own_pairs_named_by_its_display_name(tmp_path):
    res = [128, 224]
    rows = (pair_rows(res, [3.0, 6.0], [2.0, 4.0]) + [row(V4, r, ms) for r, ms in zip(res, [1.5, 8.0])]
            + [row(VIT, r, ms) for r, ms in zip(res, [6.0, 12.0])]
            + [row(("not_a_registered_model", "nosuchfamily"), r, 1.0) for r in res])
    a = analysis.analyse(RUN, rows)
    assert [(p.denom, p.family, p.baseline) for p in a.pairs] == [
        ("mobilenetv3_small_075", "mobilenetv3", "MobileNetV3"),
        ("mobilenetv4_conv_small", "mobilenetv4", "MobileNetV4"),
        ("mobilevit_xs", "mobilevit", "MobileViT")]
    v4 = a.pairs[1]
    assert v4.curve.ratios == pytest.approx([2.0, 0.75]) and v4.curve.crossings == [pytest.approx(128 + 96 * 0.8)]
    assert analysis.answer(a)[1] == (
        "On **onnx**, mobileformer_26m vs mobilenetv4_conv_small: Mobile-Former is slower at 128 px (up to 2.00x at "
        "128 (95% CI 2.00-2.00)) and faster at 224 px (down to 0.75x at 224 (95% CI 0.75-0.75)). Crossover at 205 px "
        "(95% CI 205-205).")
    assert a.roles.baselines() == "MobileNetV3, MobileNetV4 or MobileViT"
    assert analysis.no_pair_text(analysis.analyse(RUN, [])) == (
        "No Mobile-Former / MobileNetV3, MobileNetV4 or MobileViT pair was measured on a common runtime, so there is "
        "no ratio to report.")
    writers.write_ratios_csv(a, tmp_path / "ratios.csv")
    lines = (tmp_path / "ratios.csv").read_text().splitlines()
    assert lines[0] == ("runtime,subject,baseline,resolution,res_equiv,ratio,ci95_low,ci95_high,method,rounds,wide,"
                        "unstable,crossover")
    assert lines[3:5] == [
        "onnx,mobileformer_26m,mobilenetv4_conv_small,128,128.0,2.0000,2.0000,2.0000,iterations,1,0,0,204.8",
        "onnx,mobileformer_26m,mobilenetv4_conv_small,224,224.0,0.7500,0.7500,0.7500,iterations,1,0,0,204.8"]


def test_names_come_from_the_roles_not_from_bench():
    roles = analysis.Roles({"mobileformer": "baseline", "mobilevit": "subject"},
                           {"mobileformer": "MF", "mobilevit": "ViT-ish"})
    a = analysis.analyse(RUN, [row(SUBJECT, 128, 2.0), row(VIT, 128, 1.0)], roles)
    assert [(p.numer, p.denom) for p in a.pairs] == [("mobilevit_xs", "mobileformer_26m")]
    assert analysis.answer(a) == ["On **onnx**, mobilevit_xs vs mobileformer_26m: ViT-ish is faster at the one size "
                                  "measured: 0.50x at 128 (95% CI 0.50-0.50)."]
    assert a.titles["ratio"] == "Slowdown of ViT-ish vs resolution (median of per-round ratios, 95% interval)"
    assert "## Slowdown ratio (ViT-ish median / baseline median)" in writers.markdown(a)


def test_console_lines_are_the_answer_without_markup():
    rows = pair_rows([128, 224], [3.0, 6.0], [2.0, 4.0])
    rows[1]["unstable"] = True
    a = analysis.analyse(RUN, rows)
    assert analysis.console_lines(a) == [
        "- On onnx, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at every size tested "
        "(128-224 px), from 1.50x at 128 (95% CI 1.50-1.50) to 1.50x at 224 (95% CI 1.50-1.50); at most 1.50x "
        "(50% slower) at 128. No crossover in range.",
        "- Points that involve a cell flagged unstable are marked `*` in the ratio tables below."]
    md = writers.markdown(a)
    assert "\n".join(f"- {item}" for item in analysis.answer(a)) in md
    assert analysis.console_lines(analysis.analyse(RUN, [row(SUBJECT, 128, 1.0)])) == []


def test_rendered_answer_matches_the_report(tmp_path):
    """render_report's answer is the one report.md opens with (bullets, markup dropped), and the report's files are
    all there."""
    from bench import report
    from bench.store import Store

    store = Store.open(tmp_path / "s.sqlite")
    store.add_run({**RUN, "args_hash": "x", "seed": 1, "environment": {}, "args": RUN["args"]})
    for i, r in enumerate(pair_rows([128, 160, 224], [3.0, 2.2, 1.4], [2.0, 2.0, 2.0])):
        r.update(run_id="r1", cell_key=f"k{i}", finished=f"2026-01-01T00:00:{i:02d}",
                 overrides=json.dumps(r["overrides"]), samples_ms=json.dumps(r["samples_ms"]),
                 unstable=int(r["unstable"]))
        store.add_cell(r)
    rendered = report.render_report(store, "r1", tmp_path / "reports")
    assert rendered.path == tmp_path / "reports" / "r1"
    # a run without ablation cells gets no why section (bench/why/report.py FILES)
    assert {p.name for p in rendered.path.iterdir()} == report.REPORT_FILES - why_report.FILES - {"optimized.csv"}
    md = (rendered.path / "report.md").read_text()
    section = md.partition("## The answer")[2].split("\n## ", 1)[0]
    assert rendered.answer == [ln.replace("**", "") for ln in section.splitlines() if ln.startswith("- ")]
    assert rendered.answer == [
        "- On onnx, mobileformer_26m vs mobilenetv3_small_075: Mobile-Former is slower at 128, 160 px (up to 1.50x at "
        "128 (95% CI 1.50-1.50)) and faster at 224 px (down to 0.70x at 224 (95% CI 0.70-0.70)). Crossover at 176 px "
        "(95% CI 176-176)."]
    assert (rendered.path / "ratios.csv").read_text().splitlines()[0] == (
        "runtime,subject,baseline,resolution,res_equiv,ratio,ci95_low,ci95_high,method,rounds,wide,unstable,crossover")
