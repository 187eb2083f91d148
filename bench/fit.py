"""The fixed cost and the peak: latency(resolution) = fixed + per-MAdd x MAdds(resolution), and the device's measured
multiply-add peak. Pure functions (no I/O).

Fit: Theil-Sen (the median of the pairwise slopes; intercept = median of y - slope x), robust to one bad point,
on the cells' medians against their MAdds in G. Its 95% interval: percentile bootstrap, each replicate drawing every
cell's per-round medians with replacement (rounds of different resolutions were timed in different groups, so they
are resampled independently), N_BOOT replicates, seeded. With two resolutions the fit is the line through them.

Peak: the probe (the family with role "probe") is a 1.2 G multiply-add GEMM timed in every group of the run; the peak
of a runtime and thread count is its MAdds over the best per-round median of all its cells ("best of several").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.stats import BOOT_SEED, LEVEL, CellSamples, by_round

N_BOOT = 1000


@dataclass(frozen=True)
class Fit:
    fixed_ms: float
    fixed_low_ms: float
    fixed_high_ms: float
    ms_per_gmadd: float
    slope_low: float
    slope_high: float
    n_points: int

    def predict(self, gmadds: float) -> float:
        return self.fixed_ms + self.ms_per_gmadd * gmadds


def theil_sen(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of the Theil-Sen line; needs two distinct x."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(xa.size, 1)
    keep = xa[j] != xa[i]
    if not keep.any():
        raise ValueError("a fit needs at least two distinct x values")
    slope = float(np.median((ya[j] - ya[i])[keep] / (xa[j] - xa[i])[keep]))
    return float(np.median(ya - slope * xa)), slope


def fit_latency(gmadds: Sequence[float], cells: Sequence[CellSamples], *, n_boot: int = N_BOOT,
                seed: int = BOOT_SEED, level: float = LEVEL) -> Fit:
    """latency = fixed + ms_per_gmadd x GMAdds over cells at different resolutions, with bootstrap intervals."""
    if len(gmadds) != len(cells) or len(set(gmadds)) < 2:
        raise ValueError("a fit needs cells at two or more different MAdds")
    y = [float(np.median(c.samples)) for c in cells]
    a, b = theil_sen(gmadds, y)
    rng = np.random.default_rng(seed)
    meds = [np.asarray([float(np.median(v)) for v in by_round(c.samples, c.rounds).values()]) for c in cells]
    reps = np.empty((n_boot, 2))
    for k in range(n_boot):
        yb = [float(np.median(m[rng.integers(0, m.size, m.size)])) for m in meds]
        reps[k] = theil_sen(gmadds, yb)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    (a_lo, b_lo), (a_hi, b_hi) = np.percentile(reps, lo, axis=0), np.percentile(reps, hi, axis=0)
    return Fit(a, min(float(a_lo), a), max(float(a_hi), a), b, min(float(b_lo), b), max(float(b_hi), b), len(cells))


def best_round_ms(c: CellSamples) -> float:
    """The best (lowest) per-round median of a cell: the probe's "best of several"."""
    return min(float(np.median(v)) for v in by_round(c.samples, c.rounds).values())


def peak_gmadds_per_s(madds: Sequence[int], cells: Sequence[CellSamples]) -> float:
    """The measured peak: the probe's MAdds over its best per-round median, best over its cells (G per second)."""
    if not cells:
        raise ValueError("no probe cell")
    return max(m / 1e9 / (best_round_ms(c) / 1e3) for m, c in zip(madds, cells))


def achieved_gmadds_per_s(madds: float, ms: float) -> float:
    return madds / 1e9 / (ms / 1e3) if ms > 0 else float("nan")
