"""The sweep's three phases (plan, export, time) with a fake device and fake export workers: which cells are stored
with which status, what is printed, and Ctrl-C during a store write. No converter, no runtime, no device lock."""

from __future__ import annotations

import io
import signal

import pytest

from bench import sweep
from bench.store import Store
from devices.base import MeasureError

SMALL = "mobilenetv3_small_075"
MF = "mobileformer_26m"


class FakeDevice:
    name = "fake"
    kind = "fake"  # not "host": no timing-cores lock

    def __init__(self):
        self.ran: list[str] = []

    def can_run(self, fmt: str) -> str | None:
        return "needs macOS" if fmt == "coreml" else None

    def run_group(self, artifacts, *, rounds, per_round, warmup, switch_warmup, threads, timeout, seed,
                  first_round=0):
        from devices.base import Measurement

        out = []
        for artifact in artifacts:
            self.ran.append(artifact)
            if "bad" in artifact:
                out.append(MeasureError("cannot load bad.onnx", "load"))
                continue
            n = rounds * per_round
            out.append(Measurement(samples_ms=[2.0] * n, cpu_samples_ms=[2.0] * n, load_ms=1.0, first_ms=3.0,
                                   warmup=warmup, threads=threads, peak_rss_mb=50.0, overhead_us=0.4, loadavg=0.5,
                                   cpus=[1], rounds=[first_round + i // per_round for i in range(n)],
                                   per_round=per_round, switch_warmup=switch_warmup))
        return out


class FakeExporter:
    """Answers export requests: MF at 96 px fails; SMALL at 96 px exports an artifact that will not load."""

    def __init__(self):
        self.requests: list[dict] = []
        self.killed = 0

    def call(self, req, timeout):
        self.requests.append(req)
        if req["op"] == "info":
            return {"ok": True, "params": 7, "madds": 700}
        h = req["res"][0]
        if req["model"] == MF and h == 96:
            return {"ok": False, "stage": "export", "error": "converter said no"}
        name = "bad" if h == 96 else "good"
        manifest = {"params": 10, "madds": 1000 * h, "export_seconds": 4.2, "parity": {"verdict": "pass"},
                    "file_bytes": 123}
        return {"ok": True, "artifact": f"/art/{req['model']}/{h}/{name}", "manifest": manifest, "cached": h == 64}

    def kill(self):
        self.killed += 1


def setup(tmp_path):
    args = sweep.parse_args(device="fake", models_arg=f"{SMALL},{MF}", formats="onnx,coreml", res="64,96", iters=10,
                            warmup=1)
    opts = sweep.Options(store=tmp_path / "s.sqlite", reports=tmp_path / "reports", artifacts=tmp_path / "a")
    store = Store.open(opts.store)
    order = sweep.shuffled(args.cells(), 7)
    seq = {c.key: i for i, c in enumerate(order)}
    out = io.StringIO()
    from rich.console import Console

    console = Console(file=out, width=300, highlight=False, soft_wrap=True)
    return args, opts, store, order, seq, console, out


def statuses(store):
    return {(r["model"], r["format"], r["height"]): (r["status"], r["stage"], r["madds"]) for r in store.cells("r1")}


def test_plan_export_and_time(tmp_path):
    args, opts, store, order, seq, console, out = setup(tmp_path)
    plan = sweep.plan_cells(order, FakeDevice())
    assert [c.format for c in plan.runnable] == ["onnx"] * 4
    assert [(c.format, why) for c, why in plan.not_run] == [("coreml", "needs macOS")] * 4
    device, exporters = FakeDevice(), [FakeExporter(), FakeExporter()]
    result = sweep.SweepResult("r1", opts.store)
    sweep._work(store, args, opts, "r1", seq, order, device, exporters, sweep._Deferred(), console, result)
    assert statuses(store) == {
        (SMALL, "onnx", 64): ("ok", None, 64000), (SMALL, "onnx", 96): ("failed", "load", 96000),
        (MF, "onnx", 64): ("ok", None, 64000), (MF, "onnx", 96): ("failed", "export", None),
        # not run: the size from the onnx export's manifest, else from the export worker's info request
        (SMALL, "coreml", 64): ("not run: needs macOS", None, 64000),
        (SMALL, "coreml", 96): ("not run: needs macOS", None, 96000),
        (MF, "coreml", 64): ("not run: needs macOS", None, 64000),
        (MF, "coreml", 96): ("not run: needs macOS", None, 700),
    }
    assert result.measured == 2 and sorted(device.ran) == [f"/art/{MF}/64/good", f"/art/{SMALL}/64/good",
                                                          f"/art/{SMALL}/96/bad"]
    infos = [r for e in exporters for r in e.requests if r["op"] == "info"]
    assert infos == [{"op": "info", "model": MF, "overrides": {}, "res": [96, 96]}]
    assert exporters[0].killed == 1  # the first exporter is freed before timing (the caller kills the rest)
    text = out.getvalue()
    for line in (f"  export  {SMALL} onnx 96x96 t1: 4 s, parity pass",
                 f"  failed  {MF} onnx 96x96 t1: [export] converter said no",
                 f"  failed  {SMALL} onnx 96x96 t1: [load] cannot load bad.onnx",
                 f"  ok      {SMALL} onnx 64x64 t1: median 2.00 ms, mean 2.00 ms, cv 0.0%, wall/CPU 1.00",
                 f"  ok      {MF} onnx 64x64 t1: median 2.00 ms, mean 2.00 ms, cv 0.0%, wall/CPU 1.00"):
        assert text.count(line + "\n") == 1, (line, text)
    assert f"  export  {SMALL} onnx 64x64" not in text  # served from the cache: nothing to say


def test_ctrl_c_during_a_store_write_keeps_the_cell_and_stops(tmp_path):
    args, opts, store, order, seq, console, out = setup(tmp_path)
    deferred = sweep._Deferred()
    real_add = store.add_cells

    def add_cells(rows):
        if any(row["status"] == "ok" for row in rows):  # the first measured group: Ctrl-C while it is written
            deferred.handler(signal.SIGINT, None)
            assert deferred.pending
        return real_add(rows)

    store.add_cells = add_cells
    device = FakeDevice()
    result = sweep.SweepResult("r1", opts.store)
    with pytest.raises(KeyboardInterrupt):
        sweep._work(store, args, opts, "r1", seq, order, device, [FakeExporter()], deferred, console, result)
    rows = store.cells("r1")
    assert [r["status"] for r in rows].count("ok") == 2  # the group (both models at 64) written whole, then Ctrl-C
    # every pass had run (each pass of the 64 px group; the 96 px group's artifact failed to load in its first)
    assert len(device.ran) == args.passes * 2 + 1
    assert result.measured == 0 and not deferred.holding and not deferred.pending
