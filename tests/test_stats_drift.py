"""bench/stats.py on synthetic timings with drift: the single-burst intervals miss the truth, the round ones cover it.

The simulated machine has a speed factor that changes over time (a slow linear drift, a step halfway, bursts of
slowness); every iteration's latency is the model's true latency times that factor times 3% lognormal noise. The
old protocol times cell A in one burst of 100, then cell B; the new one times both in 10 interleaved rounds of 10
(devices/rounds.py, the same plan the worker runs), with the untimed switch warm-up taking machine time too.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats
from devices.rounds import plan, run_in_chunks

TRUE_A, TRUE_B = 3.0, 1.0  # ms: the true ratio is 3
DRIFTS = {
    "linear": lambda t, total: 1 + 0.4 * t / total,  # 40% slower by the end
    "step": lambda t, total: 1.0 if t < total / 2 else 1.5,  # a neighbour starts halfway
    "bursts": lambda t, total: 2.0 if (t // 37) % 9 == 4 else 1.0,  # every ninth stretch of 37 runs 2x slower
}


def interleaved(drift, seed: int, true=(TRUE_A, TRUE_B), rounds=10, per_round=10, switch=2, start=0, total=None):
    """Samples and rounds of each member, timed by the round protocol on the drifting machine."""
    rng = np.random.default_rng(seed)
    total = total or rounds * (per_round + switch) * len(true)
    clock = {"t": start}

    def chunk(i, iterations, warmup):
        clock["t"] += warmup
        wall = []
        for _ in range(iterations):
            wall.append(true[i] * drift(clock["t"], total) * rng.lognormal(0, 0.03))
            clock["t"] += 1
        return wall, []

    recs = run_in_chunks(list(range(len(true))), plan(len(true), rounds, per_round, switch, seed), chunk)
    return [(r["samples_ms"], r["rounds"]) for r in recs]


def one_burst(drift, seed: int, n=100):
    """The old protocol: A in one burst of n, then B (or B first), minutes apart on the machine's clock."""
    rng = np.random.default_rng(seed)
    first, second = (TRUE_A, TRUE_B) if seed % 2 else (TRUE_B, TRUE_A)
    xs = {v: [v * drift(t0 + j, 2 * n) * rng.lognormal(0, 0.03) for j in range(n)]
          for v, t0 in ((first, 0), (second, n))}
    return xs[TRUE_A], xs[TRUE_B]


@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_round_intervals_cover_the_true_ratio_where_burst_intervals_miss_it(name):
    drift = DRIFTS[name]
    seeds = range(120)
    covered_new = covered_old = 0
    for seed in seeds:
        (a, ar), (b, br) = interleaved(drift, seed)
        new, _ = stats.ratio_point(224, stats.PointData(a, b, ar, br), np.random.default_rng(seed), 1000)
        assert new.method == "rounds" and new.n_rounds == 10
        covered_new += new.low <= TRUE_A / TRUE_B <= new.high
        oa, ob = one_burst(drift, seed)
        old, _ = stats.ratio_point(224, stats.PointData(oa, ob), np.random.default_rng(seed), 1000)
        assert old.method == "iterations"
        covered_old += old.low <= TRUE_A / TRUE_B <= old.high
    n = len(seeds)
    assert covered_new / n >= 0.88, f"{name}: round intervals cover the truth in {covered_new}/{n}"
    assert covered_old / n <= 0.15, f"{name}: burst intervals cover the truth in {covered_old}/{n}"


def test_the_ratio_is_the_median_of_per_round_ratios():
    a = [2.0] * 5 + [4.0] * 5 + [3.0] * 5
    b = [1.0] * 5 + [2.0] * 5 + [1.0] * 5
    r = [0] * 5 + [1] * 5 + [2] * 5
    assert list(stats.paired_round_ratios(a, r, b, r)) == [2.0, 2.0, 3.0]
    pt, _ = stats.ratio_point(1, stats.PointData(a, b, r, r), np.random.default_rng(0), 200)
    assert pt.ratio == 2.0 and pt.low <= 2.0 <= pt.high
    # the same samples without rounds: median over median (3 / 1), the old definition
    assert stats.ratio_point(1, stats.PointData(a, b), np.random.default_rng(0), 200)[0].ratio == 3.0
    # rounds of different sessions are not paired: medians of round medians
    unpaired, _ = stats.ratio_point(1, stats.PointData(a, b, r, r, paired=False), np.random.default_rng(0), 200)
    assert unpaired.method == "unpaired" and unpaired.ratio == 3.0


def test_cell_interval_and_instability_come_from_rounds():
    drift = DRIFTS["step"]
    (a, ar), _ = interleaved(drift, 1)
    s = stats.summarize(a, rounds=ar)
    assert s.n == 100 and s.n_rounds == 10
    assert s.round_cv > stats.ROUND_CV_BOUND and s.unstable  # halves 1.5x apart: the rounds disagree
    burst = stats.summarize(a)  # the same samples as one burst: the iteration interval is far narrower
    assert (burst.ci95_high - burst.ci95_low) < (s.ci95_high - s.ci95_low) / 2
    (q, qr), _ = interleaved(lambda t, total: 1.0, 1)
    quiet = stats.summarize(q, rounds=qr)
    assert quiet.round_cv < 0.03 and not quiet.unstable
    assert stats.summarize([1.0, 1.1] * 50).n_rounds == 1  # no rounds: the single-burst rules


def test_a_noisy_chunk_alone_does_not_make_a_round_cell_unstable():
    rng = np.random.default_rng(3)
    xs, rs = [], []
    for r in range(10):
        chunk = list(rng.lognormal(0, 0.02, 10))
        if r == 4:
            chunk[3] *= 5  # one iteration preempted: CV of the whole cell far above 10%
        xs += chunk
        rs += [r] * 10
    s = stats.summarize(xs, rounds=rs)
    assert s.cv > stats.UNSTABLE_CV and not s.unstable


def test_crossover_interval_covers_the_true_crossover_under_drift():
    """Subject/baseline ratios 1.3 ... 0.7 over five resolutions (true crossover at 200 px); each resolution's group
    is timed at another time of a machine whose speed drifts 40% over the run."""
    xs = [128, 160, 192, 224, 256]
    true_ratio = {128: 1.3, 160: 1.15, 192: 1.02, 224: 0.92, 256: 0.85}
    true_cross = 192 + 32 * 0.02 / (0.02 + 0.08)
    drift = DRIFTS["linear"]
    covered = 0
    seeds = range(40)
    for seed in seeds:
        pts = []
        for k, x in enumerate(xs):
            (a, ar), (b, br) = interleaved(drift, seed * 10 + k, true=(true_ratio[x], 1.0), start=k * 240,
                                           total=5 * 240)
            pts.append(stats.PointData(a, b, ar, br))
        curve = stats.ratio_curve(xs, points=pts, n_boot=500, seed=seed)
        assert len(curve.crossings) == 1
        covered += curve.crossing_low <= true_cross <= curve.crossing_high
    assert covered / len(seeds) >= 0.85


def test_chunk_excess_sees_a_cold_start_after_a_switch():
    xs, rs = [], []
    for r in range(10):
        xs += [1.3, 1.1] + [1.0] * 8
        rs += [r] * 10
    excess = stats.chunk_excess(xs, rs)
    assert excess == pytest.approx([0.3, 0.1, 0.0])
    assert stats.chunk_excess([1.0] * 10, None) is None


def test_run_in_chunks_keeps_going_when_one_member_fails_and_cools_down_between_rounds():
    cooled = []

    def chunk(art, n, warmup):
        if art == "bad":
            raise RuntimeError("device vanished")
        return [1.0] * n, [0.9] * n

    recs = run_in_chunks(["ok", "bad"], plan(2, 3, 4, 1, seed=5), chunk, cooldown=cooled.append)
    assert recs[0]["rounds"] == [0] * 4 + [1] * 4 + [2] * 4 and recs[0]["error"] is None
    assert recs[1]["samples_ms"] == [] and "device vanished" in recs[1]["error"]
    assert cooled == [1, 2]
    p = plan(3, 4, 10, 2, seed=7)
    assert all(sorted(o) == [0, 1, 2] for o in p.orders) and len(set(p.orders)) > 1  # a fresh order each round
    assert plan(3, 4, 10, 2, seed=7) == p  # replayable from its seed
