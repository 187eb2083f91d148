"""A timed group's results over its passes: a pass folded in (samples appended, a member that failed once stays
failed), and whether the group's intervals are settled or it gets another pass (the adaptive rule)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

import models
from bench import stats
from bench.sweep.cells import Cell


def wide_points(cells: list[Cell], results: list[Any], roles: dict[str, str] | None = None,
                target: float = stats.ADAPT_HALF_WIDTH) -> list[str]:
    """The intervals of a timed group that are still wider than +-target: every subject / baseline ratio the report
    will print for this group (or, in a group without such a pair, each cell's interval of its mean). Returns a
    label per wide one (empty: the group is settled)."""
    from bench.analysis import BASELINE, SUBJECT, Roles
    from devices.base import Measurement

    roles = roles or Roles.from_registry().role
    ok = [(c, m) for c, m in zip(cells, results) if isinstance(m, Measurement)]
    role = {c.key: roles.get(models.spec(c.model).family) for c, _ in ok}
    subjects = [(c, m) for c, m in ok if role[c.key] == SUBJECT]
    baselines = [(c, m) for c, m in ok if role[c.key] == BASELINE]
    out = []
    if subjects and baselines:
        rng = np.random.default_rng(stats.BOOT_SEED)
        for sc, sm in subjects:
            for bc, bm in baselines:
                pt, _ = stats.ratio_point(0, stats.PointData(sm.samples_ms, bm.samples_ms, sm.rounds or None,
                                                             bm.rounds or None), rng, 500)
                if pt.half_width > target:
                    out.append(f"{sc.model_label}/{bc.model_label} +-{pt.half_width:.1%}")
        return out
    for c, m in ok:
        s = stats.summarize(m.samples_ms, threads=c.threads, rounds=m.rounds or None)
        half = (s.ci95_high - s.ci95_low) / 2 / s.mean
        if s.n_rounds > 1 and half > target:
            out.append(f"{c.model_label} +-{half:.1%}")
    return out

def merge(first: Any, more: Any) -> Any:
    """A member's measurement with the samples of its later rounds appended (load and first run: the first pass's)."""

    return replace(first, samples_ms=first.samples_ms + more.samples_ms,
                   cpu_samples_ms=first.cpu_samples_ms + more.cpu_samples_ms, rounds=first.rounds + more.rounds,
                   runtime_samples_ms=first.runtime_samples_ms + more.runtime_samples_ms,
                   device_state=_merge_state(first.device_state, more.device_state),
                   peak_rss_mb=max((v for v in (first.peak_rss_mb, more.peak_rss_mb) if v is not None), default=None))

def _merge_state(first: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """A phone's state over a cell's passes: the temperature before the first, after the last, every wait."""
    if not first or not more:
        return first or more
    out = {**first, **{k: v for k, v in more.items() if k.endswith("_after") or k.endswith("_after_c")}}
    out["cooldown_waits_s"] = list(first.get("cooldown_waits_s", [])) + list(more.get("cooldown_waits_s", []))
    return out

def absorb(results: list[Any], new: list[Any]) -> list[Any]:
    """Fold one pass into a group's results (None = not run in that pass): samples appended; a member that failed
    once stays failed."""
    from devices.base import Measurement

    out = []
    for old, m in zip(results, new):
        if m is None or (old is not None and not isinstance(old, Measurement)):
            out.append(old)
        elif old is None:
            out.append(m)
        else:
            out.append(merge(old, m) if isinstance(m, Measurement) else m)
    return out
