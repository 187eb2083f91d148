"""The report's analysis: pure functions from a run's stored rows to pairs, ratio curves, crossovers and sentences.

No plotting and no file I/O here (bench/plots.py draws, bench/writers.py writes, bench/report.py orchestrates).
Which families are compared comes from the model registry: the subject is every family whose role is "subject",
the baselines every family whose role is "baseline", and each is named by its display name. A newly registered
baseline family therefore gets its own pairs without a change here.

A "runtime" is a format with its converter and precision (bench/labels.py), plus the thread count when a run has
several. A pair is (runtime, a subject model, a baseline model) over the resolutions both were measured at; its
ratios are the subject's latency over the baseline's (the median of per-round ratios), with 95% intervals
(bench/stats.py); the crossover is where the ratio crosses 1. The x axis is the equivalent square side
sqrt(H * W) in pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import models
from bench import stats
from bench.labels import model_label, res_label, runtime_label
from models.common import median
from models.escape import escape

SUBJECT, BASELINE = "subject", "baseline"
UNSTABLE_RULE = (f"CV above {stats.UNSTABLE_CV:.0%}, or with one thread a median wall time more than "
                 f"{stats.CONTENTION_BOUND:.0%} above the median CPU time")
ROUND_RULE = f"per-round medians disagreeing by more than {stats.ROUND_CV_BOUND:.0%} (CV over rounds)"
IMPORTED = "imported"  # environment["kind"] of a run made by `bench import` (bench/importer.py)
AGG_MARK = "†"  # a point or cell with aggregates only (imported from a program that prints no samples)
AGG_RULE = (f"`{AGG_MARK}` = aggregates only: imported from a program that prints no per-iteration samples "
            "(`bench import`); the ratio is of the printed medians (means where no median is printed), with no "
            "interval.")
PLOT_NAMES = ("latency", "ratio", "crossover", "throughput")  # each is <name>.png in the report folder
EMULATED_RULE = ("timed on an emulated device (qemu-user: every instruction is translated on another CPU, so a time "
                 "there says how fast the emulator was, not how fast any ARM core is)")


def is_emulated(run: dict[str, Any], r: dict[str, Any]) -> bool:
    """The cell was timed on an emulated device: marked by the device (its device_state), or the run's device
    describes itself as emulated (devices/ssh.py, `emulated = true`)."""
    return bool((r.get("device_state") or {}).get("emulated") or (run.get("environment") or {}).get("emulated"))


OPTIMIZED = "optimized"  # in the runtime label of a cell timing an `export --optimize` artifact


def plain_runtime(runtime: str) -> str:
    """The runtime label of the plain artifacts beside an optimized runtime label ("onnx optimized t2" -> "onnx
    t2"); a plain label is returned as it is."""
    return runtime.replace(f" {OPTIMIZED}", "", 1)


def has_samples(r: dict[str, Any]) -> bool:
    """The cell keeps per-iteration samples (every measured cell; not an import of aggregates only)."""
    return r.get("raw_samples", True) is not False and bool(r.get("samples_ms"))


def point_data(x: dict[str, Any], y: dict[str, Any]) -> stats.PointData:
    """Two stored cells as one ratio point's data: their rounds pair only if one group session timed both. When a
    side has aggregates only, the point compares the medians (the means where either has no median)."""
    if not (has_samples(x) and has_samples(y)):
        stat = "median" if x.get("median_ms") is not None and y.get("median_ms") is not None else "mean"
        return stats.PointData(None, None, numer_value=x[f"{stat}_ms"], denom_value=y[f"{stat}_ms"], statistic=stat)
    paired = bool(x.get("session")) and x.get("session") == y.get("session")
    return stats.PointData(x["samples_ms"], y["samples_ms"], x.get("rounds"), y.get("rounds"), paired)


def res_equiv(h: int, w: int) -> float:
    return math.sqrt(h * w)


def join_names(names: list[str], word: str = "or") -> str:
    """"A", "A or B", "A, B or C" (or with "and")."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {word} " + names[-1]


@dataclass(frozen=True)
class Roles:
    """The registered families as the report sees them: family name -> role, family name -> display name."""

    role: Mapping[str, str]
    display: Mapping[str, str]

    @classmethod
    def from_registry(cls) -> Roles:
        fams = models.families()
        return cls({f.name: f.role for f in fams}, {f.name: f.display for f in fams})

    def names(self, role: str) -> list[str]:
        return [self.display[f] for f, r in self.role.items() if r == role]

    @property
    def subject(self) -> str:
        """The subject's display name ("the subject" if no family has that role)."""
        return join_names(self.names(SUBJECT)) if self.names(SUBJECT) else "the subject"

    def baselines(self, word: str = "or") -> str:
        """The baselines' display names, e.g. "A, B or C" ("a baseline" if no family has that role)."""
        return join_names(self.names(BASELINE), word) if self.names(BASELINE) else "a baseline"


@dataclass
class Pair:
    runtime: str
    numer: str  # the subject model's label
    denom: str  # the baseline model's label
    family: str  # the baseline's family
    labels: list[str]  # resolution labels of the points
    curve: stats.RatioCurve
    unstable: list[bool]  # a point involves an unstable cell
    cpu_ratios: list[float | None]  # ratio of CPU-time medians (one thread: the same comparison, minus contention)
    subject: str = ""  # display name of the subject model's family
    baseline: str = ""  # display name of the baseline's family


@dataclass
class Analysis:
    run: dict[str, Any]
    rows: list[dict[str, Any]]
    roles: Roles
    runtimes: list[str] = field(default_factory=list)
    series: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # runtime -> model -> rows
    pairs: list[Pair] = field(default_factory=list)
    emulated: list[dict[str, Any]] = field(default_factory=list)  # measured cells left out (EMULATED_RULE)
    include_emulated: bool = False

    @property
    def subject(self) -> str:
        return self.roles.subject

    @property
    def titles(self) -> dict[str, str]:
        """Plot name -> its title (also the image's alt text in report.md)."""
        return {"latency": "Latency vs resolution (median, band p10-p90)",
                "ratio": f"Slowdown of {self.subject} vs resolution (median of per-round ratios, 95% interval)",
                "crossover": "Crossover resolution per runtime (ratio = 1)",
                "throughput": "Effective throughput: MAdds per millisecond vs resolution"}


def analyse(run: dict[str, Any], rows: list[dict[str, Any]], roles: Roles | None = None,
            include_emulated: bool = False) -> Analysis:
    """The run's rows (as bench/store.py returns them; copied, with labels added) grouped into series and pairs.
    Cells timed on an emulated device stay in `rows` (marked `emulated`) but out of the series, the pairs and so
    the answer, ratios and plots, unless `include_emulated`."""
    roles = roles or Roles.from_registry()
    rows = [dict(r) for r in rows]
    multi_threads = len({r["threads"] for r in rows}) > 1
    for r in rows:
        r["model_label"] = model_label(r["model"], r["overrides"] or {})
        r["runtime"] = runtime_label(r["format"], r["converter"], r["precision"], r.get("units")) + (
            f" {r['mode']}" if r.get("mode") else "") + (f" {OPTIMIZED}" if r.get("optimized") else "") + (
            f" t{r['threads']}" if multi_threads else "")
        r["res_equiv"] = round(res_equiv(r["height"], r["width"]), 1)
        r["res_label"] = res_label(r["height"], r["width"])
        cpu = r.get("cpu_median_ms")
        r["wall_over_cpu"] = round(r["median_ms"] / cpu, 4) if cpu and r.get("median_ms") else None
        r["emulated"] = int(is_emulated(run, r))
    a = Analysis(run, rows, roles, include_emulated=include_emulated)
    ok = [r for r in rows if r["status"] == "ok"]
    a.emulated = [r for r in ok if r["emulated"]]
    if not include_emulated:
        ok = [r for r in ok if not r["emulated"]]
    a.runtimes = sorted({r["runtime"] for r in ok})
    for r in sorted(ok, key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"], r["height"])):
        a.series.setdefault(r["runtime"], {}).setdefault(r["model_label"], []).append(r)
    for rt in a.runtimes:
        by_model = a.series[rt]
        fam = {m: rs[0]["family"] for m, rs in by_model.items()}
        role = {m: roles.role.get(f) for m, f in fam.items()}
        for mf in sorted(m for m in by_model if role[m] == SUBJECT):
            for other in sorted(m for m in by_model if role[m] == BASELINE):
                theirs = {(r["height"], r["width"]): r for r in by_model[other]}
                common = [(r, theirs[(r["height"], r["width"])]) for r in by_model[mf]
                          if (r["height"], r["width"]) in theirs]
                if not common:
                    continue
                curve = stats.ratio_curve([x["res_equiv"] for x, _ in common],
                                          points=[point_data(x, y) for x, y in common])
                cpu = [x["cpu_median_ms"] / y["cpu_median_ms"] if x.get("cpu_median_ms") and y.get("cpu_median_ms")
                       and x["threads"] == 1 else None for x, y in common]
                a.pairs.append(Pair(rt, mf, other, fam[other], [x["res_label"] for x, _ in common], curve,
                                    [bool(x["unstable"] or y["unstable"]) for x, y in common], cpu,
                                    roles.display[fam[mf]], roles.display[fam[other]]))
    return a


# --------------------------------------------------------------------------------------------- sentences
def _times(r: float) -> str:
    return f"{r:.2f}x"


def _ranges(points: list[tuple[float, str]]) -> str:
    return ", ".join(lbl for _, lbl in points)


@dataclass(frozen=True)
class Medium:
    """Where a sentence goes: report.md (stored strings escaped as Markdown text, bold where strong) or the console
    (plain: the printed line is escaped for the terminal where it is printed, models/escape.py). Calling it makes
    a stored string strong; `text` writes one as it is."""

    markdown: bool

    def text(self, value: Any) -> str:
        return escape(value, "markdown") if self.markdown else str(value)

    def __call__(self, value: Any) -> str:
        return f"**{self.text(value)}**" if self.markdown else str(value)


markdown_strong = Medium(markdown=True)
plain = Medium(markdown=False)


def _text(strong: Callable[[str], str], value: Any) -> str:
    return strong.text(value) if isinstance(strong, Medium) else str(value)


def pair_sentence(p: Pair, strong: Callable[[str], str] = markdown_strong) -> str:
    """One sentence answering: slower or faster, where, by how much, and the crossover."""
    pts = list(zip(p.curve.points, p.labels))
    slower = [(pt, lbl) for pt, lbl in pts if pt.ratio > 1]
    faster = [(pt, lbl) for pt, lbl in pts if pt.ratio < 1]
    first, last = pts[0], pts[-1]
    t = functools.partial(_text, strong)
    head = f"On {strong(p.runtime)}, {t(p.numer)} vs {t(p.denom)}: "

    def at(item):
        pt, lbl = item
        return f"{_times(pt.ratio)} at {t(lbl)} ({interval_text(pt)})"

    if len(pts) == 1:
        verb = "slower" if slower else "faster" if faster else "as fast"
        return head + f"{t(p.subject)} is {verb} at the one size measured: {at(first)}."
    if not faster:
        worst = max(slower, key=lambda s: s[0].ratio)
        body = (f"{t(p.subject)} is slower at every size tested ({t(first[1])}-{t(last[1])} px), from {at(first)} "
                f"to {at(last)}; at most {_times(worst[0].ratio)} ({(worst[0].ratio - 1):.0%} slower) at "
                f"{t(worst[1])}. ")
    elif not slower:
        best = min(faster, key=lambda s: s[0].ratio)
        body = (f"{t(p.subject)} is faster at every size tested ({t(first[1])}-{t(last[1])} px), from {at(first)} "
                f"to {at(last)}; at best {_times(best[0].ratio)} at {t(best[1])}. ")
    else:
        worst = max(slower, key=lambda s: s[0].ratio)
        best = min(faster, key=lambda s: s[0].ratio)
        body = (f"{t(p.subject)} is slower at {t(_ranges([(s[0].x, s[1]) for s in slower]))} px (up to "
                f"{at(worst)}) and faster at {t(_ranges([(f[0].x, f[1]) for f in faster]))} px (down to "
                f"{at(best)}). ")
    return head + body + crossover_text(p) + "." + cpu_text(p, t)


def cpu_text(p: Pair, t: Callable[[Any], str] = str) -> str:
    """The same comparison on CPU time (one thread), where it is known: the ratios at both ends and the crossover."""
    pts = [(x, c) for x, c in zip(p.curve.xs, p.cpu_ratios) if c is not None]
    if len(pts) < 2:
        return ""
    cross = stats.crossings([x for x, _ in pts], [c for _, c in pts])
    where = f"crossover at {', '.join(f'{x:.0f}' for x in cross)} px" if cross else "no crossover"
    first, last = p.labels[p.curve.xs.index(pts[0][0])], p.labels[p.curve.xs.index(pts[-1][0])]
    return f" [CPU time: {_times(pts[0][1])} at {t(first)} to {_times(pts[-1][1])} at {t(last)}, {where}.]"


def interval_text(pt: stats.RatioPoint) -> str:
    """"95% CI 1.40-1.52", or "aggregates only, no interval"."""
    return "aggregates only, no interval" if pt.aggregates else f"95% CI {pt.low:.2f}-{pt.high:.2f}"


def crossover_text(p: Pair) -> str:
    c = p.curve
    if not c.crossings:
        return (f"No crossover in range ({c.crossing_share:.0%} of bootstrap replicates cross)" if c.crossing_share
                else "No crossover in range")
    first = c.crossings[0]
    text = (f"Crossover at {first:.0f} px " + ("(aggregates only, no interval)" if c.crossing_low is None
                                               else f"(95% CI {c.crossing_low:.0f}-{c.crossing_high:.0f})"))
    if len(c.crossings) > 1:
        text += " and again at " + ", ".join(f"{x:.0f}" for x in c.crossings[1:]) + " px"
    return text


def noise_lines(a: Analysis, t: Callable[[Any], str] = str) -> list[str]:
    """One sentence on how noisy the machine was during the run, from the cells' round disagreement (runs timed in
    rounds) and the switch warm-up check."""
    ok = [r for r in a.rows if r["status"] == "ok"]
    rcv = sorted(r["round_cv"] for r in ok if r.get("round_cv") is not None)
    if not rcv:
        return []
    worst = max((r for r in ok if r.get("round_cv") is not None), key=lambda r: r["round_cv"])
    unstable = sum(bool(r["unstable"]) for r in ok if r.get("round_cv") is not None)
    n_rounds = sorted({r["n_rounds"] for r in ok if r.get("n_rounds")})
    rounds = f"{n_rounds[0]}" if len(n_rounds) == 1 else f"{n_rounds[0]}-{n_rounds[-1]}"
    level = "quiet" if median(rcv) <= stats.ROUND_CV_BOUND / 3 else "noisy" if median(rcv) > stats.ROUND_CV_BOUND \
        else "moderately noisy"
    text = (f"Machine noise during this run: {level}. A cell's per-round medians varied by {median(rcv):.1%} "
            f"(median over {len(rcv)} cells, {rounds} rounds each) and by up to {worst['round_cv']:.1%} "
            f"({t(worst['model_label'])} {t(worst['runtime'])} {t(worst['res_label'])}); {unstable} cell(s) flagged "
            f"unstable for {ROUND_RULE}.")
    wide = [(p, pt, lbl) for p in a.pairs for pt, lbl in zip(p.curve.points, p.labels) if pt.wide]
    if wide:
        text += (f" {len(wide)} ratio point(s) have a 95% interval wider than +-{stats.WIDE_HALF_WIDTH:.0%} and are "
                 "marked `~` in the ratio tables.")
    ex = [e for e in (stats.chunk_excess(r["samples_ms"], r.get("rounds")) for r in ok if r.get("rounds")) if e]
    if ex:
        first = median(e[0] for e in ex)
        sw = sorted({r["switch_warmup"] for r in ok if r.get("switch_warmup") is not None})
        text += (f" After {', '.join(map(str, sw))} untimed iteration(s) per switch, the first timed iteration of a "
                 f"chunk ran {first:+.1%} against its chunk's median (median over cells).")
    return [text]


def contention_lines(a: Analysis) -> list[str]:
    """How much a busy machine inflated the wall-clock figures of single-burst cells (one thread: median wall /
    median CPU). Runs timed in rounds say it with noise_lines instead."""
    ok = [r for r in a.rows if r["status"] == "ok" and r.get("round_cv") is None]
    unstable = [r for r in ok if r["unstable"]]
    inflation = sorted(r["wall_over_cpu"] for r in ok if r["wall_over_cpu"] and r["threads"] == 1)
    if not unstable or not inflation:
        return []
    mid, top = median(inflation), inflation[-1]
    head = f"{len(unstable)} of {len(ok)} measured cells were unstable ({UNSTABLE_RULE}). "
    if top - 1 <= stats.CONTENTION_BOUND:
        return [head + f"Median wall and CPU time agree within {top - 1:.0%}: the spread comes from bursts inside "
                "the timed loops (a high CV), which the medians used for the ratios largely ignore."]
    return [head + f"With one thread, a cell's median wall time exceeded its median CPU time by {mid - 1:.0%} "
            f"(median over cells) and by up to {top - 1:.0%}: time the process waited while other work had the "
            "core. The CPU-time ratios (in brackets above, and in the tables below) make the same comparison "
            "without that wait."]


def answer(a: Analysis, strong: Callable[[str], str] = markdown_strong) -> list[str]:
    """The answer, one item per point (report.md's bullets; the console's lines with `strong=plain`); empty when
    no subject / baseline pair was measured (see no_pair_text) but for why emulated cells were left out."""
    if not a.pairs:
        return emulated_lines(a)
    pairs = a.pairs
    if str((a.run.get("args") or {}).get("plan", "")).startswith("why"):
        # a why run's ablation variants are there to be differenced: the answer compares the subject as built
        # (every pair is still in the ratio tables and ratios.csv)
        pairs = [p for p in pairs if ":" not in p.numer] or pairs
    items = [pair_sentence(p, strong) for p in pairs]
    if len(pairs) < len(a.pairs):
        items.append(f"The {len(a.pairs) - len(pairs)} comparisons of the ablation variants with the baselines are "
                     "in the ratio tables below and in ratios.csv.")
    return (items + _marks(a) + emulated_lines(a) + noise_lines(a, functools.partial(_text, strong))
            + contention_lines(a))


def emulated_lines(a: Analysis) -> list[str]:
    """Why cells timed on an emulated device are (or, when asked, are not) left out of the answer."""
    if not a.emulated:
        return []
    if a.include_emulated:
        return [f"**These figures include {len(a.emulated)} cell(s) {EMULATED_RULE}**: they were asked for "
                "(`--include-emulated`); read them as the emulator's speed, never as a device's latency."]
    return [f"{len(a.emulated)} cell(s) were {EMULATED_RULE}. They are stored (results.csv marks them "
            "`emulated`) but left out of this answer, the ratios and the plots; `python -m bench report "
            "--include-emulated` shows them."]


def _marks(a: Analysis) -> list[str]:
    items = []
    if any(any(p.unstable) for p in a.pairs):
        items.append("Points that involve a cell flagged unstable are marked `*` in the ratio tables below.")
    if any(p.curve.aggregates for p in a.pairs):
        items.append(f"Points that involve a cell with aggregates only are marked `{AGG_MARK}` in the ratio tables "
                     "below: their ratios compare the programs' printed medians (or means) and have no interval.")
    return items


def console_lines(a: Analysis) -> list[str]:
    """The answer as `bench run` and `bench report` print it."""
    return [f"- {item}" for item in answer(a, plain)]


def no_pair_text(a: Analysis) -> str:
    return (f"No {a.subject} / {a.roles.baselines()} pair was measured on a common runtime, so there is no ratio to "
            "report." + "".join(f" {line}" for line in emulated_lines(a)))


def overhead(a: Analysis) -> dict[str, Any] | None:
    ok = [r for r in a.rows if r["status"] == "ok" and r.get("overhead_us") is not None]
    if not ok:
        return None
    oh = median(r["overhead_us"] for r in ok)
    fastest = min(ok, key=lambda r: r["median_ms"])
    return {"overhead_us": oh, "fastest_ms": fastest["median_ms"],
            "fastest": f"{fastest['model_label']} {fastest['runtime']} {fastest['res_label']}",
            "share": oh / 1e3 / fastest["median_ms"]}
