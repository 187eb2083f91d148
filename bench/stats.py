"""Statistics of latency samples, slowdown ratios and crossovers. Pure functions of their inputs (no I/O).

Samples come in rounds (devices/rounds.py): a cell's 100 timed iterations are R rounds of K, interleaved with the
other cells of its group, and every sample carries its round. A run made with `--rounds 1` has one round per cell
(the classic single burst); every definition below says what it does then.

Per cell (summarize):
  mean     the plain average of all timed iterations: "the 100-iteration average" users ask for;
  median, p10, p90   linear-interpolation percentiles (numpy's default, Hyndman-Fan type 7);
  std      sample standard deviation (n - 1);  cv = std / mean;  min, max;
  ci95     95% interval of the mean. With rounds: mean +- t(0.975, R-1) * sd(round means) / sqrt(R), so drift
           between rounds widens it; with one round: t(0.975, n-1) * std / sqrt(n) over the iterations (which
           cannot see drift outside the burst);
  round_cv the spread of the cell's per-round medians: their standard deviation over their median.

Unstable cells. With rounds: the rounds disagree, round_cv above ROUND_CV_BOUND (the bound and the measurement
behind it: docs/bench.md, "Rounds"). A high CV inside a chunk is not by itself a reason: the medians ignore it.
With one round (no rounds to compare), the single-burst rules measured on this shared 2-core VM apply:
  * CV above UNSTABLE_CV = 0.10 (a quiet burst shows 2-6% here; a neighbour's burst inside it 10-130%);
  * with one thread, median wall time more than CONTENTION_BOUND = 5% above median CPU time (a neighbour sharing
    the core stretches every iteration ~1.5x evenly, which the CV misses).
An unstable cell's figures are kept and reported, flagged, never silently dropped.

Ratios (ratio_curve), per resolution, subject over baseline:
  paired rounds (both cells timed in the same group session, >= 2 common rounds): the ratio of the two cells'
           medians in each round (both met the same machine), summarised as the median of the per-round ratios;
           its 95% interval is the distribution-free interval of that median (order statistics of the per-round
           ratios, median_interval); the crossover's interval resamples the rounds (bootstrap);
  unpaired rounds (timed in different sessions, e.g. a group split by a resume): median over median, the interval
           from resampling each cell's per-round medians independently;
  one round: median over median, the interval from resampling iterations (the old single-burst interval);
  aggregates (a cell imported from a program that prints no per-iteration samples, `bench import`): the ratio of
           the printed medians (of the means where either cell has no median), with no interval (NaN), and the
           crossover of a curve with such a point gets no interval either. Reports mark these points.
  Every bootstrap is seeded (N_BOOT replicates), so a report re-renders identically.
Crossover: where ratio - 1 changes sign between two neighbouring resolutions, interpolated linearly in resolution;
none in range otherwise. Its interval: the crossings of the same bootstrap replicate curves.
A point is wide when its interval's half-width exceeds WIDE_HALF_WIDTH of the ratio; the report marks it.
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
ROUND_CV_BOUND = 0.05  # per-round medians of a cell disagreeing more than this: unstable (docs/bench.md, "Rounds")
WIDE_HALF_WIDTH = 0.05  # a ratio point whose 95% interval is wider than +-5% of the ratio is marked wide
AGGREGATES = "aggregates"  # RatioPoint.method of a ratio of two printed aggregates (no samples, no interval)
ADAPT_HALF_WIDTH = 0.03  # a group gets extra rounds while one of its intervals is wider than +-3% (bench/sweep/)


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
    n_rounds: int = 1
    round_cv: float | None = None  # spread of the per-round medians (None with one round)

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t distribution with df degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def by_round(samples: Sequence[float], rounds: Sequence[int] | None) -> dict[int, np.ndarray]:
    """The samples of each round (one round, 0, when rounds are not known)."""
    x = np.asarray(samples, dtype=np.float64)
    if rounds is None or len(rounds) != x.size:
        return {0: x}
    r = np.asarray(rounds)
    return {int(k): x[r == k] for k in np.unique(r)}


def round_medians(samples: Sequence[float], rounds: Sequence[int] | None) -> dict[int, float]:
    return {k: float(np.median(v)) for k, v in by_round(samples, rounds).items()}


def round_cv(samples: Sequence[float], rounds: Sequence[int] | None) -> float | None:
    """Standard deviation of the per-round medians over their median; None with fewer than two rounds."""
    meds = np.asarray(list(round_medians(samples, rounds).values()))
    if meds.size < 2:
        return None
    return float(meds.std(ddof=1) / np.median(meds))


def summarize(samples: Sequence[float], cpu_samples: Sequence[float] | None = None, *, threads: int = 1,
              rounds: Sequence[int] | None = None, unstable_cv: float = UNSTABLE_CV,
              contention_bound: float = CONTENTION_BOUND, round_bound: float = ROUND_CV_BOUND) -> Summary:
    """Statistics of one cell's raw latency samples (at least two), their rounds and CPU-time samples if given."""
    x = np.asarray(samples, dtype=np.float64)
    n = int(x.size)
    if n < 2:
        raise ValueError(f"need at least two samples, got {n}")
    mean = float(x.mean())
    std = float(x.std(ddof=1))
    groups = by_round(x, rounds)
    n_rounds = len(groups)
    if n_rounds >= 2:
        means = np.asarray([g.mean() for g in groups.values()])
        half = t_quantile(0.5 + LEVEL / 2, n_rounds - 1) * float(means.std(ddof=1)) / math.sqrt(n_rounds)
    else:
        half = t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n)
    p10, median, p90 = (float(v) for v in np.percentile(x, [10, 50, 90]))
    cv = std / mean if mean > 0 else float("inf")
    cpu_median = float(np.median(cpu_samples)) if cpu_samples is not None and len(cpu_samples) else None
    contention = median / cpu_median - 1 if cpu_median and threads == 1 else None
    rcv = round_cv(x, rounds) if n_rounds >= 2 else None
    if rcv is not None:
        unstable = rcv > round_bound
    else:
        unstable = cv > unstable_cv or (contention is not None and contention > contention_bound)
    return Summary(n=n, mean=mean, median=median, p10=p10, p90=p90, std=std, min=float(x.min()),
                   max=float(x.max()), cv=cv, ci95_low=mean - half, ci95_high=mean + half, unstable=unstable,
                   cpu_median=cpu_median, contention=contention, n_rounds=n_rounds, round_cv=rcv)


def chunk_excess(samples: Sequence[float], rounds: Sequence[int] | None, positions: int = 3) -> list[float] | None:
    """How much slower the first `positions` timed iterations of a chunk ran than the chunk's median (median over
    the chunks, as fractions: 0.3 = 30% slower). After enough untimed iterations per switch these are ~0; this is
    how the switch warm-up was chosen and how every run checks it. None with one round."""
    groups = by_round(samples, rounds)
    if len(groups) < 2:
        return None
    out = []
    for j in range(positions):
        vals = [g[j] / np.median(g) - 1 for g in groups.values() if g.size > max(j, 2)]
        out.append(float(np.median(vals)) if vals else float("nan"))
    return out


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
    method: str = "rounds"  # rounds (paired per-round ratios) | unpaired (rounds of different sessions) | iterations
    #                          | "aggregates: median" / "aggregates: mean" (no samples on one side: no interval)
    n_rounds: int = 1  # rounds the interval resampled (iterations: 1, aggregates: 0)

    @property
    def aggregates(self) -> bool:
        """The ratio of two printed aggregates: no samples behind it, no interval (low and high are NaN)."""
        return self.method.startswith(AGGREGATES)

    @property
    def half_width(self) -> float:
        """The interval's half-width relative to the ratio."""
        return (self.high - self.low) / 2 / self.ratio if self.ratio > 0 else float("inf")

    @property
    def wide(self) -> bool:
        return self.half_width > WIDE_HALF_WIDTH


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
    def aggregates(self) -> bool:
        """Some point is a ratio of aggregates only (then the crossover has no interval)."""
        return any(p.aggregates for p in self.points)

    @property
    def ratios(self) -> list[float]:
        return [p.ratio for p in self.points]


def _boot_medians(samples: Sequence[float], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return np.median(x[idx], axis=1)


def median_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The distribution-free interval of a median: order statistics x(k) and x(n + 1 - k), with k the largest
    whole number such that P(Binomial(n, 1/2) < k) <= (1 - level) / 2 (n = 20: x(6) and x(15), 95.9%). Exact for
    independent values (per-round ratios are: lag-1 autocorrelation 0.03 measured); it needs no resampling, and
    unlike a percentile bootstrap of a median of 10-20 values it does not come out too narrow."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    k = int(binom.ppf((1 - level) / 2, n, 0.5))  # P(B <= k - 1) <= alpha/2 < P(B <= k)
    k = max(k, 1) if binom.cdf(k - 1, n, 0.5) <= (1 - level) / 2 else max(k - 1, 1)
    return float(v[k - 1]), float(v[n - k])


def paired_round_ratios(a: Sequence[float], a_rounds: Sequence[int], b: Sequence[float],
                        b_rounds: Sequence[int]) -> np.ndarray:
    """median(a in round k) / median(b in round k) for every round both have."""
    ma, mb = round_medians(a, a_rounds), round_medians(b, b_rounds)
    return np.asarray([ma[k] / mb[k] for k in sorted(set(ma) & set(mb))])


@dataclass(frozen=True)
class PointData:
    """One resolution of a ratio curve: both cells' samples, their rounds, and whether their rounds are paired
    (timed in the same group session, so round k of one met the same machine as round k of the other)."""

    numer: Sequence[float] | None  # None: that cell has aggregates only (numer_value / denom_value are used)
    denom: Sequence[float] | None
    numer_rounds: Sequence[int] | None = None
    denom_rounds: Sequence[int] | None = None
    paired: bool = True
    numer_value: float | None = None  # the aggregate compared when a side has no samples
    denom_value: float | None = None
    statistic: str = "median"  # which aggregate numer_value and denom_value are


def ratio_point(x: float, d: PointData, rng: np.random.Generator, n_boot: int,
                level: float = LEVEL) -> tuple[RatioPoint, np.ndarray]:
    """The point estimate, its interval and its bootstrap replicates (see the module docstring for the methods)."""
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    if d.numer is None or d.denom is None:
        ratio = float(d.numer_value / d.denom_value)
        return (RatioPoint(float(x), ratio, math.nan, math.nan, f"{AGGREGATES}: {d.statistic}", 0),
                np.full(n_boot, ratio))
    ra, rb = by_round(d.numer, d.numer_rounds), by_round(d.denom, d.denom_rounds)
    if d.paired and len(set(ra) & set(rb)) >= 2:
        per_round = paired_round_ratios(d.numer, d.numer_rounds, d.denom, d.denom_rounds)
        ratio, reps = float(np.median(per_round)), _boot_medians(per_round, rng, n_boot)
        low, high = median_interval(per_round, level)
        return RatioPoint(float(x), ratio, min(low, ratio), max(high, ratio), "rounds", per_round.size), reps
    elif len(ra) >= 2 and len(rb) >= 2:
        ma = [float(np.median(v)) for v in ra.values()]
        mb = [float(np.median(v)) for v in rb.values()]
        ratio = float(np.median(ma) / np.median(mb))
        reps, method, n = _boot_medians(ma, rng, n_boot) / _boot_medians(mb, rng, n_boot), "unpaired", \
            min(len(ma), len(mb))
    else:
        ratio = float(np.median(d.numer) / np.median(d.denom))
        reps, method, n = _boot_medians(d.numer, rng, n_boot) / _boot_medians(d.denom, rng, n_boot), "iterations", 1
    low, high = (float(v) for v in np.percentile(reps, [lo_q, hi_q]))
    return RatioPoint(float(x), ratio, min(low, ratio), max(high, ratio), method, n), reps


def ratio_curve(xs: Sequence[float], numer: Sequence[Sequence[float]] | None = None,
                denom: Sequence[Sequence[float]] | None = None, *, points: Sequence[PointData] | None = None,
                n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL) -> RatioCurve:
    """The subject-over-baseline ratio at each x, with bootstrap intervals and the crossover of 1.

    Args:
        xs: resolutions, ascending.
        points: per resolution, both cells' samples with their rounds (PointData); or, for samples without rounds,
            numer and denom: raw samples per resolution (the subject's and a baseline's).
    """
    if points is None:
        if numer is None or denom is None or len(numer) != len(denom):
            raise ValueError("give points, or numer and denom of the same length")
        points = [PointData(a, b) for a, b in zip(numer, denom)]
    if len(xs) != len(points):
        raise ValueError("xs and the points must have the same length")
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    reps = np.empty((n_boot, len(xs)))
    pts = []
    for i, d in enumerate(points):
        pt, reps[:, i] = ratio_point(xs[i], d, rng, n_boot, level)
        pts.append(pt)
    found = crossings([p.x for p in pts], [p.ratio for p in pts])
    rep_cross = [crossings(list(xs), list(r)) for r in reps]
    share = float(np.mean([bool(c) for c in rep_cross])) if n_boot else 0.0
    c_low = c_high = None
    if any(p.aggregates for p in pts):  # replicates cannot vary at such a point: no interval, no share
        return RatioCurve(pts, found, None, None, 0.0)
    if found:
        near = [min(c, key=lambda v: abs(v - found[0])) for c in rep_cross if c]
        c_low, c_high = (float(v) for v in np.percentile(near, [lo_q, hi_q]))
        c_low, c_high = min(c_low, found[0]), max(c_high, found[0])
    return RatioCurve(pts, found, c_low, c_high, share)


def spread(ratios: Sequence[float]) -> dict[str, float]:
    """How far a set of run-to-run ratios is from 1: median and max |ratio - 1|, share within 5%."""
    d = np.abs(np.asarray(ratios, dtype=np.float64) - 1.0)
    if d.size == 0:
        return {"n": 0, "median_abs_dev": float("nan"), "max_abs_dev": float("nan"), "within_5pct": float("nan")}
    return {"n": int(d.size), "median_abs_dev": float(np.median(d)), "max_abs_dev": float(d.max()),
            "within_5pct": float(np.mean(d <= 0.05))}


# --------------------------------------------------------------------------------------------- differences
@dataclass(frozen=True)
class Estimate:
    """A statistic of several cells with its 95% interval (bench why's differences, shares and slopes).

    method: "rounds" (every cell timed in one group session: the statistic per round, their median and its
    distribution-free interval, like a ratio), "unpaired" (bootstrap of each cell's per-round medians, resampled
    independently) or "iterations" (one round: bootstrap of the iterations)."""

    value: float
    low: float
    high: float
    method: str = "rounds"
    n_rounds: int = 1


@dataclass(frozen=True)
class CellSamples:
    samples: Sequence[float]
    rounds: Sequence[int] | None = None
    session: str | None = None


def round_statistic(cells: Sequence[CellSamples], fn, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                    level: float = LEVEL) -> Estimate:
    """fn(median of cell 0, median of cell 1, ...) with its interval, the way ratios get theirs: per round when all
    cells were timed in one session (fn of the cells' medians in round k, for every round they share; the median of
    those and its order-statistic interval), else from bootstrap replicates of the cells' medians."""
    groups = [by_round(c.samples, c.rounds) for c in cells]
    sessions = {c.session for c in cells}
    common = sorted(set.intersection(*(set(g) for g in groups))) if groups else []
    if len(sessions) == 1 and None not in sessions and len(common) >= 2:
        per = np.asarray([fn(*(float(np.median(g[k])) for g in groups)) for k in common])
        value = float(np.median(per))
        low, high = median_interval(per, level)
        return Estimate(value, min(low, value), max(high, value), "rounds", len(common))
    rng = np.random.default_rng(seed)
    if all(len(g) >= 2 for g in groups):
        meds = [[float(np.median(v)) for v in g.values()] for g in groups]
        method, n = "unpaired", min(len(m) for m in meds)
    else:
        meds = [list(np.asarray(c.samples, dtype=np.float64)) for c in cells]
        method, n = "iterations", 1
    value = float(fn(*(float(np.median(m)) for m in meds)))
    reps = np.asarray([fn(*row) for row in zip(*(_boot_medians(m, rng, n_boot) for m in meds))])
    low, high = (float(v) for v in np.percentile(reps, [100 * (1 - level) / 2, 100 * (1 + level) / 2]))
    return Estimate(value, min(low, value), max(high, value), method, n)
