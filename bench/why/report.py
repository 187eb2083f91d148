"""The report section "Why <subject> slows down on small images": why.csv, fit.csv, its plots and its Markdown,
written beside a run's report (bench/report.py calls `write`; a run without ablation cells gets nothing). Every
sentence comes from bench/why/sentences.py, which computes it from the run's numbers (bench/why/analysis.py)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import nodecost
from bench.analysis import Analysis
from bench.why import sentences as W
from bench.why.analysis import AGREEMENT_BOUND, Why, analyse_why
from bench.writers import md_table
from models.escape import escape

WHY_COLUMNS = ("model", "runtime", "height", "width", "component", "method", "ms", "ms_low", "ms_high",
               "share_latency", "share_madds")
FIT_COLUMNS = ("model", "runtime", "fixed_ms", "fixed_low_ms", "fixed_high_ms", "ms_per_gmadd", "peak_gmadds_per_s",
               "nodes", "per_node_us", "nodes_ms")
PLOTS = ("why_components", "why_ablation", "why_fit", "why_efficiency", "why_feedback")
FILES = frozenset({"why.csv", "fit.csv", *(f"{p}.png" for p in PLOTS)})


def _r(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else ("" if v is None else v)


def write_csvs(w: Why, directory: Path) -> None:
    with open(directory / "why.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(WHY_COLUMNS)
        for c in w.components:
            out.writerow([_r(getattr(c, k)) for k in WHY_COLUMNS])
    with open(directory / "fit.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(FIT_COLUMNS)
        for row in w.fits:
            out.writerow([_r(row.get(k)) for k in FIT_COLUMNS])


def _panels(n: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4), squeeze=False)
    return fig, axes[0]


def _save(fig, directory: Path, name: str, title: str, made: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(directory / f"{name}.png", dpi=100)
    plt.close(fig)
    made.append(name)


def _axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _plots(w: Why, directory: Path) -> list[str]:
    import numpy as np

    made: list[str] = []
    diffs = [c for c in w.components if c.method == "difference" and not c.component.startswith("per_")]
    if diffs:
        keys = sorted({(c.model, c.runtime) for c in diffs})
        fig, axes = _panels(len(keys))
        for ax, (model, rt) in zip(axes, keys):
            cs = [c for c in diffs if c.model == model and c.runtime == rt]
            res = sorted({(c.height, c.width) for c in cs}, key=lambda r: r[0] * r[1])
            bottom = np.zeros(len(res))
            for comp in dict.fromkeys(c.component for c in cs):
                vals = np.array([next((c.share_latency for c in cs if c.component == comp
                                       and (c.height, c.width) == r), 0.0) * 100 for r in res])
                ax.bar([f"{h}" for h, _ in res], vals, bottom=bottom, label=W._name(comp))
                bottom += vals
            ax.bar([f"{h}" for h, _ in res], 100 - bottom, bottom=bottom, label="rest", color="#ddd")
            _axes(ax, f"{model}\n{rt}", "resolution (px)", "% of latency")
        _save(fig, directory, "why_components", "Components by difference (share of the full model's latency)", made)
    if w.variants:
        keys = sorted({(v["model"], v["runtime"]) for v in w.variants})
        fig, axes = _panels(len(keys))
        for ax, key in zip(axes, keys):
            by: dict[str, list] = defaultdict(list)
            for v in w.variants:
                if (v["model"], v["runtime"]) == key:
                    by[v["variant"]].append(v)
            for name, vs in sorted(by.items()):
                vs = sorted(vs, key=lambda v: v["height"] * v["width"])
                acc = f" (paper {vs[0]['accuracy']:.1f} %)" if vs[0]["accuracy"] else ""
                ax.plot([v["height"] for v in vs], [v["ms"] for v in vs], "o-", label=name + acc)
            _axes(ax, f"{key[0]}\n{key[1]}", "resolution (px)", "median ms")
        _save(fig, directory, "why_ablation", "Ablations in milliseconds (paper top-1 beside the token counts)", made)
    fits = [f for f in w.fits if not f["overrides"]]
    if fits:
        rts = sorted({f["runtime"] for f in fits})
        fig, axes = _panels(len(rts))
        for ax, rt in zip(axes, rts):
            for f in (f for f in fits if f["runtime"] == rt):
                pts = sorted(f["points"], key=lambda p: p["gmadds"])
                xs = np.array([p["gmadds"] for p in pts])
                line = ax.plot(xs, [p["ms"] for p in pts], "o", label=f["model"])[0]
                grid = np.linspace(0, xs.max(), 20)
                ax.plot(grid, f["fixed_ms"] + f["ms_per_gmadd"] * grid, "-", color=line.get_color(), alpha=0.6)
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
            _axes(ax, rt, "GMAdds", "median ms")
        _save(fig, directory, "why_fit", "latency = fixed + per-MAdd x MAdds (Theil-Sen)", made)
    eff = [e for e in w.efficiency if e["share_peak"] is not None and not e["overrides"]]
    if eff:
        rts = sorted({e["runtime"] for e in eff})
        fig, axes = _panels(len(rts))
        for ax, rt in zip(axes, rts):
            for model in sorted({e["model"] for e in eff if e["runtime"] == rt}):
                es = sorted((e for e in eff if e["runtime"] == rt and e["model"] == model),
                            key=lambda e: e["height"] * e["width"])
                ax.plot([e["height"] for e in es], [e["share_peak"] * 100 for e in es], "o-", label=model)
            e0 = next(e for e in eff if e["runtime"] == rt)
            _axes(ax, f"{rt} (peak {e0['gmadds_per_s'] / e0['share_peak']:.1f} GMAdd/s)", "resolution (px)",
                  "% of the measured peak")
        _save(fig, directory, "why_efficiency", "Efficiency against the measured peak", made)
    if w.feedback:
        fig, axes = _panels(1)
        ax = axes[0]
        for key, fs in W._series(w.feedback, "model", "runtime"):
            xs = [f["height"] for f in fs]
            ys = np.array([f["share"].value * 100 for f in fs])
            err = np.array([[f["share"].value - f["share"].low, f["share"].high - f["share"].value] for f in fs]).T
            ax.errorbar(xs, ys, yerr=err * 100, fmt="o-", capsize=3, label=f"{key[0]} {key[1]}")
        ax.axhline(0, color="k", lw=0.8)
        _axes(ax, "what-if vs as built (95% interval)", "resolution (px)", "% faster without the feedback wait")
        _save(fig, directory, "why_feedback", "The DyReLU feedback path", made)
    return made


def _md(sentence: str) -> str:
    """A sentence of bench/why/sentences.py (plain text naming stored labels) as Markdown text."""
    return escape(sentence, "markdown")


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "" if v is None else format(v, fmt)


def markdown(a: Analysis, w: Why, plots: list[str], formats: list[str], versions: dict[str, str]) -> str:
    if w.empty:
        return ""
    lines = [f"## Why {a.subject} slows down on small images", ""]
    header, rows = W.headline(w)
    if rows:
        lines += ["Headline (ms by difference of cells timed in the same rounds, 95% intervals in brackets; the "
                  "feedback path: positive = breaking it is faster):", ""] + md_table(header, rows) + [""]
    lines += [f"- {_md(s)}" for s in W.component_sentences(w)] + [""]
    if "why_components" in plots:
        lines += ["![components](why_components.png)", ""]
    if w.variants:
        lines += ["### The paper's ablations in milliseconds", ""]
        notes = sorted({d.paper for c in w.components for d in _differences_of(c.model) if d.paper})
        lines += [f"- Paper: {n}." for n in notes]
        rows = [[v["model"], v["runtime"], f"{v['height']}x{v['width']}", v["variant"], f"{v['ms']:.2f}",
                 _f(v["accuracy"], ".1f")] for v in sorted(w.variants, key=lambda v: (v["model"], v["runtime"],
                                                                                       v["height"], v["variant"]))]
        lines += [""] + md_table(["model", "runtime", "res", "variant", "median ms", "paper top-1 %"], rows)
        if "why_ablation" in plots:
            lines += ["![ablations](why_ablation.png)", ""]
    if w.fits:
        lines += ["### The fixed cost", ""] + [f"- {_md(s)}" for s in W.fit_sentences(w) + W.overhead_sentences(w)
                                                + nodecost.sentences(w.node_costs, w.fits)]
        lines += [""]
        lines += md_table(["model", "runtime", "fixed ms (95% CI)", "ms / GMAdd", "peak GMAdd/s", "nodes",
                           "nodes x per-node cost ms"],
                          [[f["model"], f["runtime"], f"{f['fixed_ms']:.2f} ({f['fixed_low_ms']:.2f}-"
                            f"{f['fixed_high_ms']:.2f})", f"{f['ms_per_gmadd']:.2f}", _f(f["peak_gmadds_per_s"], ".1f"),
                            _f(f.get("nodes"), "d"), "" if f.get("nodes_ms") is None else
                            f"{f['nodes']} x {f['per_node_us']:.2f} us = {f['nodes_ms']:.2f}"]
                           for f in w.fits if f["role"] in ("subject", "baseline")])
        for p in ("why_fit", "why_efficiency"):
            if p in plots:
                lines += [f"![{p}]({p}.png)", ""]
        comp = W.component_fit_sentences(w)
        if comp:
            lines += ["Per component (MAdds from the counter, time by difference):", ""] + [f"- {_md(s)}" for s in comp]
            lines += [""]
    if w.feedback:
        lines += ["### The DyReLU feedback path", ""]
        whatif = sorted({_whatif_text(f["model"]) for f in w.feedback} - {""})
        lines += [f"- The what-if: {t}." for t in whatif]
        lines += [f"- {_md(s)}" for s in W.feedback_sentences(w)] + [""]
        if "why_feedback" in plots:
            lines += ["![feedback](why_feedback.png)", ""]
    lines += ["### Attribution by profile", ""]
    lines += [f"- {_md(s)}" for s in W.agreement_sentences(w)]
    lines += [f"- {_md(s)}" for s in W.landing_sentences(w)]
    for fmt in formats:
        if fmt in w.profile_notes:
            lines.append(f"- {_md(fmt)}: {_md(w.profile_notes[fmt])}.")
    if "tflite" in formats:
        lines.append(f"- tflite: the Python Interpreter of ai-edge-litert {versions.get('ai-edge-litert', '?')} "
                     "offers no op-profiling accessor, so LiteRT's cells are decomposed by difference only (no "
                     "estimate stands in for a profile).")
    prof = [c for c in w.components if c.method == "profile"]
    if prof:
        rows = [[c.model, c.runtime, f"{c.height}x{c.width}", c.tool, c.component, f"{c.ms:.2f}",
                 _f(c.share_latency, ".1%"), _f(c.share_madds, ".1%")] for c in prof]
        lines += [""] + md_table(["model", "runtime", "res", "profiler", "component", "ms", "of latency",
                                  "of MAdds"], rows)
    if w.closure:
        rows = [[c["model"], c["runtime"], f"{c['height']}x{c['width']}", c["tool"], f"{c['profiled_ms']:.2f}",
                 f"{c['median_ms']:.2f}", _f(c.get("plain_ms")),
                 ("yes" if c["ok"] else "no") + ("" if c.get("ok_plain") is None else
                                                 " / " + ("yes" if c["ok_plain"] else "no"))]
                for c in sorted(w.closure, key=lambda c: (c["runtime"], c["height"] * c["width"], c["model"]))]
        bound = f"within {AGREEMENT_BOUND:.0%} (timed / same moment)"
        lines += [""] + md_table(["model", "runtime", "res", "profiler", "components sum ms", "timed median ms",
                                  "unprofiled ms (same moment)", bound], rows)
    if w.agreement:
        rows = [[x["model"], x["runtime"], f"{x['height']}x{x['width']}", W._name(x["component"]),
                 f"{x['difference_ms']:.2f} ({x['difference_low']:.2f}-{x['difference_high']:.2f})",
                 f"{x['profile_ms']:.2f}", x.get("method", "profile components"),
                 (", ".join(f"{c} {v:+.2f}" for c, v in list(x["shift"].items())[:4]) if x.get("shift")
                  else " + ".join(x["profile_parts"]))] for x in w.agreement]
        lines += [""] + md_table(["model", "runtime", "res", "component", "difference ms (95% CI)", "profile ms",
                                  "by", "where it lands (ms)"], rows)
    return "\n".join(lines) + "\n"


def _differences_of(model_label: str):
    import models

    ab = models.family_info(models.spec(model_label.partition(":")[0]).family).ablations
    return ab.differences if ab else ()


def _whatif_text(model_label: str) -> str:
    import models

    ab = models.family_info(models.spec(model_label.partition(":")[0]).family).ablations
    return f"`{ab.what_if[0]}={ab.what_if[1]}`: {ab.what_if_text}" if ab and ab.what_if else ""


def write(a: Analysis, profiles: dict[str, dict[str, Any]], directory: Path) -> str:
    """why.csv, fit.csv and the plots into `directory`; returns the section's Markdown ("" without ablations)."""
    w = analyse_why(a, profiles)
    if w.empty:
        return ""
    write_csvs(w, directory)
    plots = _plots(w, directory)
    formats = sorted({r["format"] for r in a.rows if r["status"] == "ok"})
    versions: dict[str, str] = {}
    for r in a.rows:
        v = r.get("runtime_versions")
        if isinstance(v, dict):
            versions.update({k: str(x) for k, x in v.items()})
    return markdown(a, w, plots, formats, versions)
