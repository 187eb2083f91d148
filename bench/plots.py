"""The report's PNG plots, drawn from an Analysis (bench/analysis.py) with matplotlib's Agg backend.

Every x axis is the equivalent square side sqrt(H * W) in pixels. One panel per runtime (latency, ratio,
throughput); the crossover plot has one row per pair.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.across import Across
from bench.analysis import Analysis


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = min(max(n, 1), 3)
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(n == 0 and ax is flat[0])
    return fig, flat


def _title(fig, a: Analysis, key: str, panels: int) -> None:
    import textwrap

    fig.suptitle(textwrap.fill(a.titles[key], 55 * min(max(panels, 1), 3)), fontsize=10)


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


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finish(fig, axes, a: Analysis, kind: str, path: Path) -> None:
    """The common end of the per-runtime plots: placeholder when empty, title, save, close."""
    if not a.runtimes:
        _empty(axes[0], "no measured cells")
    _title(fig, a, kind, len(a.runtimes))
    _save(fig, path)


def _no_pair(a: Analysis) -> str:
    return f"no {a.subject} / baseline pair measured"


def _v(value: float | None) -> float:
    return math.nan if value is None else value


def plot_latency(a: Analysis, path: Path) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = _grid(len(a.runtimes))
    for ax, rt in zip(axes, a.runtimes):
        xs_all = []
        for m, rs in a.series[rt].items():
            xs = [r["res_equiv"] for r in rs]
            xs_all += xs
            # a cell imported with aggregates only may lack a median (then its mean) and p10 / p90 (no band)
            ys = [_v(r["median_ms"] if r["median_ms"] is not None else r["mean_ms"]) for r in rs]
            line, = ax.plot(xs, ys, marker="o", ms=3, label=m)
            ax.fill_between(xs, [_v(r["p10_ms"]) for r in rs], [_v(r["p90_ms"]) for r in rs], color=line.get_color(),
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


def plot_ratio(a: Analysis, path: Path) -> None:
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
            mark_points(ax, p.curve.points, line.get_color())
            for x in p.curve.crossings:
                ax.axvline(x, color=line.get_color(), ls=":", lw=1)
            cpu = [(x, c) for x, c in zip(xs, p.cpu_ratios) if c is not None]
            if cpu:
                ax.plot([x for x, _ in cpu], [c for _, c in cpu], ls="--", lw=1, color=line.get_color(),
                        label=f"{p.numer} / {p.denom} (CPU time)")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(rt)
        ax.set_ylabel(f"latency ratio (> 1: {a.subject} slower)")
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    if not rts:
        _empty(axes[0], _no_pair(a))
    _title(fig, a, "ratio", len(rts))
    _save(fig, path)


def mark_points(ax, points, color) -> None:
    """Wide intervals (over +-5%): hollow rings; aggregates only (no interval): hollow squares. Never hidden."""
    for keep, marker in ((lambda q: q.wide, "o"), (lambda q: q.aggregates, "s")):
        sel = [q for q in points if keep(q)]
        if sel:
            ax.plot([q.x for q in sel], [q.ratio for q in sel], ls="none", marker=marker, ms=8, mfc="none",
                    color=color)


def plot_crossover(a: Analysis, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.5 * max(len(a.pairs), 2) + 1.6))
    xs = sorted({x for p in a.pairs for x in p.curve.xs})
    lo, hi = (xs[0], xs[-1]) if xs else (0, 1)
    for i, p in enumerate(a.pairs):
        c = p.curve
        if c.crossings:
            x = c.crossings[0]
            err = None if c.crossing_low is None else [[x - c.crossing_low], [c.crossing_high - x]]
            ax.errorbar([x], [i], xerr=err, fmt="o" if err else "s", mfc=None if err else "none", capsize=4,
                        color="C0")
            ax.annotate(f"{x:.0f} px" + ("" if err else " (aggregates only)"), (x, i), textcoords="offset points",
                        xytext=(6, 6), fontsize=8)
        else:
            side = f"{p.subject} slower" if all(r > 1 for r in c.ratios) else (
                f"{p.subject} faster" if all(r < 1 for r in c.ratios) else "")
            ax.text(lo, i, f"none in range ({side})" if side else "none in range", va="center", fontsize=8,
                    color="gray")
    ax.set_yticks(range(len(a.pairs)))
    ax.set_yticklabels([f"{p.runtime}: {p.numer} / {p.denom}" for p in a.pairs], fontsize=8)
    ax.set_xlim(lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    ax.set_ylim(-0.8, max(len(a.pairs), 1) - 0.2)
    if not a.pairs:
        _empty(ax, _no_pair(a))
    else:
        _xaxis(ax, xs)
        ax.invert_yaxis()
    ax.set_title(a.titles["crossover"])
    _save(fig, path)


def plot_throughput(a: Analysis, path: Path) -> None:
    fig, axes = _grid(len(a.runtimes))
    for ax, rt in zip(axes, a.runtimes):
        xs_all = []
        for m, rs in a.series[rt].items():
            rs = [r for r in rs if r.get("madds") and (r["median_ms"] or r.get("mean_ms"))]  # aggregates: a mean
            xs = [r["res_equiv"] for r in rs]
            xs_all += xs
            ax.plot(xs, [r["madds"] / 1e6 / (r["median_ms"] or r["mean_ms"]) for r in rs], marker="o", ms=3,
                    label=m)
        ax.set_title(rt)
        ax.set_ylabel("MAdds (millions) per ms of median latency")
        ax.set_ylim(bottom=0)
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    _finish(fig, axes, a, "throughput", path)


def plot_devices(ac: Across, path: Path) -> None:
    """The report across devices: one panel per subject / baseline pair, one line per device and runtime."""
    import textwrap

    keys = list(ac.comparisons)
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        xs_all = []
        for line in ac.comparisons[key]:
            c = line.pair.curve
            xs_all += c.xs
            drawn, = ax.plot(c.xs, c.ratios, marker="o", ms=3, label=line.label)
            ax.fill_between(c.xs, [q.low for q in c.points], [q.high for q in c.points], color=drawn.get_color(),
                            alpha=0.15)
            mark_points(ax, c.points, drawn.get_color())
            for x in c.crossings:
                ax.axvline(x, color=drawn.get_color(), ls=":", lw=1)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(f"{key[0]} / {key[1]}", fontsize=9)
        ax.set_ylabel(f"latency ratio (> 1: {ac.subject} slower)")
        _xaxis(ax, xs_all)
        ax.legend(fontsize=7)
    if not keys:
        _empty(axes[0], f"no {ac.subject} / baseline pair measured")
    fig.suptitle(textwrap.fill(ac.title + " (95% interval; hollow square: aggregates only, no interval)",
                               55 * min(max(len(keys), 1), 3)), fontsize=10)
    _save(fig, path)


PLOTTERS = {"latency": plot_latency, "ratio": plot_ratio, "crossover": plot_crossover, "throughput": plot_throughput}


def write_plots(a: Analysis, directory: Path) -> None:
    """<name>.png for every plot of the report."""
    for name, plot in PLOTTERS.items():
        plot(a, directory / f"{name}.png")
