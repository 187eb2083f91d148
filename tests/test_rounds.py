"""The round protocol in the sweep: settings, groups, adaptive rounds, a group that fails whole, and the host
worker timing a real group of artifacts interleaved."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bench import sweep
from bench.store import Store
from devices.base import MeasureError, Measurement
from models.errors import ToolkitError

SMALL = "mobilenetv3_small_075"
MF = "mobileformer_26m"


@pytest.mark.parametrize("given,expected", [
    ((None, None, None, None), (10, 10, 20)),  # the defaults: 10 x 10, up to 20 rounds
    ((100, 1, None, None), (1, 100, 1)),  # one burst: the classic protocol
    ((None, 1, 100, None), (1, 100, 1)),  # --rounds 1 --per-round 100
    ((200, None, None, None), (10, 20, 20)),
    ((10, None, None, None), (1, 10, 1)),  # too few iterations to split
    ((None, 5, 4, 5), (5, 4, 5)),  # --max-rounds = --rounds: no adaptive rounds
])
def test_round_settings(given, expected):
    assert sweep.round_settings(*given) == expected


@pytest.mark.parametrize("given,needle", [((105, 10, None, None), "not a multiple of --rounds 10"),
                                          ((100, 10, 20, None), "does not equal --rounds 10 x --per-round 20"),
                                          ((None, 10, None, 5), "--max-rounds 5 is below --rounds 10"),
                                          ((None, 1, 1, None), "at least 2 timed iterations")])
def test_bad_round_settings_are_one_line(given, needle):
    with pytest.raises(ToolkitError, match=needle):
        sweep.round_settings(*given)


def test_groups_are_the_cells_compared_with_each_other():
    args = sweep.parse_args(device="host", models_arg=f"{SMALL},{MF}", formats="onnx,tflite", res="64,96")
    groups = sweep.group_cells(sweep.shuffled(args.cells(), 3))
    assert len(groups) == 4 and all(len(g) == 2 for g in groups)
    assert all(len({sweep.group_key(c) for c in g}) == 1 and {c.model for c in g} == {SMALL, MF} for g in groups)
    assert args.canonical()["rounds"] == 10 and args.iterations == 100


class GroupDevice:
    """Answers run_group with ratio MF/SMALL = 3 times a per-round factor; fails whole groups if told to."""

    name, kind = "fake", "fake"

    def __init__(self, noise=0.0, fail_groups=False):
        self.calls: list[tuple[int, int, int]] = []  # (members, rounds, first_round)
        self.noise, self.fail_groups = noise, fail_groups
        self.rng = np.random.default_rng(0)

    def run_group(self, artifacts, *, rounds, per_round, warmup, switch_warmup, threads, timeout, seed,
                  first_round=0):
        self.calls.append((len(artifacts), rounds, first_round))
        if self.fail_groups and len(artifacts) > 1:
            raise MeasureError("worker killed by signal 11", "crash")
        out = []
        factors = self.rng.lognormal(0, self.noise, size=(len(artifacts), rounds))
        for j, a in enumerate(artifacts):
            base = 3.0 if MF in a else 1.0
            samples = [base * factors[j, r] for r in range(rounds) for _ in range(per_round)]
            out.append(Measurement(samples_ms=samples, load_ms=1, first_ms=1, warmup=warmup, threads=threads,
                                   rounds=[first_round + r for r in range(rounds) for _ in range(per_round)],
                                   per_round=per_round, switch_warmup=switch_warmup))
        return out


def _group():
    args = sweep.parse_args(device="fake", models_arg=f"{SMALL},{MF}", formats="onnx", res="64")
    cells = args.cells()
    return args, cells, [f"/art/{c.model}" for c in cells]


def _time(tmp_path, device, run_id="r1"):
    """time_cells on the one group of _group(), into a store at tmp_path; returns (store, console text)."""
    from rich.console import Console
    from rich.progress import Progress

    args, cells, paths = _group()
    opts = sweep.Options(store=tmp_path / "s.sqlite", reports=tmp_path / "r", artifacts=tmp_path / "a")
    store = Store.open(opts.store)
    out = io.StringIO()
    console = Console(file=out, width=300, highlight=False, soft_wrap=True)
    work = sweep.WorkContext(store, args, opts, run_id, {c.key: i for i, c in enumerate(cells)}, sweep._Deferred(),
                             sweep.SweepResult(run_id, opts.store))
    with Progress(console=console) as progress:
        sweep.time_cells(work, cells, {c.key: (p, {"madds": 1}) for c, p in zip(cells, paths)}, device, progress)
    return store, out.getvalue()


def test_rounds_are_spread_over_passes_and_a_quiet_group_gets_no_extra(tmp_path):
    args, _, _ = _group()
    assert (args.rounds, args.passes, args.max_rounds) == (10, 5, 20)
    quiet = GroupDevice(noise=0.001)
    store, text = _time(tmp_path, quiet)
    assert quiet.calls == [(2, 2, 0), (2, 2, 2), (2, 2, 4), (2, 2, 6), (2, 2, 8)]
    rows = store.cells("r1")
    assert len(rows) == 2 and all(r["rounds"] == [k for k in range(10) for _ in range(10)] for r in rows)
    assert "group   onnx 64x64 t1 (2 models): 10 rounds of 10" in text and "rounds disagree" in text


def test_a_noisy_group_gets_extra_passes_up_to_the_cap(tmp_path):
    noisy = GroupDevice(noise=0.3)
    store, text = _time(tmp_path, noisy)
    assert [c[2] for c in noisy.calls] == list(range(0, 20, 2))  # 5 scheduled passes, then 5 more: 20 rounds
    assert "interval wider than +-3% get 2 more round(s)" in text
    assert all(set(r["rounds"]) == set(range(20)) for r in store.cells("r1"))


def test_a_sweep_killed_between_passes_resumes_with_the_next_pass(tmp_path):
    class Dies(GroupDevice):
        def run_group(self, artifacts, **kw):
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().run_group(artifacts, **kw)

    dies = Dies(noise=0.001)
    with pytest.raises(KeyboardInterrupt):
        _time(tmp_path, dies)
    store = Store.open(tmp_path / "s.sqlite")
    assert store.cells("r1") == [] and len(store.conn.execute("SELECT * FROM passes").fetchall()) == 2
    again = GroupDevice(noise=0.001)
    store, _ = _time(tmp_path, again)
    assert [c[2] for c in again.calls] == [4, 6, 8]  # the two stored passes are not timed again
    assert all(r["rounds"] == [k for k in range(10) for _ in range(10)] for r in store.cells("r1"))


def test_a_group_that_fails_whole_is_timed_member_by_member():
    args, cells, paths = _group()
    dev = GroupDevice(fail_groups=True)
    said = []
    results = sweep.time_pass(dev, cells, paths, args, 1, 60, 2, 0, say=lambda *a, **k: said.append(a[0]))
    assert dev.calls == [(2, 2, 0), (1, 2, 0), (1, 2, 0)]
    assert all(isinstance(r, Measurement) for r in results) and "one by one" in said[0]


def test_a_group_is_stored_whole_with_its_session(tmp_path):
    args, cells, paths = _group()
    store = Store.open(tmp_path / "s.sqlite")
    results = sweep.time_pass(GroupDevice(noise=0.001), cells, paths, args, 1, 60, 10, 0)
    rows = [sweep.cell_row("r", i, c, args=args, status="ok", measurement=m, session="abc")
            for i, (c, m) in enumerate(zip(cells, results))]
    assert store.add_cells(rows) == 2 and store.add_cells(rows) == 0
    stored = store.cells("r")
    assert {r["session"] for r in stored} == {"abc"} and all(r["n_rounds"] == 10 for r in stored)
    assert all(r["rounds"] == [k for k in range(10) for _ in range(10)] for r in stored)
    from bench.analysis import analyse

    a = analyse({"run_id": "r"}, stored)
    (pair,) = a.pairs
    assert pair.curve.points[0].method == "rounds" and pair.curve.points[0].ratio == pytest.approx(3.0, rel=0.01)


def test_a_stopped_worker_never_starts_again():
    """Ctrl-C during exports: a pool thread about to send the next group's request must not start a fresh export
    worker (a sweep that printed "interrupted" once hung until that export finished)."""
    from devices.subproc import Worker, WorkerError

    w = Worker("devices.worker", label="export worker 1")
    w.stop()
    with pytest.raises(WorkerError, match="was stopped") as exc:
        w.call({"op": "nothing"}, 5)
    assert exc.value.stage == "stopped" and w.pid is None
