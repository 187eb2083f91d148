"""The report of several runs side by side, one run per device (`python -m bench report --run A --run B ...`): for
each subject / baseline pair, the slowdown ratio against resolution with one line per device and runtime, and the
crossover per device. "Especially on mobile devices" is a claim across devices; this is where it is checked.

Pure functions from the runs' stored rows (each run analysed exactly as its own report does, bench/analysis.py) to
the comparison, its sentences, its Markdown and its CSV rows; bench/plots.py draws the plot, bench/report.py writes
the folder. A run's device label is its device name, or "device (run id)" when two runs name the same device.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import analysis, stats
from bench.analysis import AGG_MARK, AGG_RULE, IMPORTED, Analysis, Pair, Roles
from bench.writers import RATIO_COLUMNS, md_table, ratio_rows
from models.escape import escape

DEVICE_COLUMNS = ["device", "run_id", *RATIO_COLUMNS]


@dataclass(frozen=True)
class Line:
    """One line of the plot: a pair measured on one device with one runtime."""

    device: str
    run_id: str
    pair: Pair

    @property
    def label(self) -> str:
        return f"{self.device} / {self.pair.runtime}"


@dataclass
class Across:
    analyses: list[Analysis]
    devices: dict[str, str]  # run id -> device label
    comparisons: dict[tuple[str, str], list[Line]] = field(default_factory=dict)  # (subject, baseline) -> lines

    @property
    def subject(self) -> str:
        return self.analyses[0].subject if self.analyses else "the subject"

    @property
    def title(self) -> str:
        return f"Slowdown of {self.subject} vs resolution, per device and runtime"


def analyse_runs(runs: list[tuple[dict[str, Any], list[dict[str, Any]]]], roles: Roles | None = None,
                 include_emulated: bool = False) -> Across:
    """(run, rows) per run, in the order given, as one comparison across devices (emulated cells left out unless
    `include_emulated`, as in a single run's report)."""
    roles = roles or Roles.from_registry()
    analyses = [analysis.analyse(run, rows, roles, include_emulated) for run, rows in runs]
    names = Counter(a.run["device"] for a in analyses)
    devices = {a.run["run_id"]: a.run["device"] if names[a.run["device"]] == 1
               else f"{a.run['device']} ({a.run['run_id']})" for a in analyses}
    ac = Across(analyses, devices)
    for a in analyses:
        for p in a.pairs:
            ac.comparisons.setdefault((p.numer, p.denom), []).append(Line(devices[a.run["run_id"]], a.run["run_id"], p))
    return ac


def answer(ac: Across, strong=analysis.markdown_strong) -> list[str]:
    """One sentence per device and pair (the single-run report's sentence, with its device)."""
    return [f"{strong(line.device)}: {analysis.pair_sentence(line.pair, strong)}"
            for lines in ac.comparisons.values() for line in lines]


def _kind(a: Analysis) -> str:
    env = a.run.get("environment") or {}
    if env.get("kind") == IMPORTED:
        tools = sorted({f["tool"] for f in env.get("imports") or []})
        return f"imported ({', '.join(tools)})"
    return f"measured ({env.get('kind') or 'sweep'})"


def _cell(pt: stats.RatioPoint, unstable: bool) -> str:
    marks = ("*" if unstable else "") + ("~" if pt.wide else "") + (AGG_MARK if pt.aggregates else "")
    interval = "" if pt.aggregates else f" ({pt.low:.2f}-{pt.high:.2f})"
    return f"{pt.ratio:.2f}{marks}{interval}"


def markdown(ac: Across) -> str:
    lines = [f"# {ac.title}", ""]
    lines += md_table(["run", "device", "cells", "measured", "how"],
                      [[a.run["run_id"], ac.devices[a.run["run_id"]], len(a.rows),
                        sum(r["status"] == "ok" for r in a.rows), _kind(a)] for a in ac.analyses])
    lines += [f"- {ac.devices[a.run['run_id']]}: {line}" for a in ac.analyses for line in analysis.emulated_lines(a)]
    if not ac.comparisons:
        lines += [analysis.no_pair_text(ac.analyses[0]) if ac.analyses else "No runs.", ""]
        return "\n".join(lines)
    lines += ["## The answer, per device", ""] + [f"- {s}" for s in answer(ac)] + [""]
    lines += [f"![{ac.title}](ratio.png)", ""]
    lines += [f"## Slowdown ratio ({ac.subject} median / baseline median), per device and runtime", ""]
    for (numer, denom), group in ac.comparisons.items():
        res = sorted({(pt.x, lbl) for line in group for pt, lbl in zip(line.pair.curve.points, line.pair.labels)})
        labels = list(dict.fromkeys(lbl for _, lbl in res))
        body = []
        for line in group:
            at = {lbl: _cell(pt, u) for pt, lbl, u in zip(line.pair.curve.points, line.pair.labels,
                                                           line.pair.unstable)}
            body.append([line.label, *[at.get(lbl, "") for lbl in labels]])
        lines += [f"**{escape(numer, 'markdown')} / {escape(denom, 'markdown')}** (ratio, 95% interval in brackets)",
                  ""]
        lines += md_table(["device / runtime", *labels], body)
    lines += ["## Crossover per device", ""]
    lines += md_table(["device", "runtime", "pair", "crossover", "ratio at the ends"],
                      [[line.device, line.pair.runtime, f"{numer} / {denom}", analysis.crossover_text(line.pair),
                        f"{line.pair.curve.ratios[0]:.2f} at {line.pair.labels[0]}, {line.pair.curve.ratios[-1]:.2f} "
                        f"at {line.pair.labels[-1]}"]
                       for (numer, denom), group in ac.comparisons.items() for line in group])
    pts = [(pt, u) for group in ac.comparisons.values() for line in group
           for pt, u in zip(line.pair.curve.points, line.pair.unstable)]
    if any(u for _, u in pts):
        lines += [f"`*` = involves a cell flagged unstable ({analysis.ROUND_RULE}, or {analysis.UNSTABLE_RULE}).", ""]
    if any(pt.wide for pt, _ in pts):
        lines += [f"`~` = wide: the ratio's 95% interval is wider than +-{stats.WIDE_HALF_WIDTH:.0%} of it.", ""]
    if any(pt.aggregates for pt, _ in pts):
        lines += [AGG_RULE, ""]
    lines += ["Each run is analysed as in its own report (`python -m bench report --run RUN`), which has its cells, "
              "failures and environment. Ratios compare models on the same device and runtime only; latencies of "
              "different devices are never divided by each other.", ""]
    return "\n".join(lines)


def ratio_rows_across(ac: Across) -> list[list[Any]]:
    """ratios.csv of the comparison: the single-run rows, each with its device and run id first."""
    return [[ac.devices[a.run["run_id"]], a.run["run_id"], *row] for a in ac.analyses for row in ratio_rows(a)]
