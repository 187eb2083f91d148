"""The report's files from an Analysis (bench/analysis.py): results.csv, ratios.csv, report.md and report.html.

md_table is the one Markdown table helper of bench/ (the profile's tables use it too).
"""

from __future__ import annotations

import base64
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import int8_report, stats
from bench.analysis import (
    AGG_MARK,
    AGG_RULE,
    IMPORTED,
    PLOT_NAMES,
    ROUND_RULE,
    UNSTABLE_RULE,
    Analysis,
    answer,
    crossover_text,
    has_samples,
    no_pair_text,
    overhead,
)
from models.escape import Markdown, escape

CSV_COLUMNS = ["run_id", "model", "overrides", "family", "format", "converter", "precision", "runtime", "device",
               "threads", "height", "width", "res_equiv", "params", "madds", "iterations", "warmup", "mean_ms",
               "median_ms", "p10_ms", "p90_ms", "std_ms", "min_ms", "max_ms", "cv", "ci95_low_ms", "ci95_high_ms",
               "unstable", "n_rounds", "per_round", "switch_warmup", "round_cv", "session", "cpu_median_ms",
               "wall_over_cpu", "load_ms", "first_ms", "peak_rss_mb",
               "overhead_us", "loadavg", "artifact_bytes", "export_seconds", "parity_verdict", "parity_max_rel",
               "parity_cosine", "raw_samples", "emulated", "status", "stage", "error"]
RATIO_COLUMNS = ["runtime", "subject", "baseline", "resolution", "res_equiv", "ratio", "ci95_low", "ci95_high",
                 "method", "rounds", "wide", "unstable", "crossover"]


# --------------------------------------------------------------------------------------------- CSV
def write_csv(a: Analysis, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(a.rows, key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"], r["height"])):
            w.writerow(_csv_cells({**r, "overrides": json.dumps(r["overrides"], sort_keys=True),
                                   "unstable": "" if r["unstable"] is None else int(r["unstable"]),
                                   "raw_samples": "" if r["status"] != "ok" else int(has_samples(r))}))


def _csv_cells(row: dict[str, Any]) -> dict[str, Any]:
    """Stored strings as spreadsheet cells that cannot start a formula (models/escape.py)."""
    return {k: escape(v, "csv") if isinstance(v, str) else v for k, v in row.items() if k in CSV_COLUMNS}


def ratio_rows(a: Analysis) -> list[list[Any]]:
    """ratios.csv's rows (RATIO_COLUMNS): one per point of every pair; no interval for an aggregates-only point."""
    rows = []
    for p in a.pairs:
        cross = ";".join(f"{x:.1f}" for x in p.curve.crossings) or "none in range"
        for pt, lbl, unst in zip(p.curve.points, p.labels, p.unstable):
            low, high = ("", "") if pt.aggregates else (f"{pt.low:.4f}", f"{pt.high:.4f}")
            rows.append([p.runtime, p.numer, p.denom, lbl, pt.x, f"{pt.ratio:.4f}", low, high, pt.method,
                         pt.n_rounds, int(pt.wide), int(unst), cross])
    return rows


def write_rows(path: Path, head: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows([[escape(v, "csv") if isinstance(v, str) else v for v in r] for r in rows])


def write_ratios_csv(a: Analysis, path: Path) -> None:
    write_rows(path, RATIO_COLUMNS, ratio_rows(a))


# --------------------------------------------------------------------------------------------- Markdown
def md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table as lines (a blank line after it), written by the toolkit's one table writer."""
    from models.common import markdown_table

    return markdown_table(head, rows).split("\n") + [""]


def _ms(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def markdown(a: Analysis) -> str:
    run, env = a.run, a.run.get("environment") or {}
    args = run.get("args") or {}
    n_ok = sum(r["status"] == "ok" for r in a.rows)
    failed = [r for r in a.rows if r["status"] == "failed"]
    not_run = [r for r in a.rows if r["status"].startswith("not run")]
    unstable = [r for r in a.rows if r["status"] == "ok" and r["unstable"]]
    t = _md  # every stored string in a line of text goes through it (tables escape their cells themselves)
    lines = [f"# Latency vs input resolution: run {t(run['run_id'])}", ""]
    rounds = (f" in {args['rounds']} interleaved rounds of {args['per_round']} (up to {args.get('max_rounds')} "
              f"where intervals stayed wide), {args.get('switch_warmup')} untimed per switch"
              if args.get("rounds", 1) > 1 else " in one burst" if "rounds" in args else "")
    emu = " emulated by qemu-user" if env.get("emulated") else ""
    where = (f"{t(env.get('cpu_model', '?'))}{emu}, {t(env.get('cores', '?'))} cores, {t(env.get('os', '?'))}; "
             f"{t(', '.join(map(str, args.get('threads', []))))} thread(s), {t(args.get('iterations'))} timed "
             f"iterations per cell{t(rounds)}, after {t(args.get('warmup'))} warm-up")
    if env.get("kind") == IMPORTED:
        files = env.get("imports") or []
        where = (f"results measured by hand and imported with `bench import`: {len(files)} file(s) of "
                 f"{t(', '.join(sorted({str(f['tool']) for f in files})))}")
    lines += [f"**Device {escape(run['device'], 'code')}** ({where}).", ""]
    # ---- the answer
    if a.pairs:
        lines += ["## The answer", ""]
        lines += [f"- {item}" for item in answer(a) + int8_report.answer_items(a)]
        lines.append("")
    else:
        lines += [no_pair_text(a), ""]
    lines += [f"Cells: {len(a.rows)} stored of {run.get('cells_total')} ({n_ok} measured, {len(failed)} failed, "
              f"{len(not_run)} not run, {len(unstable)} unstable)."
              + ("" if run.get("finished") else " **The run is not complete**: rerun the same command to resume."),
              ""]
    titles = a.titles
    for name in PLOT_NAMES:
        lines += [f"![{titles[name]}]({name}.png)", ""]
    # ---- ratios
    if a.pairs:
        lines += [f"## Slowdown ratio ({a.subject} median / baseline median)", ""]
        for p in a.pairs:
            lines.append(f"**{t(p.runtime)}: {t(p.numer)} / {t(p.denom)}** ({crossover_text(p)})")
            lines.append("")
            table = [["ratio", *[f"{q.ratio:.2f}" + ("~" if q.wide else "") for q in p.curve.points]],
                     ["95% CI", *["none" if q.aggregates else f"{q.low:.2f}-{q.high:.2f}" for q in p.curve.points]]]
            if any(c is not None for c in p.cpu_ratios):
                table.append(["CPU-time ratio", *["" if c is None else f"{c:.2f}" for c in p.cpu_ratios]])
            lines += md_table(["resolution", *[lbl + ("*" if u else "") + (AGG_MARK if q.aggregates else "")
                                               for lbl, u, q in zip(p.labels, p.unstable, p.curve.points)]], table)
    lines += int8_report.section(a, md_table)
    # ---- latency tables
    lines += ["## Latency (ms): median / mean of the timed iterations", ""]
    for rt in a.runtimes:
        res = sorted({(r["res_equiv"], r["height"], r["res_label"]) for rs in a.series[rt].values() for r in rs})
        labels = [lbl for _, _, lbl in res]
        body = []
        for m, rs in a.series[rt].items():
            by = {r["res_label"]: r for r in rs}
            body.append([m, *[(f"{_ms(by[lbl]['median_ms'])} / {_ms(by[lbl]['mean_ms'])}"
                               + ("*" if by[lbl]["unstable"] else "") + ("" if has_samples(by[lbl]) else AGG_MARK))
                              if lbl in by else "" for lbl in labels]])
        lines += [f"**{t(rt)}**", ""] + md_table(["model", *labels], body)
    if unstable:
        lines.append(f"`*` = unstable: {ROUND_RULE} (runs timed in rounds) or {UNSTABLE_RULE} (one burst); "
                     "bench/stats.py says why.")
        lines.append("")
    if any(not has_samples(r) for r in a.rows if r["status"] == "ok"):
        lines += [AGG_RULE, ""]
    if any(q.wide for p in a.pairs for q in p.curve.points):
        lines.append(f"`~` = wide: the ratio's 95% interval is wider than +-{stats.WIDE_HALF_WIDTH:.0%} of it.")
        lines.append("")
    # ---- failures, unstable, not run
    lines += ["## Failures", ""]
    if failed:
        lines += md_table(["model", "runtime", "resolution", "stage", "error"],
                          [[r["model_label"], r["runtime"], r["res_label"], r["stage"], (r["error"] or "")[:300]]
                           for r in failed])
    else:
        lines += ["None.", ""]
    lines += ["## Unstable cells", ""]
    if unstable:
        lines += md_table(["model", "runtime", "resolution", "rounds disagree", "cv", "median ms", "p10-p90 ms",
                           "wall / CPU median", "rounds", "load avg"],
                          [[r["model_label"], r["runtime"], r["res_label"],
                            "" if r.get("round_cv") is None else f"{r['round_cv']:.1%}", f"{r['cv']:.1%}",
                            _ms(r["median_ms"]), f"{_ms(r['p10_ms'])}-{_ms(r['p90_ms'])}",
                            "" if r["wall_over_cpu"] is None else f"{r['wall_over_cpu']:.2f}", r.get("n_rounds") or 1,
                            "" if r.get("loadavg") is None else f"{r['loadavg']:.2f}"] for r in unstable])
    else:
        lines += [f"None (no cell with {ROUND_RULE}).", ""]
    if not_run:
        reasons: dict[str, list[str]] = defaultdict(list)
        for r in not_run:
            reasons[f"{r['runtime']}: {r['status']}"].append(r["model_label"])
        lines += ["## Not run on this device", ""]
        lines += [f"- {t(k)} ({len(v)} cells)" for k, v in sorted(reasons.items())] + [""]
    # ---- harness overhead and environment
    if env.get("kind") == IMPORTED:
        return "\n".join(lines + imported_lines(a))
    oh = overhead(a)
    lines += ["## Harness overhead", ""]
    if oh:
        verdict = "below" if oh["share"] < 0.01 else "**above**"
        lines += [f"An empty callable through the same timing loop costs {oh['overhead_us']:.2f} us per iteration "
                  f"(median over cells), {oh['share']:.4%} of the fastest cell ({t(oh['fastest'])}, "
                  f"{_ms(oh['fastest_ms'])} ms median): {verdict} the 1% bound.", ""]
    else:
        lines += ["No measured cell.", ""]
    lines += ["## Environment", ""]
    rt_versions = "; ".join(f"{f}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "runtime" and v)
                            for f, d in (env.get("runtimes") or {}).items())
    lines += md_table(["", ""], [
        ["run id", run["run_id"]], ["created", run["created"]], ["finished", run.get("finished") or "not yet"],
        ["device", f"{run['device']} ({env.get('kind', '')})"], ["CPU", env.get("cpu_model")],
        ["cores", f"{env.get('cores')} (allowed: {env.get('allowed_cpus')})"], ["pinning", env.get("pinning")],
        ["memory", f"{env.get('memory_gb')} GB"], ["OS", env.get("os")], ["Python", env.get("python")],
        ["numpy", env.get("numpy")], ["runtimes", rt_versions], ["git commit", run.get("git_commit")],
        ["shuffle seed", run.get("seed")], ["arguments", escape(json.dumps(args, sort_keys=True), "code")],
        ["command", _command(run)]])
    lines += ["## Method", "",
              "- Cells that are compared (same runtime, threads and resolution) are timed together in one worker "
              "process pinned to its cores, in interleaved rounds: in each round every model runs a few untimed "
              "iterations (it was just switched in) and then its timed chunk, in a fresh random order per round "
              "(devices/rounds.py). Each model is loaded, run once (the first inference, reported apart) and "
              "warmed up before the rounds; `perf_counter_ns` times the inference call alone, on an input "
              "prepared beforehand. A group whose ratio intervals stay wider than "
              f"+-{stats.ADAPT_HALF_WIDTH:.0%} gets more rounds, up to the run's max_rounds.",
              "- Statistics per cell (bench/stats.py): mean of all timed iterations, median, p10/p90, sample std, "
              "min, max, coefficient of variation, 95% CI of the mean over the rounds' means (Student t), the spread "
              f"of the per-round medians. Unstable: {ROUND_RULE}. The process's CPU time per iteration is recorded "
              "beside the latency.",
              "- A ratio is taken per round (both models met the same machine in it) and summarised as the median "
              f"of the per-round ratios; its interval is a percentile bootstrap over rounds ({stats.N_BOOT} "
              "resamples, fixed seed), and so is the crossover's, which interpolates linearly in resolution where "
              "the ratio crosses 1. (Runs timed in one burst: medians of each cell, iterations resampled.)",
              "- x axis: the equivalent square side sqrt(H x W) in pixels; tables show H x W (one number when "
              "square).",
              "- Cells ran in a shuffled order (seed above) so drift of the shared machine does not favour one "
              "model. All figures, raw samples included, are in the store and in results.csv.", ""]
    return "\n".join(lines)


def imported_lines(a: Analysis) -> list[str]:
    """The end of an imported run's report: where each cell came from, instead of the sweep's harness, environment
    and method sections."""
    run, env = a.run, a.run.get("environment") or {}
    by_key = {r["cell_key"]: r for r in a.rows if r.get("cell_key")}
    rows = []
    for f in env.get("imports") or []:
        r = by_key.get(f["cell"], {})
        src = r.get("source") or {}
        rows.append([f["file"], f"{f['tool']} ({src.get('variant', '?')})", r.get("model_label", "?"),
                     r.get("runtime", "?"), r.get("res_label", "?"), r.get("iterations") or "",
                     "yes" if r and has_samples(r) else "no: aggregates", f["sha256"][:12], f["imported"][:19]])
    lines = ["## Imported files", ""]
    lines += md_table(["file", "tool", "model", "runtime", "resolution", "timed iterations", "raw samples",
                       "sha256", "imported (UTC)"], rows)
    lines += md_table(["", ""], [["run id", run["run_id"]], ["device", run["device"]],
                                 ["git commit", run.get("git_commit")],
                                 ["created by", _command(run)]])
    lines += ["## Method", "",
              "- Each cell is one saved output of a native benchmark program, parsed by devices/parsers.py. Where the "
              "program prints per-iteration times (executor_runner, our native runner, XCTest), they are the "
              "cell's samples (one round: no rounds were interleaved on the device) and the statistics are "
              "computed as for a measured cell; where it prints only aggregates (benchmark_model, "
              "onnxruntime_perf_test), those are stored as printed and no sample is made up.",
              *([f"- {AGG_RULE}"] if any(not has_samples(r) for r in a.rows if r["status"] == "ok") else []),
              "- The same file imported twice adds nothing (files are known by their sha256).", ""]
    return lines


def _md(value: Any) -> str:
    return escape(value, "markdown")


def _command(run: dict[str, Any]) -> Markdown:
    argv = run.get("argv")
    return escape(" ".join(map(str, argv)) if isinstance(argv, list) else argv or "", "code")


# --------------------------------------------------------------------------------------------- HTML
def html(md_text: str, directory: Path, title: str) -> str:
    """report.md as one self-contained HTML page: plots inlined as base64 PNG. Raw HTML is off: whatever HTML the
    Markdown holds (it holds none of ours; stored strings are escaped before they get there) shows as text."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)
    for name in PLOT_NAMES:
        data = base64.b64encode((directory / f"{name}.png").read_bytes()).decode()
        body = body.replace(f'src="{name}.png"', f'src="data:image/png;base64,{data}"')
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;"
             "padding:.2em .5em;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}code{background:#f4f4f4;padding:0 .2em;font-size:.85em}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title, 'html')}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")
