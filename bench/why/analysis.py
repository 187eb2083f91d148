"""Why the subject slows down on small images: the analysis behind the report section of `bench why`. Pure functions
from a run's analysed rows (bench/analysis.py) and its stored profiles to components, fits, peaks, the feedback path
and the agreement of the two methods (the sentences made of them: bench/why/sentences.py).

Difference method (every runtime, every device): for each Difference a family declares (models/spec.py Ablations),
latency(with) - latency(without) of two override sets of one model, timed in the same interleaved group; per round
the difference of the two cells' medians, summarised as the median of those with the distribution-free interval of
a median (bench/stats.round_statistic: the way ratios get theirs). Its share of the full model's latency is taken
per round the same way; its share of MAdds comes from the counter (the cells' stored MAdds). Per unit (tokens): the
least-squares slope of latency over the unit's values, per round. Profile method: the stored per-component times
of a profiled pass (onnxruntime, ExecuTorch ETDump), bench/why/store.py.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import models
from bench import fit as fitting
from bench import nodecost
from bench.analysis import Analysis, plain_runtime
from bench.stats import CellSamples, round_statistic

PER_UNIT = "per_unit"  # the component name of the per-unit slope in why.csv is f"per_{unit}" ("per_token")
OUTSIDE_OPERATORS = "XNNPACK delegate outside its operators"  # bench/why/worker.py DELEGATE_REST starts so
AGREEMENT_BOUND = 0.10  # the profiled components of a cell must add up to its measured median within this


@dataclass(frozen=True)
class Component:
    """One row of why.csv."""

    model: str
    runtime: str
    height: int
    width: int
    component: str
    method: str  # difference | profile
    ms: float
    ms_low: float | None
    ms_high: float | None
    share_latency: float | None
    share_madds: float | None
    share_low: float | None = None
    share_high: float | None = None
    madds: float | None = None  # the component's multiply-adds (counter), where known
    tool: str = ""  # the profiler, for method = profile


@dataclass
class Why:
    components: list[Component] = field(default_factory=list)
    fits: list[dict[str, Any]] = field(default_factory=list)  # fit.csv rows (+ model role, points)
    peaks: dict[str, float] = field(default_factory=dict)  # runtime -> GMAdd/s
    efficiency: list[dict[str, Any]] = field(default_factory=list)  # per cell: achieved GMAdd/s, share of peak
    feedback: list[dict[str, Any]] = field(default_factory=list)
    modes: list[dict[str, Any]] = field(default_factory=list)  # parallel vs default execution mode, paired
    agreement: list[dict[str, Any]] = field(default_factory=list)  # difference vs profile, per component
    closure: list[dict[str, Any]] = field(default_factory=list)  # profiled sum vs measured median, per cell
    profile_notes: dict[str, str] = field(default_factory=dict)  # format -> what its profiler can(not) resolve
    variants: list[dict[str, Any]] = field(default_factory=list)  # ablation cells: model, runtime, res, ms, accuracy
    node_costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # runtime -> per-node cost (bench/nodecost.py)

    @property
    def empty(self) -> bool:
        return not (self.components or self.fits or self.feedback)


def _frozen(ov: dict[str, Any] | None) -> tuple:
    return tuple(sorted((ov or {}).items()))


def _cs(r: dict[str, Any]) -> CellSamples:
    return CellSamples(r["samples_ms"], r.get("rounds"), r.get("session"))


def _ablations(r: dict[str, Any]):
    """The Ablations of a row's family (None for a family without any, or a model the registry no longer has)."""
    if r["model"] not in models.list_models():
        return None
    return models.family_info(models.spec(r["model"]).family).ablations


def _role(family: str, a: Analysis) -> str | None:
    return a.roles.role.get(family)


def _slope(xs: list[float], ys: tuple[float, ...]) -> float:
    return float(np.polyfit(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), 1)[0])


def analyse_why(a: Analysis, profiles: dict[str, dict[str, Any]] | None = None) -> Why:
    """Everything the report section says, from the analysed run (and its profiles: cell key -> stored profile)."""
    w = Why()
    ok = [r for r in a.rows if r["status"] == "ok" and r.get("samples_ms")]
    idx = {(r["runtime"], r["model"], _frozen(r["overrides"]), r["height"], r["width"]): r for r in ok}
    _differences(a, ok, idx, w)
    _peaks_and_fits(a, ok, w)
    _feedback(a, ok, idx, w)
    _profiles(a, ok, idx, profiles or {}, w)
    return w


def _differences(a: Analysis, ok: list[dict], idx: dict, w: Why) -> None:
    for full in ok:
        ab = _ablations(full)
        if ab is None or full["overrides"]:
            continue
        rt, m, h, wd = full["runtime"], full["model"], full["height"], full["width"]
        total_madds = full["madds"]

        def cell(ov, key=(rt, m, h, wd)):
            return idx.get((key[0], key[1], _frozen(ov), key[2], key[3]))

        present = []
        for d in ab.differences:
            x, y = cell(dict(d.with_overrides)), cell(dict(d.without_overrides))
            if x is None or y is None:
                continue
            ms = round_statistic([_cs(x), _cs(y)], lambda p, q: p - q)
            share = round_statistic([_cs(x), _cs(y), _cs(full)], lambda p, q, f: (p - q) / f)
            dm = (x["madds"] - y["madds"]) if x.get("madds") and y.get("madds") else None
            w.components.append(Component(full["model_label"], rt, h, wd, d.component, "difference", ms.value,
                                          ms.low, ms.high, share.value, dm / total_madds if dm else None,
                                          share.low, share.high, dm))
            present.append(d.component)
        unit = ab.unit_override
        if unit:
            own = models.spec(m).override_defaults.get(unit)
            pts = [(v, cell({unit: v})) for v in ab.unit_values] + [(own, full)]
            pts = [(v, r) for v, r in pts if r is not None and v is not None]
            if len({v for v, _ in pts}) >= 2:
                xs = [float(v) for v, _ in pts]
                ms = round_statistic([_cs(r) for _, r in pts], lambda *ys, xs=xs: _slope(xs, ys))
                share = round_statistic([_cs(r) for _, r in pts] + [_cs(full)],
                                        lambda *ys, xs=xs: _slope(xs, ys[:-1]) / ys[-1])
                dm = _slope(xs, tuple(float(r["madds"]) for _, r in pts)) if all(r.get("madds") for _, r in pts) \
                    else None
                w.components.append(Component(full["model_label"], rt, h, wd, f"per_{unit.rstrip('s')}",
                                              "difference", ms.value, ms.low, ms.high, share.value,
                                              dm / total_madds if dm else None, share.low, share.high, dm))
            for v, r in (pts if len(pts) >= 2 else []):  # a lone full cell (another mode, thread count) is no ablation
                w.variants.append({"model": full["model_label"], "runtime": rt, "height": h, "width": wd,
                                   "variant": f"{unit}={v}", "ms": r["median_ms"],
                                   "accuracy": ab.unit_accuracy.get(int(v))})
        for d in ab.differences:
            r = cell(dict(d.without_overrides))
            if r is not None:
                w.variants.append({"model": full["model_label"], "runtime": rt, "height": h, "width": wd,
                                   "variant": r["model_label"].partition(":")[2] or "full", "ms": r["median_ms"],
                                   "accuracy": None})


def _peaks_and_fits(a: Analysis, ok: list[dict], w: Why) -> None:
    probes: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        if _role(r["family"], a) == "probe" and not r.get("mode") and not nodecost.is_node_probe(r):
            probes[r["runtime"]].append(r)
    for rt, rs in probes.items():
        w.peaks[rt] = fitting.peak_gmadds_per_s([r["madds"] for r in rs], [_cs(r) for r in rs])
    for rt, by_model in a.series.items():
        for label, rs in by_model.items():
            rs = [r for r in rs if r.get("samples_ms")]  # imported aggregates carry no samples to fit
            if not rs or _role(rs[0]["family"], a) == "probe" or not all(r.get("madds") for r in rs):
                continue
            mode = rs[0].get("mode")
            base = plain_runtime(rt.replace(f" {mode}", "", 1) if mode else rt)
            peak = w.peaks.get(base)  # the probe runs in the default mode, on plain artifacts
            for r in rs:
                ach = fitting.achieved_gmadds_per_s(r["madds"], r["median_ms"])
                w.efficiency.append({"model": label, "runtime": rt, "height": r["height"], "width": r["width"],
                                     "gmadds_per_s": ach, "share_peak": ach / peak if peak else None,
                                     "role": _role(r["family"], a), "overrides": bool(r["overrides"])})
            if len({r["madds"] for r in rs}) < 2:
                continue
            f = fitting.fit_latency([r["madds"] / 1e9 for r in rs], [_cs(r) for r in rs])
            w.fits.append({"model": label, "runtime": rt, "fixed_ms": f.fixed_ms, "fixed_low_ms": f.fixed_low_ms,
                           "fixed_high_ms": f.fixed_high_ms, "ms_per_gmadd": f.ms_per_gmadd,
                           "peak_gmadds_per_s": peak, "slope_low": f.slope_low, "slope_high": f.slope_high,
                           "role": _role(rs[0]["family"], a), "overrides": bool(rs[0]["overrides"]),
                           "points": [{"height": r["height"], "width": r["width"], "gmadds": r["madds"] / 1e9,
                                       "ms": r["median_ms"], "fixed_share": f.fixed_ms / r["median_ms"]}
                                      for r in rs]})
    w.node_costs = nodecost.node_costs(a)
    nodecost.annotate_fits(w.fits, a, w.node_costs)


def _feedback(a: Analysis, ok: list[dict], idx: dict, w: Why) -> None:
    for full in ok:
        ab = _ablations(full)
        if ab is None or ab.what_if is None or full["overrides"]:
            continue
        key, value = ab.what_if
        other = idx.get((full["runtime"], full["model"], _frozen({key: value}), full["height"], full["width"]))
        if other is None:
            continue
        saved = round_statistic([_cs(full), _cs(other)], lambda p, q: p - q)
        share = round_statistic([_cs(full), _cs(other)], lambda p, q: (p - q) / p)
        w.feedback.append({"model": full["model_label"], "runtime": full["runtime"], "threads": full["threads"],
                           "mode": full.get("mode") or "default", "format": full["format"],
                           "height": full["height"], "width": full["width"], "full_ms": full["median_ms"],
                           "what_if_ms": other["median_ms"], "saved": saved, "share": share})
        if full.get("mode"):  # the same cells in the runtime's default mode, timed in the same group
            for label, cell in (("as built", full), (f"{key}={value}", other)):
                twin = next((r for r in ok if r["model"] == cell["model"] and r["overrides"] == cell["overrides"]
                             and r["format"] == cell["format"] and r["threads"] == cell["threads"]
                             and r["height"] == cell["height"] and r["width"] == cell["width"]
                             and not r.get("mode") and r["precision"] == cell["precision"]), None)
                if twin is not None:
                    gain = round_statistic([_cs(twin), _cs(cell)], lambda p, q: (p - q) / p)
                    saved = round_statistic([_cs(twin), _cs(cell)], lambda p, q: p - q)
                    w.modes.append({"model": cell["model_label"], "variant": label, "format": cell["format"],
                                    "mode": cell["mode"], "threads": cell["threads"], "height": cell["height"],
                                    "width": cell["width"], "default_ms": twin["median_ms"],
                                    "mode_ms": cell["median_ms"], "gain": gain, "saved": saved})


def _profiles(a: Analysis, ok: list[dict], idx: dict, profiles: dict[str, dict], w: Why) -> None:
    by_key = {r["cell_key"]: r for r in ok}
    for key, p in profiles.items():
        r = by_key.get(key)
        if r is None:
            continue
        if p.get("note"):
            w.profile_notes[r["format"]] = p["note"]
        comps = p.get("components_ms") or {}
        if not comps:
            continue
        madds = p.get("components_madds") or {}
        for comp, ms in comps.items():
            w.components.append(Component(r["model_label"], r["runtime"], r["height"], r["width"], comp, "profile",
                                          ms, None, None, ms / r["median_ms"],
                                          madds[comp] / r["madds"] if comp in madds and r.get("madds") else None,
                                          madds=madds.get(comp), tool=p.get("tool", "")))
        total = p.get("total_ms") or sum(comps.values())
        plain = p.get("plain_ms")
        w.closure.append({"model": r["model_label"], "runtime": r["runtime"], "height": r["height"],
                          "width": r["width"], "profiled_ms": total, "median_ms": r["median_ms"],
                          "tool": p.get("tool", ""), "ok": abs(total / r["median_ms"] - 1) <= AGREEMENT_BOUND,
                          "plain_ms": plain,
                          "ok_plain": abs(total / plain - 1) <= AGREEMENT_BOUND if plain else None})
        ab = _ablations(r)
        if ab is None:
            continue
        for d in ab.differences:
            if _frozen(r["overrides"]) != _frozen(d.with_overrides) or not d.profile \
                    or not any(c in comps for c in d.profile):  # (ETDump splits by operator kind, not component)
                continue
            base = r["model"]
            diff = next((c for c in w.components if c.method == "difference" and c.component == d.component
                         and c.runtime == r["runtime"] and c.height == r["height"] and c.width == r["width"]
                         and c.model == models.model_label(base, {})), None)
            if diff is None:
                continue
            other = idx.get((r["runtime"], base, _frozen(dict(d.without_overrides)), r["height"], r["width"]))
            po = profiles.get(other["cell_key"]) if other is not None else None
            oc = (po or {}).get("components_ms") or {}
            if oc:  # both cells profiled: the difference of the two profiles, and where it lands
                shift = {c: comps.get(c, 0.0) - oc.get(c, 0.0) for c in sorted(set(comps) | set(oc))}
                prof = (p.get("total_ms") or sum(comps.values())) - (po.get("total_ms") or sum(oc.values()))
                how = "profile difference"
            else:  # only this cell: the profile components named for the difference
                shift = {c: comps.get(c, 0.0) for c in d.profile}
                prof = sum(shift.values())
                how = "profile components"
            w.agreement.append({"model": diff.model, "runtime": r["runtime"], "height": r["height"],
                                "width": r["width"], "component": d.component, "difference_ms": diff.ms,
                                "difference_low": diff.ms_low, "difference_high": diff.ms_high,
                                "profile_ms": prof, "profile_parts": list(d.profile), "method": how,
                                "shift": dict(sorted(shift.items(), key=lambda kv: -abs(kv[1]))),
                                "graphs": [(p.get("graph") or {}), ((po or {}).get("graph") or {})],
                                "cells": [r["model_label"], other["model_label"] if other is not None else ""],
                                "inside": diff.ms_low <= prof <= diff.ms_high})
