"""The report section "As exported vs optimized": what `export --optimize` changed, per runtime, in a run that timed
both (`bench run --optimize both`: a cell's plain and optimized artifacts in the same interleaved rounds).

Pure analysis and Markdown from the run's analysed rows (bench/analysis.py labels an optimized cell's runtime
"<runtime> optimized", so its series, pairs and fits are computed like any runtime's) and bench/why/'s fits,
peaks and per-node costs. Per runtime and model: the latency of both artifacts and the optimized one's change,
paired round by round (both met the same machine); the node counts of both graphs; the fixed cost and the share of
the measured peak of both; and per subject / baseline pair the slowdown ratio and crossover as exported (both
plain) and optimized (both optimized), with one sentence on how much of the small-image slowdown the graph work
removed: (ratio as exported - ratio optimized) / (ratio as exported - 1) at the smallest resolution.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bench import nodecost
from bench import why as W
from bench.analysis import OPTIMIZED, Analysis, crossover_text
from bench.stats import CellSamples, round_statistic
from bench.writers import md_table
from models.escape import escape

FILE = "optimized.csv"
COLUMNS = ("model", "runtime", "height", "width", "plain_ms", "optimized_ms", "change", "change_low", "change_high",
           "plain_nodes", "optimized_nodes")


def _twins(a: Analysis) -> list[tuple[str, str]]:
    """(plain runtime, optimized runtime) label pairs present in the run."""
    out = []
    for rt in a.runtimes:
        if f" {OPTIMIZED}" in rt:
            base = rt.replace(f" {OPTIMIZED}", "", 1)
            if base in a.series:
                out.append((base, rt))
    return out


def _cs(r: dict[str, Any]) -> CellSamples:
    return CellSamples(r["samples_ms"], r.get("rounds"), r.get("session"))


def rows(a: Analysis) -> list[dict[str, Any]]:
    """One row per (model, runtime, resolution) timed both ways."""
    out = []
    for base, rt in _twins(a):
        for label, opt_rows in a.series[rt].items():
            plain = {(r["height"], r["width"]): r for r in a.series[base].get(label, [])}
            for o in opt_rows:
                p = plain.get((o["height"], o["width"]))
                if p is None or not (p.get("samples_ms") and o.get("samples_ms")):
                    continue
                ch = round_statistic([_cs(o), _cs(p)], lambda x, y: x / y - 1)
                out.append({"model": label, "runtime": base, "height": o["height"], "width": o["width"],
                            "plain_ms": p["median_ms"], "optimized_ms": o["median_ms"], "change": ch.value,
                            "change_low": ch.low, "change_high": ch.high, "plain_nodes": nodecost.nodes_of(p),
                            "optimized_nodes": nodecost.nodes_of(o), "role": a.roles.role.get(o["family"])})
    return out


def _fit(w: W.Why, model: str, rt: str) -> dict[str, Any] | None:
    return next((f for f in w.fits if f["model"] == model and f["runtime"] == rt), None)


def _share(w: W.Why, model: str, rt: str, h: int, wd: int) -> float | None:
    e = next((e for e in w.efficiency if (e["model"], e["runtime"], e["height"], e["width"]) == (model, rt, h, wd)),
             None)
    return e["share_peak"] if e else None


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.0%}"


def _pair_points(a: Analysis, rt: str) -> dict[tuple[str, str], Any]:
    return {(p.numer, p.denom): p for p in a.pairs if p.runtime == rt}


def sentences(a: Analysis, w: W.Why) -> list[str]:
    out = []
    for base, rt in _twins(a):
        plain_pairs, opt_pairs = _pair_points(a, base), _pair_points(a, rt)
        for key, p in sorted(plain_pairs.items()):
            q = opt_pairs.get(key)
            if q is None:
                continue
            r0, q0 = p.curve.points[0], q.curve.points[0]
            lbl = p.labels[0]
            if r0.ratio > 1:
                removed = (r0.ratio - q0.ratio) / (r0.ratio - 1)
                verdict = (f"the graph work removed {removed:.0%} of the small-image slowdown" if removed > 0 else
                           f"the graph work removed none of the small-image slowdown ({-removed:.0%} more)")
            else:
                verdict = "there is no slowdown at the smallest size to remove"
            out.append(f"On {base}, {p.numer} vs {p.denom} at {lbl} px: {r0.ratio:.2f}x as exported (95% CI "
                       f"{r0.low:.2f} to {r0.high:.2f}) and {q0.ratio:.2f}x with both optimized ({q0.low:.2f} to "
                       f"{q0.high:.2f}): {verdict}. As exported: {_lower(crossover_text(p))}; optimized: "
                       f"{_lower(crossover_text(q))}.")
        for label in sorted(set(a.series[base]) & set(a.series[rt])):
            f0, f1 = _fit(w, label, base), _fit(w, label, rt)
            if f0 and f1:
                out.append(f"On {base}, {label}: fixed cost {f0['fixed_ms']:.2f} ms (95% CI "
                           f"{f0['fixed_low_ms']:.2f} to {f0['fixed_high_ms']:.2f}) as exported, "
                           f"{f1['fixed_ms']:.2f} ms ({f1['fixed_low_ms']:.2f} to {f1['fixed_high_ms']:.2f}) optimized"
                           + (f" = {f1['fixed_ms'] / f0['fixed_ms']:.0%} of it" if f0["fixed_ms"] > 0 else "")
                           + (f"; nodes {f0['nodes']} -> {f1['nodes']}" if f0.get("nodes") and f1.get("nodes")
                              else "") + ".")
    return out


def markdown(a: Analysis, w: W.Why, table: list[dict[str, Any]]) -> str:
    if not table:
        return ""
    lines = ["## As exported vs optimized", "",
             "The plain artifacts and the `export --optimize` ones (the family's export form and the format's graph "
             "tools, docs/export.md) of each cell, timed in the same interleaved rounds; a change is paired round "
             "by round (negative = the optimized artifact is faster). Ratios and crossovers compare the subject "
             "with each baseline with both plain (as exported) or both optimized.", ""]
    lines += [f"- {escape(s, 'markdown')}" for s in sentences(a, w)] + [""]
    body = [[t["model"], t["runtime"], f"{t['height']}x{t['width']}", f"{t['plain_ms']:.2f}",
             f"{t['optimized_ms']:.2f}", f"{t['change']:+.1%} ({t['change_low']:+.1%} to {t['change_high']:+.1%})",
             f"{t['plain_nodes'] or ''} -> {t['optimized_nodes'] or ''}"] for t in table]
    lines += md_table(["model", "runtime", "res", "ms as exported", "ms optimized", "change (95% CI)", "nodes"], body)
    fit_rows = []
    for base, rt in _twins(a):
        for label in sorted(set(a.series[base]) & set(a.series[rt])):
            f0, f1 = _fit(w, label, base), _fit(w, label, rt)
            if not (f0 and f1):
                continue
            small = min(f0["points"], key=lambda p: p["gmadds"])
            h, wd = small["height"], small["width"]
            fit_rows.append([label, base, f"{f0['fixed_ms']:.2f} -> {f1['fixed_ms']:.2f}",
                             "" if f0.get("nodes_ms") is None or f1.get("nodes_ms") is None else
                             f"{f0['nodes_ms']:.2f} -> {f1['nodes_ms']:.2f}",
                             f"{_pct(_share(w, label, base, h, wd))} -> {_pct(_share(w, label, rt, h, wd))} at {h}"])
    if fit_rows:
        lines += [""] + md_table(["model", "runtime", "fixed ms, as exported -> optimized",
                                  "nodes x per-node cost ms", "share of the measured peak"], fit_rows)
    ratio_rows = []
    for base, rt in _twins(a):
        opt_pairs = _pair_points(a, rt)
        for key, p in sorted(_pair_points(a, base).items()):
            q = opt_pairs.get(key)
            if q is None:
                continue
            for lbl, r0 in zip(p.labels, p.curve.points):
                r1 = next((r for lq, r in zip(q.labels, q.curve.points) if lq == lbl), None)
                if r1 is not None:
                    ratio_rows.append([f"{p.numer} / {p.denom}", base, lbl, f"{r0.ratio:.2f} ({r0.low:.2f}-"
                                       f"{r0.high:.2f})", f"{r1.ratio:.2f} ({r1.low:.2f}-{r1.high:.2f})"])
    if ratio_rows:
        lines += [""] + md_table(["pair", "runtime", "res", "ratio as exported (95% CI)", "ratio optimized"],
                                 ratio_rows)
    return "\n".join(lines) + "\n"


def write(a: Analysis, directory: Path) -> str:
    """optimized.csv into `directory`; the section's Markdown ("" for a run without optimized cells)."""
    table = rows(a)
    if not table:
        return ""
    with open(directory / FILE, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for t in table:
            out.writerow([round(t[k], 6) if isinstance(t[k], float) else ("" if t[k] is None else t[k])
                          for k in COLUMNS])
    return markdown(a, W.analyse_why(a), table)
