"""Statistics of latency samples, slowdown ratios and crossovers. Pure functions of their inputs (no I/O).

Per cell (summarize):
  mean     the plain average of the timed iterations: "the 100-iteration average" users ask for;
  median, p10, p90   linear-interpolation percentiles (numpy's default, Hyndman-Fan type 7);
  std      sample standard deviation (n - 1);  cv = std / mean;
  min, max;
  ci95     95% confidence interval of the mean, mean +- t(0.975, n-1) * std / sqrt(n) (Student t).

Unstable cells, two tests, both from measurement on this shared 2-core VM (other engineers' converters and test
suites keep both cores busy for minutes at a time):
  * CV above UNSTABLE_CV = 0.10. A quiet cell shows a CV of 2-6% here; a neighbour's burst inside the timed
    loop (the process preempted for a 4 ms CFS slice every few iterations) gives 10-130%.
  * with one thread, median wall time more than CONTENTION_BOUND = 5% above median CPU time of the process.
    Measured here: a quiet cell has wall = CPU within 1%; while a neighbour shares the core every iteration is
    stretched by about 1.5x, evenly, so the CV stays low and the CV test alone misses it (two runs of the same
    sweep then differed by 40-50% on cells with a CV under 10%). The median CPU time of a one-thread inference is
    what the model costs when it has the core to itself; wall time above it is time spent waiting for the core.
An unstable cell's figures are kept and reported, flagged, never silently dropped.

Ratios (ratio_curve): the subject's median over a baseline's median at each resolution, with a percentile
bootstrap interval (each cell's raw samples resampled with replacement, medians recomputed, N_BOOT times, seeded,
so a report re-renders identically). The median is used rather than the mean because a shared machine's bursts
land on the mean. Crossover: where ratio - 1 changes sign between two neighbouring resolutions, interpolated
linearly in resolution; none in range otherwise. Its interval comes from the same bootstrap replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from models.common import CONTENTION_BOUND, UNSTABLE_CV  # noqa: E402  (one home for the thresholds)

N_BOOT = 2000
BOOT_SEED = 20240
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    p10: float
    p90: float
    std: float
    min: float
    max: float
    cv: float
    ci95_low: float
    ci95_high: float
    unstable: bool
    cpu_median: float | None = None  # median CPU time per iteration, when given
    contention: float | None = None  # median wall / median CPU - 1 (one thread only)

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t distribution with df degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def summarize(samples: Sequence[float], cpu_samples: Sequence[float] | None = None, *, threads: int = 1,
              unstable_cv: float = UNSTABLE_CV, contention_bound: float = CONTENTION_BOUND) -> Summary:
    """Statistics of one cell's raw latency samples (at least two), and its CPU-time samples if given."""
    x = np.asarray(samples, dtype=np.float64)
    n = int(x.size)
    if n < 2:
        raise ValueError(f"need at least two samples, got {n}")
    mean = float(x.mean())
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n)
    p10, median, p90 = (float(v) for v in np.percentile(x, [10, 50, 90]))
    cv = std / mean if mean > 0 else float("inf")
    cpu_median = float(np.median(cpu_samples)) if cpu_samples is not None and len(cpu_samples) else None
    contention = median / cpu_median - 1 if cpu_median and threads == 1 else None
    unstable = cv > unstable_cv or (contention is not None and contention > contention_bound)
    return Summary(n=n, mean=mean, median=median, p10=p10, p90=p90, std=std, min=float(x.min()),
                   max=float(x.max()), cv=cv, ci95_low=mean - half, ci95_high=mean + half, unstable=unstable,
                   cpu_median=cpu_median, contention=contention)


# --------------------------------------------------------------------------------------------- ratios, crossovers
def crossings(xs: Sequence[float], ratios: Sequence[float], level: float = 1.0) -> list[float]:
    """Where the piecewise-linear curve (xs, ratios) crosses `level`; xs ascending."""
    out = []
    for i in range(len(xs) - 1):
        d0, d1 = ratios[i] - level, ratios[i + 1] - level
        if d0 * d1 < 0:
            out.append(xs[i] + (xs[i + 1] - xs[i]) * d0 / (d0 - d1))
        elif d1 == 0 and 0 < i + 1 < len(xs) - 1 and d0 * (ratios[i + 2] - level) < 0:
            out.append(float(xs[i + 1]))  # touches the level exactly and goes through it
    return out


@dataclass(frozen=True)
class RatioPoint:
    x: float
    ratio: float
    low: float
    high: float


@dataclass(frozen=True)
class RatioCurve:
    points: list[RatioPoint]
    crossings: list[float]  # on the point-estimate curve
    crossing_low: float | None  # bootstrap interval of the (first) crossing, when there is one
    crossing_high: float | None
    crossing_share: float  # share of bootstrap replicate curves that cross 1 somewhere in range

    @property
    def xs(self) -> list[float]:
        return [p.x for p in self.points]

    @property
    def ratios(self) -> list[float]:
        return [p.ratio for p in self.points]


def _boot_medians(samples: Sequence[float], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return np.median(x[idx], axis=1)


def ratio_curve(xs: Sequence[float], numer: Sequence[Sequence[float]], denom: Sequence[Sequence[float]], *,
                n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL) -> RatioCurve:
    """Median(numer[i]) / median(denom[i]) at each x, with bootstrap intervals and the crossover of 1.

    Args:
        xs: resolutions, ascending.
        numer, denom: raw samples per resolution (e.g. the subject's and a baseline's).
    """
    if not (len(xs) == len(numer) == len(denom)):
        raise ValueError("xs, numer and denom must have the same length")
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    reps = np.empty((n_boot, len(xs)))
    points = []
    for i, (a, b) in enumerate(zip(numer, denom)):
        ratio = float(np.median(a) / np.median(b))
        reps[:, i] = _boot_medians(a, rng, n_boot) / _boot_medians(b, rng, n_boot)
        low, high = (float(v) for v in np.percentile(reps[:, i], [lo_q, hi_q]))
        points.append(RatioPoint(float(xs[i]), ratio, low, high))
    found = crossings([p.x for p in points], [p.ratio for p in points])
    rep_cross = [crossings(list(xs), list(r)) for r in reps]
    share = float(np.mean([bool(c) for c in rep_cross])) if n_boot else 0.0
    c_low = c_high = None
    if found:
        near = [min(c, key=lambda v: abs(v - found[0])) for c in rep_cross if c]
        c_low, c_high = (float(v) for v in np.percentile(near, [lo_q, hi_q]))
    return RatioCurve(points, found, c_low, c_high, share)


def spread(ratios: Sequence[float]) -> dict[str, float]:
    """How far a set of run-to-run ratios is from 1: median and max |ratio - 1|, share within 5%."""
    d = np.abs(np.asarray(ratios, dtype=np.float64) - 1.0)
    if d.size == 0:
        return {"n": 0, "median_abs_dev": float("nan"), "max_abs_dev": float("nan"), "within_5pct": float("nan")}
    return {"n": int(d.size), "median_abs_dev": float(np.median(d)), "max_abs_dev": float(d.max()),
            "within_5pct": float(np.mean(d <= 0.05))}
