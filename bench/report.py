"""The report of one run, rendered from the results store alone (so `python -m bench report` can redo it any time).

    reports/<run-id>/  results.csv  ratios.csv  report.md  report.html  latency.png  ratio.png  crossover.png
                       throughput.png
    reports/latest  -> <run-id>  (a symlink; a copy where links are not allowed)

The x axis of every plot is the equivalent square side sqrt(H * W) in pixels, so a non-square input such as
192x256 sits at 222 px, beside 224x224, which has about the same number of pixels. Tables name the real H x W.
A "runtime" is a format with its converter and precision (onnx, tflite/litert-torch, tflite/onnx2tf, executorch,
...), plus the thread count when a run has several. Ratios are Mobile-Former's median latency over the other
model's, per runtime, with 95% bootstrap intervals (bench/stats.py); the crossover is where the ratio crosses 1.
Writing goes to a temporary directory renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.store import Store
from bench.sweep import model_label, runtime_label

CSV_COLUMNS = ["run_id", "model", "overrides", "family", "format", "converter", "precision", "runtime", "device",
               "threads", "height", "width", "res_equiv", "params", "madds", "iterations", "warmup", "mean_ms",
               "median_ms", "p10_ms", "p90_ms", "std_ms", "min_ms", "max_ms", "cv", "ci95_low_ms", "ci95_high_ms",
               "unstable", "attempts", "cpu_median_ms", "wall_over_cpu", "load_ms", "first_ms", "peak_rss_mb",
               "overhead_us", "loadavg", "artifact_bytes", "export_seconds", "parity_verdict", "parity_max_rel",
               "parity_cosine", "status", "stage", "error"]
BASELINES = {"mobilenetv3": "MobileNetV3", "mobilevit": "MobileViT"}
UNSTABLE_RULE = (f"CV above {stats.UNSTABLE_CV:.0%}, or with one thread a median wall time more than "
                 f"{stats.CONTENTION_BOUND:.0%} above the median CPU time")
PLOTS = {"latency": "Latency vs resolution (median, band p10-p90)",
         "ratio": "Slowdown of Mobile-Former vs resolution (median ratio, 95% bootstrap interval)",
         "crossover": "Crossover resolution per runtime (ratio = 1)",
         "throughput": "Effective throughput: MAdds per millisecond vs resolution"}


# --------------------------------------------------------------------------------------------- analysis
def res_equiv(h: int, w: int) -> float:
    return math.sqrt(h * w)


def res_label(h: int, w: int) -> str:
    return str(h) if h == w else f"{h}x{w}"


@dataclass
class Pair:
    runtime: str
    numer: str  # Mobile-Former model label
    denom: str
    family: str  # the baseline's family
    labels: list[str]  # resolution labels of the points
    curve: stats.RatioCurve
    unstable: list[bool]  # a point involves an unstable cell
    cpu_ratios: list[float | None]  # ratio of CPU-time medians (one thread: the same comparison, minus contention)


@dataclass
class Analysis:
    run: dict[str, Any]
    rows: list[dict[str, Any]]
    runtimes: list[str] = field(default_factory=list)
    series: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # runtime -> model -> rows
    pairs: list[Pair] = field(default_factory=list)


def analyse(run: dict[str, Any], rows: list[dict[str, Any]]) -> Analysis:
    multi_threads = len({r["threads"] for r in rows}) > 1
    for r in rows:
        r["model_label"] = model_label(r["model"], r["overrides"] or {})
        r["runtime"] = runtime_label(r["format"], r["converter"], r["precision"]) + (
            f" t{r['threads']}" if multi_threads else "")
        r["res_equiv"] = round(res_equiv(r["height"], r["width"]), 1)
        r["res_label"] = res_label(r["height"], r["width"])
        cpu = r.get("cpu_median_ms")
        r["wall_over_cpu"] = round(r["median_ms"] / cpu, 4) if cpu and r.get("median_ms") else None
    a = Analysis(run, rows)
    ok = [r for r in rows if r["status"] == "ok"]
    a.runtimes = sorted({r["runtime"] for r in ok})
    for r in sorted(ok, key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"], r["height"])):
        a.series.setdefault(r["runtime"], {}).setdefault(r["model_label"], []).append(r)
    for rt in a.runtimes:
        by_model = a.series[rt]
        fam = {m: rs[0]["family"] for m, rs in by_model.items()}
        for mf in sorted(m for m in by_model if fam[m] == "mobileformer"):
            for other in sorted(m for m in by_model if fam[m] in BASELINES):
                theirs = {(r["height"], r["width"]): r for r in by_model[other]}
                common = [(r, theirs[(r["height"], r["width"])]) for r in by_model[mf]
                          if (r["height"], r["width"]) in theirs]
                if not common:
                    continue
                curve = stats.ratio_curve([x["res_equiv"] for x, _ in common], [x["samples_ms"] for x, _ in common],
                                          [y["samples_ms"] for _, y in common])
                cpu = [x["cpu_median_ms"] / y["cpu_median_ms"] if x.get("cpu_median_ms") and y.get("cpu_median_ms")
                       and x["threads"] == 1 else None for x, y in common]
                a.pairs.append(Pair(rt, mf, other, fam[other], [x["res_label"] for x, _ in common], curve,
                                    [bool(x["unstable"] or y["unstable"]) for x, y in common], cpu))
    return a


def _times(r: float) -> str:
    return f"{r:.2f}x"


def _ranges(points: list[tuple[float, str]]) -> str:
    return ", ".join(lbl for _, lbl in points)


def pair_sentence(p: Pair) -> str:
    """One sentence answering: slower or faster, where, by how much, and the crossover."""
    pts = list(zip(p.curve.points, p.labels))
    slower = [(pt, lbl) for pt, lbl in pts if pt.ratio > 1]
    faster = [(pt, lbl) for pt, lbl in pts if pt.ratio < 1]
    first, last = pts[0], pts[-1]
    head = f"On **{p.runtime}**, {p.numer} vs {p.denom}: "

    def at(item):
        pt, lbl = item
        return f"{_times(pt.ratio)} at {lbl} (95% CI {pt.low:.2f}-{pt.high:.2f})"

    if len(pts) == 1:
        verb = "slower" if slower else "faster" if faster else "as fast"
        return head + f"Mobile-Former is {verb} at the one size measured: {at(first)}."
    if not faster:
        worst = max(slower, key=lambda s: s[0].ratio)
        body = (f"Mobile-Former is slower at every size tested ({first[1]}-{last[1]} px), from {at(first)} to "
                f"{at(last)}; at most {_times(worst[0].ratio)} ({(worst[0].ratio - 1):.0%} slower) at {worst[1]}. ")
    elif not slower:
        best = min(faster, key=lambda s: s[0].ratio)
        body = (f"Mobile-Former is faster at every size tested ({first[1]}-{last[1]} px), from {at(first)} to "
                f"{at(last)}; at best {_times(best[0].ratio)} at {best[1]}. ")
    else:
        worst = max(slower, key=lambda s: s[0].ratio)
        best = min(faster, key=lambda s: s[0].ratio)
        body = (f"Mobile-Former is slower at {_ranges([(s[0].x, s[1]) for s in slower])} px (up to "
                f"{at(worst)}) and faster at {_ranges([(f[0].x, f[1]) for f in faster])} px (down to "
                f"{at(best)}). ")
    return head + body + crossover_text(p) + "." + cpu_text(p)


def cpu_text(p: Pair) -> str:
    """The same comparison on CPU time (one thread), where it is known: the ratios at both ends and the crossover."""
    pts = [(x, c) for x, c in zip(p.curve.xs, p.cpu_ratios) if c is not None]
    if len(pts) < 2:
        return ""
    cross = stats.crossings([x for x, _ in pts], [c for _, c in pts])
    where = f"crossover at {', '.join(f'{x:.0f}' for x in cross)} px" if cross else "no crossover"
    first, last = p.labels[p.curve.xs.index(pts[0][0])], p.labels[p.curve.xs.index(pts[-1][0])]
    return f" [CPU time: {_times(pts[0][1])} at {first} to {_times(pts[-1][1])} at {last}, {where}.]"


def crossover_text(p: Pair) -> str:
    c = p.curve
    if not c.crossings:
        return (f"No crossover in range ({c.crossing_share:.0%} of bootstrap replicates cross)" if c.crossing_share
                else "No crossover in range")
    first = c.crossings[0]
    text = f"Crossover at {first:.0f} px (95% CI {c.crossing_low:.0f}-{c.crossing_high:.0f})"
    if len(c.crossings) > 1:
        text += " and again at " + ", ".join(f"{x:.0f}" for x in c.crossings[1:]) + " px"
    return text


def contention_lines(a: Analysis) -> list[str]:
    """How much a busy machine inflated the wall-clock figures (one-thread cells: median wall / median CPU)."""
    ok = [r for r in a.rows if r["status"] == "ok"]
    unstable = [r for r in ok if r["unstable"]]
    inflation = sorted(r["wall_over_cpu"] for r in ok if r["wall_over_cpu"] and r["threads"] == 1)
    if not unstable or not inflation:
        return []
    mid, top = inflation[len(inflation) // 2], inflation[-1]
    head = f"- {len(unstable)} of {len(ok)} measured cells were unstable ({UNSTABLE_RULE}). "
    if top - 1 <= stats.CONTENTION_BOUND:
        return [head + f"Median wall and CPU time agree within {top - 1:.0%}: the spread comes from bursts inside "
                "the timed loops (a high CV), which the medians used for the ratios largely ignore."]
    return [head + f"With one thread, a cell's median wall time exceeded its median CPU time by {mid - 1:.0%} "
            f"(median over cells) and by up to {top - 1:.0%}: time the process waited while other work had the "
            "core. The CPU-time ratios (in brackets above, and in the tables below) make the same comparison "
            "without that wait."]


def overhead(a: Analysis) -> dict[str, Any] | None:
    ok = [r for r in a.rows if r["status"] == "ok" and r.get("overhead_us") is not None]
    if not ok:
        return None
    oh = sorted(r["overhead_us"] for r in ok)[len(ok) // 2]
    fastest = min(ok, key=lambda r: r["median_ms"])
    return {"overhead_us": oh, "fastest_ms": fastest["median_ms"],
            "fastest": f"{fastest['model_label']} {fastest['runtime']} {fastest['res_label']}",
            "share": oh / 1e3 / fastest["median_ms"]}


# --------------------------------------------------------------------------------------------- files
def write_csv(a: Analysis, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(a.rows, key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"], r["height"])):
            w.writerow({**r, "overrides": json.dumps(r["overrides"], sort_keys=True),
                        "unstable": "" if r["unstable"] is None else int(r["unstable"])})


def write_ratios_csv(a: Analysis, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["runtime", "mobileformer", "baseline", "resolution", "res_equiv", "ratio", "ci95_low",
                    "ci95_high", "unstable", "crossover"])
        for p in a.pairs:
            cross = ";".join(f"{x:.1f}" for x in p.curve.crossings) or "none in range"
            for pt, lbl, unst in zip(p.curve.points, p.labels, p.unstable):
                w.writerow([p.runtime, p.numer, p.denom, lbl, pt.x, f"{pt.ratio:.4f}", f"{pt.low:.4f}",
                            f"{pt.high:.4f}", int(unst), cross])


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = min(max(n, 1), 3)
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(n == 0 and ax is flat[0])
    return fig, flat


def _title(fig, key: str, panels: int) -> None:
    import textwrap

    fig.suptitle(textwrap.fill(PLOTS[key], 55 * min(max(panels, 1), 3)), fontsize=10)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _xaxis(ax, xs: list[float]) -> None:
    ax.set_xlabel("resolution: sqrt(H x W), px")
    ticks = sorted(set(xs))
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:.0f}" for t in ticks], rotation=45 if len(ticks) > 6 else 0)
    ax.grid(alpha=0.3)


def plot_latency(a: Analysis, path: Path) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = _grid(len(a.runtimes))
    for ax, rt in zip(axes, a.runtimes):
        xs_all = []
        for m, rs in a.series[rt].items():
            xs = [r["res_equiv"] for r in rs]
            xs_all += xs
            line, = ax.plot(xs, [r["median_ms"] for r in rs], marker="o", ms=3, label=m)
            ax.fill_between(xs, [r["p10_ms"] for r in rs], [r["p90_ms"] for r in rs], color=line.get_color(),
                            alpha=0.2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(rt)
        ax.set_ylabel("latency, ms (log scale)")
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    _finish(fig, axes, a, "latency", path)


def _finish(fig, axes, a: Analysis, kind: str, path: Path) -> None:
    """The common end of the per-runtime plots: placeholder when empty, title, save, close."""
    import matplotlib.pyplot as plt

    if not a.runtimes:
        _empty(axes[0], "no measured cells")
    _title(fig, kind, len(a.runtimes))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ratio(a: Analysis, path: Path) -> None:
    import matplotlib.pyplot as plt

    rts = sorted({p.runtime for p in a.pairs})
    fig, axes = _grid(len(rts))
    for ax, rt in zip(axes, rts):
        xs_all = []
        for p in (p for p in a.pairs if p.runtime == rt):
            xs = p.curve.xs
            xs_all += xs
            line, = ax.plot(xs, p.curve.ratios, marker="o", ms=3, label=f"{p.numer} / {p.denom}")
            ax.fill_between(xs, [q.low for q in p.curve.points], [q.high for q in p.curve.points],
                            color=line.get_color(), alpha=0.2)
            for x in p.curve.crossings:
                ax.axvline(x, color=line.get_color(), ls=":", lw=1)
            cpu = [(x, c) for x, c in zip(xs, p.cpu_ratios) if c is not None]
            if cpu:
                ax.plot([x for x, _ in cpu], [c for _, c in cpu], ls="--", lw=1, color=line.get_color(),
                        label=f"{p.numer} / {p.denom} (CPU time)")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(rt)
        ax.set_ylabel("latency ratio (> 1: Mobile-Former slower)")
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    if not rts:
        _empty(axes[0], "no Mobile-Former / baseline pair measured")
    _title(fig, "ratio", len(rts))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_crossover(a: Analysis, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.5 * max(len(a.pairs), 2) + 1.6))
    xs = sorted({x for p in a.pairs for x in p.curve.xs})
    lo, hi = (xs[0], xs[-1]) if xs else (0, 1)
    for i, p in enumerate(a.pairs):
        c = p.curve
        if c.crossings:
            x = c.crossings[0]
            err = [[x - c.crossing_low], [c.crossing_high - x]]
            ax.errorbar([x], [i], xerr=err, fmt="o", capsize=4, color="C0")
            ax.annotate(f"{x:.0f} px", (x, i), textcoords="offset points", xytext=(6, 6), fontsize=8)
        else:
            side = "Mobile-Former slower" if all(r > 1 for r in c.ratios) else (
                "Mobile-Former faster" if all(r < 1 for r in c.ratios) else "")
            ax.text(lo, i, f"none in range ({side})" if side else "none in range", va="center", fontsize=8,
                    color="gray")
    ax.set_yticks(range(len(a.pairs)))
    ax.set_yticklabels([f"{p.runtime}: {p.numer} / {p.denom}" for p in a.pairs], fontsize=8)
    ax.set_xlim(lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    ax.set_ylim(-0.8, max(len(a.pairs), 1) - 0.2)
    if not a.pairs:
        _empty(ax, "no Mobile-Former / baseline pair measured")
    else:
        _xaxis(ax, xs)
        ax.invert_yaxis()
    ax.set_title(PLOTS["crossover"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(a: Analysis, path: Path) -> None:

    fig, axes = _grid(len(a.runtimes))
    for ax, rt in zip(axes, a.runtimes):
        xs_all = []
        for m, rs in a.series[rt].items():
            rs = [r for r in rs if r.get("madds")]
            xs = [r["res_equiv"] for r in rs]
            xs_all += xs
            ax.plot(xs, [r["madds"] / 1e6 / r["median_ms"] for r in rs], marker="o", ms=3, label=m)
        ax.set_title(rt)
        ax.set_ylabel("MAdds (millions) per ms of median latency")
        ax.set_ylim(bottom=0)
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    _finish(fig, axes, a, "throughput", path)


# --------------------------------------------------------------------------------------------- markdown
def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return out + [""]


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
    lines = [f"# Latency vs input resolution: run {run['run_id']}", ""]
    where = (f"{env.get('cpu_model', '?')}, {env.get('cores', '?')} cores, {env.get('os', '?')}; "
             f"{', '.join(map(str, args.get('threads', [])))} thread(s), {args.get('iterations')} timed iterations "
             f"after {args.get('warmup')} warm-up")
    lines += [f"**Device `{run['device']}`** ({where}).", ""]
    # ---- the answer
    if a.pairs:
        lines += ["## The answer", ""]
        lines += [f"- {pair_sentence(p)}" for p in a.pairs]
        if any(any(p.unstable) for p in a.pairs):
            lines += ["- Points that involve a cell flagged unstable are marked `*` in the ratio tables below."]
        lines += contention_lines(a)
        lines.append("")
    else:
        lines += ["No Mobile-Former / MobileNetV3 or MobileViT pair was measured on a common runtime, so there is "
                  "no ratio to report.", ""]
    lines += [f"Cells: {len(a.rows)} stored of {run.get('cells_total')} ({n_ok} measured, {len(failed)} failed, "
              f"{len(not_run)} not run, {len(unstable)} unstable)."
              + ("" if run.get("finished") else " **The run is not complete**: rerun the same command to resume."),
              ""]
    for name in PLOTS:
        lines += [f"![{PLOTS[name]}]({name}.png)", ""]
    # ---- ratios
    if a.pairs:
        lines += ["## Slowdown ratio (Mobile-Former median / baseline median)", ""]
        for p in a.pairs:
            lines.append(f"**{p.runtime}: {p.numer} / {p.denom}** ({crossover_text(p)})")
            lines.append("")
            table = [["ratio", *[f"{q.ratio:.2f}" for q in p.curve.points]],
                     ["95% CI", *[f"{q.low:.2f}-{q.high:.2f}" for q in p.curve.points]]]
            if any(c is not None for c in p.cpu_ratios):
                table.append(["CPU-time ratio", *["" if c is None else f"{c:.2f}" for c in p.cpu_ratios]])
            lines += _md_table(["resolution", *[lbl + ("*" if u else "") for lbl, u in zip(p.labels, p.unstable)]],
                               table)
    # ---- latency tables
    lines += ["## Latency (ms): median / mean of the timed iterations", ""]
    for rt in a.runtimes:
        res = sorted({(r["res_equiv"], r["height"], r["res_label"]) for rs in a.series[rt].values() for r in rs})
        labels = [lbl for _, _, lbl in res]
        body = []
        for m, rs in a.series[rt].items():
            by = {r["res_label"]: r for r in rs}
            body.append([m, *[(f"{_ms(by[lbl]['median_ms'])} / {_ms(by[lbl]['mean_ms'])}"
                               + ("*" if by[lbl]["unstable"] else "")) if lbl in by else "" for lbl in labels]])
        lines += [f"**{rt}**", ""] + _md_table(["model", *labels], body)
    if unstable:
        lines.append(f"`*` = unstable: {UNSTABLE_RULE} (bench/stats.py says why).")
        lines.append("")
    # ---- failures, unstable, not run
    lines += ["## Failures", ""]
    if failed:
        lines += _md_table(["model", "runtime", "resolution", "stage", "error"],
                           [[r["model_label"], r["runtime"], r["res_label"], r["stage"], (r["error"] or "")[:300]]
                            for r in failed])
    else:
        lines += ["None.", ""]
    lines += ["## Unstable cells", ""]
    if unstable:
        lines += _md_table(["model", "runtime", "resolution", "cv", "median ms", "p10-p90 ms", "wall / CPU median",
                            "attempts", "load avg"],
                           [[r["model_label"], r["runtime"], r["res_label"], f"{r['cv']:.1%}", _ms(r["median_ms"]),
                             f"{_ms(r['p10_ms'])}-{_ms(r['p90_ms'])}",
                             "" if r["wall_over_cpu"] is None else f"{r['wall_over_cpu']:.2f}", r.get("attempts") or 1,
                             "" if r.get("loadavg") is None else f"{r['loadavg']:.2f}"] for r in unstable])
    else:
        lines += [f"None (none with a {UNSTABLE_RULE}).", ""]
    if not_run:
        reasons: dict[str, list[str]] = defaultdict(list)
        for r in not_run:
            reasons[f"{r['runtime']}: {r['status']}"].append(r["model_label"])
        lines += ["## Not run on this device", ""]
        lines += [f"- {k} ({len(v)} cells)" for k, v in sorted(reasons.items())] + [""]
    # ---- harness overhead and environment
    oh = overhead(a)
    lines += ["## Harness overhead", ""]
    if oh:
        verdict = "below" if oh["share"] < 0.01 else "**above**"
        lines += [f"An empty callable through the same timing loop costs {oh['overhead_us']:.2f} us per iteration "
                  f"(median over cells), {oh['share']:.4%} of the fastest cell ({oh['fastest']}, "
                  f"{_ms(oh['fastest_ms'])} ms median): {verdict} the 1% bound.", ""]
    else:
        lines += ["No measured cell.", ""]
    lines += ["## Environment", ""]
    rt_versions = "; ".join(f"{f}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "runtime" and v)
                            for f, d in (env.get("runtimes") or {}).items())
    lines += _md_table(["", ""], [
        ["run id", run["run_id"]], ["created", run["created"]], ["finished", run.get("finished") or "not yet"],
        ["device", f"{run['device']} ({env.get('kind', '')})"], ["CPU", env.get("cpu_model")],
        ["cores", f"{env.get('cores')} (allowed: {env.get('allowed_cpus')})"], ["pinning", env.get("pinning")],
        ["memory", f"{env.get('memory_gb')} GB"], ["OS", env.get("os")], ["Python", env.get("python")],
        ["numpy", env.get("numpy")], ["runtimes", rt_versions], ["git commit", run.get("git_commit")],
        ["shuffle seed", run.get("seed")], ["arguments", f"`{json.dumps(args, sort_keys=True)}`"],
        ["command", f"`{' '.join(run.get('argv') or [])}`"]])
    lines += ["## Method", "",
              "- Each cell: the artifact is loaded in a worker process pinned to its cores, with the runtime's "
              "thread count fixed; one first inference (reported apart), the warm-up runs, then the timed "
              "iterations with `perf_counter_ns` around the inference call alone, on an input prepared beforehand.",
              "- Statistics per cell (bench/stats.py): mean, median, p10/p90, sample std, min, max, coefficient of "
              f"variation, 95% CI of the mean (Student t). Unstable: {UNSTABLE_RULE}. The process's CPU time per "
              "iteration is recorded beside the latency; an unstable loop is re-timed (up to --retries times) and "
              "the steadiest attempt kept.",
              f"- Ratios use medians; intervals are percentile bootstraps ({stats.N_BOOT} resamples of each cell's "
              "raw samples, fixed seed). The crossover interpolates linearly in resolution where the ratio "
              "crosses 1.",
              "- x axis: the equivalent square side sqrt(H x W) in pixels; tables show H x W (one number when "
              "square).",
              "- Cells ran in a shuffled order (seed above) so drift of the shared machine does not favour one "
              "model. All figures, raw samples included, are in the store and in results.csv.", ""]
    return "\n".join(lines)


def html(md_text: str, directory: Path, title: str) -> str:
    """report.md as one self-contained HTML page: plots inlined as base64 PNG."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(md_text)
    for name in PLOTS:
        data = base64.b64encode((directory / f"{name}.png").read_bytes()).decode()
        body = body.replace(f'src="{name}.png"', f'src="data:image/png;base64,{data}"')
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;"
             "padding:.2em .5em;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}code{background:#f4f4f4;padding:0 .2em;font-size:.85em}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")


# --------------------------------------------------------------------------------------------- render
REPORT_FILES = frozenset({"results.csv", "ratios.csv", "latency.png", "ratio.png", "crossover.png",
                          "throughput.png", "report.md", "report.html"})


def _ours(directory: Path) -> bool:
    """A real directory holding nothing but the files a report consists of (so replacing it deletes only ours)."""
    return (directory.is_dir() and not directory.is_symlink()
            and all(p.name in REPORT_FILES and p.is_file() and not p.is_symlink() for p in directory.iterdir()))


def render(store: Store, run_id: str, reports_root: str | Path) -> Path:
    """Write reports/<run-id>/ (atomically) and point reports/latest at it; return the directory.

    The run id is checked against the one safe pattern and the folder proven to lie inside the reports root before
    anything is written; an existing report folder is replaced only when it holds nothing but a report's files.
    """
    import matplotlib

    from models.common import check_name, inside, os_error_line
    from models.errors import ToolkitError

    matplotlib.use("Agg")
    run = store.run(run_id)
    if run is None:
        raise ToolkitError(f"no run {run_id!r} in {store.path}; `python -m bench list` shows the runs")
    try:
        check_name(run_id, "run id")
    except ToolkitError as exc:
        raise ToolkitError(f"{exc}; run {run_id!r} in {store.path} cannot name a report folder") from None
    root = Path(reports_root)
    if root.exists() and not root.is_dir():
        raise ToolkitError(f"reports folder {root} is not a directory; pass another --reports")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(os_error_line(exc, root, "create the reports folder")) from None
    final = inside(root / run_id, root, "report folder")
    if (final.exists() or final.is_symlink()) and not _ours(final):
        raise ToolkitError(f"{final} holds files that are not a report's (or is not a plain folder); left "
                           "untouched: move them away to write this run's report")
    a = analyse(run, store.cells(run_id))
    tmp = final.with_name(f".{run_id}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write_csv(a, tmp / "results.csv")
        write_ratios_csv(a, tmp / "ratios.csv")
        plot_latency(a, tmp / "latency.png")
        plot_ratio(a, tmp / "ratio.png")
        plot_crossover(a, tmp / "crossover.png")
        plot_throughput(a, tmp / "throughput.png")
        md = markdown(a)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(html(md, tmp, f"Latency vs resolution: {run_id}"))
        old = None
        if final.exists():
            old = final.with_name(f".{run_id}.old-{os.getpid()}")
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _point_latest(root, run_id)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolkitError(os_error_line(exc, root, f"write the report of run {run_id}")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _point_latest(root: Path, run_id: str) -> None:
    """reports/latest -> <run-id>: a symlink swapped in atomically; a copy where links are not allowed. A `latest`
    that is neither our link nor our copy is left alone (and said so)."""
    from models.errors import ToolkitError

    latest = root / "latest"
    if latest.exists() and not latest.is_symlink() and not _ours(latest):
        raise ToolkitError(f"{latest} is not the toolkit's link or copy of a report; left untouched (the report is "
                           f"in {root / run_id})")
    link = root / f".latest.tmp-{os.getpid()}"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_id, target_is_directory=True)
        if latest.exists() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(link, latest)
    except OSError:  # no symlinks here: a copy
        if link.is_symlink():
            link.unlink()
        if latest.is_symlink():
            latest.unlink()
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(root / run_id, latest)


def report_text(path: Path) -> str:
    """The answer at the top of report.md (its bullet points), for the console."""
    text = (path / "report.md").read_text()
    _, _, rest = text.partition("## The answer")
    section = rest.split("\n## ", 1)[0]
    return "\n".join(ln for ln in section.splitlines() if ln.startswith("- ")).replace("**", "")
