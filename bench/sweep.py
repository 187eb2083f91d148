"""The resolution sweep: cells, run identity, resume, and the export-then-measure loop.

A cell is (model, overrides, format, converter, precision, resolution, device, threads). A sweep's cells are the
product of its argument lists. Its run id is derived from those arguments (device + a hash), so the same command
finds the same run and only measures the cells not stored yet: that is how a killed sweep resumes. `--new` starts
another run with the same arguments (id suffix -2, -3, ...), e.g. to measure repeatability; without it the latest
run with these arguments is resumed, and a run with nothing left to do only re-renders its report.

Order: cells are measured in an order shuffled with a seed recorded in the run, so the slow drift of a shared
machine (another job starting on the other core) does not land on one model or one resolution. A resumed run
keeps its seed and order. Exports come first, grouped by (model, resolution) so one torch.export capture serves
every format, each in the export worker; then the measuring loop runs on the device.

Formats the device cannot run (Core ML on Linux) are stored as "not run: <reason>" without exporting them.
Failures (export, parity, load, runtime error, hung or crashed runtime) are stored with their stage and error,
and the sweep goes on. Ctrl-C stops at once: every stored cell stays; a cell being measured is dropped and its
write is never torn (writes hold off the interrupt until they commit).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as _dt
import functools
import hashlib
import itertools
import json
import os
import queue
import random
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import models
from bench import stats
from bench.labels import model_label, runtime_label
from bench.store import Store
from bench.why.plan import mode_artifact
from devices.rounds import DEFAULT_PASSES, DEFAULT_PER_ROUND, DEFAULT_ROUNDS, DEFAULT_SWITCH_WARMUP
from devices.subproc import Worker, WorkerError
from export.hostlock import DeviceLock, timing_cores
from export.optimize import counts_of
from models import defaults
from models.common import check_name, git_commit, median
from models.errors import ToolkitError
from models.escape import escape


# --------------------------------------------------------------------------------------------- cells and arguments
@dataclass(frozen=True, order=True)
class Cell:
    model: str
    overrides: tuple[tuple[str, Any], ...]
    format: str
    converter: str
    precision: str
    height: int
    width: int
    device: str
    threads: int
    mode: str = ""  # an execution mode the format declares (FormatSpec.modes: onnx "parallel"); "" = its default
    units: str = ""  # Core ML compute units on a Mac or iPhone (a sweep axis there); "" everywhere else
    optimized: bool = False  # the `--optimize` artifact (export/optimize.py) instead of the plain one

    @property
    def key(self) -> str:
        fields = {"model": self.model, "overrides": dict(self.overrides), "format": self.format,
                  "converter": self.converter, "precision": self.precision, "height": self.height,
                  "width": self.width, "device": self.device, "threads": self.threads}
        if self.mode:  # keys of cells in the default mode stay what they were (stored runs resume)
            fields["mode"] = self.mode
        if self.units:  # only where it applies, so every other cell keeps its key
            fields["units"] = self.units
        if self.optimized:  # likewise: plain cells keep their keys
            fields["optimized"] = True
        return json.dumps(fields, sort_keys=True)

    @property
    def model_label(self) -> str:
        return model_label(self.model, dict(self.overrides))

    @property
    def res(self) -> tuple[int, int]:
        return (self.height, self.width)

    def label(self) -> str:
        mode = (f" {self.mode}" if self.mode else "") + (" optimized" if self.optimized else "")
        return (f"{self.model_label} {runtime_label(self.format, self.converter, self.precision, self.units)}{mode} "
                f"{models.format_resolution(self.res)} t{self.threads}")


@dataclass(frozen=True)
class SweepArgs:
    """What defines a sweep (and its run id). Lists are kept sorted: their order on the command line is moot."""

    device: str
    models: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    formats: tuple[str, ...]
    converters: tuple[str, ...]  # as asked; empty = each format's default
    precisions: tuple[str, ...]
    resolutions: tuple[tuple[int, int], ...]
    threads: tuple[int, ...]
    iterations: int  # timed iterations per cell at least: rounds x per_round
    warmup: int  # untimed runs of each artifact after loading
    rounds: int = DEFAULT_ROUNDS
    per_round: int = DEFAULT_PER_ROUND
    switch_warmup: int = DEFAULT_SWITCH_WARMUP  # untimed runs before every chunk
    max_rounds: int = 2 * DEFAULT_ROUNDS  # a group whose intervals stay wide gets rounds up to this many
    passes: int = DEFAULT_PASSES  # the rounds of a group are spread over this many passes over all groups
    compute_units: tuple[str, ...] = ()  # Core ML cells, one per unit (a device that runs Core ML sets them)
    modes: tuple[str, ...] = ("",)  # runtime execution modes ("" = each format's default; others where declared)
    plan: str = ""  # "" = the full product of the lists; "why" = bench/why/plan.py's subset (bench why)
    optimize: tuple[bool, ...] = (False,)  # plain and/or optimized artifacts (`--optimize off|on|both`)

    def canonical(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("modes", list(self.modes)), ("plan", self.plan),
                                   ("compute_units", list(self.compute_units)),
                                   ("optimize", [bool(o) for o in self.optimize]))
                 if v not in ([""], "", [], [False])}  # absent when default: the hashes of earlier runs stay valid
        return {**extra, "device": self.device, "models": [model_label(m, dict(o)) for m, o in self.models],
                "formats": list(self.formats), "converters": list(self.converters),
                "precisions": list(self.precisions), "resolutions": [models.format_resolution(r)
                                                                     for r in self.resolutions],
                "threads": list(self.threads), "iterations": self.iterations, "warmup": self.warmup,
                "rounds": self.rounds, "per_round": self.per_round, "switch_warmup": self.switch_warmup,
                "max_rounds": self.max_rounds, "passes": self.passes}

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()[:8]

    def cells(self) -> list[Cell]:
        from bench.why.plan import keep
        from export import FORMATS
        from export.quant import supports

        out = []
        for (name, ov), fmt, prec, res, th, mode, opt in itertools.product(
                self.models, self.formats, self.precisions, self.resolutions, self.threads, self.modes, self.optimize):
            spec = FORMATS[fmt]
            if mode and mode not in spec.modes or opt and (_is_probe(name) or prec == "int8"):
                continue  # instruments are timed as they are; an int8 graph is its quantizer's (no --optimize)
            able = [c.name for c in spec.converters if supports(spec, c, prec)]  # int8-only ones: int8 cells
            convs = [c for c in able if c in self.converters] or able[:1]
            units = self.compute_units if fmt == "coreml" and self.compute_units else ("",)
            for conv, u in itertools.product(convs, units):
                cell = Cell(name, ov, fmt, conv, prec, res[0], res[1], self.device, th, mode, u, opt)
                if keep(self.plan, cell, self.threads):
                    out.append(cell)
        return sorted(out)


def _is_probe(name: str) -> bool:
    return models.family_info(models.spec(name).family).role == "probe"


OPTIMIZE_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ToolkitError(f"--{what} is empty")
    return items


def round_settings(iters: int | None, rounds: int | None, per_round: int | None,
                   max_rounds: int | None) -> tuple[int, int, int]:
    """(rounds, per_round, max_rounds) from --iters / --rounds / --per-round / --max-rounds: any two of the first
    three fix the third (iters = rounds x per_round); alone, --iters keeps 10 rounds (or one, below 20)."""
    for flag, v in (("--iters", iters), ("--rounds", rounds), ("--per-round", per_round), ("--max-rounds", max_rounds)):
        if v is not None and (type(v) is not int or v < 1):
            raise ToolkitError(f"{flag} must be a whole number of at least 1, not {v!r}")
    if rounds is None:
        if per_round is not None and iters is not None:
            if iters % per_round:
                raise ToolkitError(f"--iters {iters} is not a multiple of --per-round {per_round}")
            rounds = iters // per_round
        elif per_round is not None:
            rounds = DEFAULT_ROUNDS
        else:
            rounds = DEFAULT_ROUNDS if (iters or 100) >= 2 * DEFAULT_ROUNDS else 1
    if per_round is None:
        total = iters if iters is not None else DEFAULT_ROUNDS * DEFAULT_PER_ROUND
        if total % rounds:
            raise ToolkitError(f"--iters {total} is not a multiple of --rounds {rounds}: pass --per-round instead")
        per_round = total // rounds
    elif iters is not None and iters != rounds * per_round:
        raise ToolkitError(f"--iters {iters} does not equal --rounds {rounds} x --per-round {per_round}")
    if rounds * per_round < 2:
        raise ToolkitError(f"a cell needs at least 2 timed iterations (statistics need two samples), not "
                           f"{rounds} x {per_round}")
    if max_rounds is None:
        max_rounds = 2 * rounds if rounds > 1 else 1
    if max_rounds < rounds:
        raise ToolkitError(f"--max-rounds {max_rounds} is below --rounds {rounds}")
    return rounds, per_round, max_rounds


def pass_count(rounds: int, passes: int | None) -> int:
    """How many passes a group's rounds are spread over: `passes` if given (it must divide the rounds), else the
    largest divisor of the rounds up to DEFAULT_PASSES (10 rounds: 5 passes of 2)."""
    if passes is None:
        return max(d for d in range(1, min(DEFAULT_PASSES, rounds) + 1) if rounds % d == 0)
    if type(passes) is not int or passes < 1 or rounds % passes:
        raise ToolkitError(f"--passes {passes!r} must be a whole number that divides --rounds {rounds}")
    return passes


def parse_args(*, device: str, models_arg: str, formats: str, res: str, iters: int | None = None, warmup: int = 10,
               threads: str | int = "1", converter: str | None = None, precision: str = "fp32",
               rounds: int | None = None, per_round: int | None = None, switch_warmup: int = DEFAULT_SWITCH_WARMUP,
               max_rounds: int | None = None, passes: int | None = None,
               compute_units: str | None = None, optimize: str = "off") -> SweepArgs:
    """Validate the command line's lists into SweepArgs; anything unknown is a ToolkitError naming the valid ones."""
    from export import FORMATS, PRECISIONS, format_spec

    parsed_models = []
    for item in _split(models_arg, "models"):
        name, *pairs = item.split(":")
        models.spec(name)  # unknown names list the valid ones
        ov: dict[str, Any] = {}
        for pair in pairs:
            k, sep, v = pair.partition("=")
            if not sep:
                raise ToolkitError(f"bad model override {pair!r} in {item!r}: expected name:key=value, "
                                   f"e.g. {defaults.SWEEP_MODELS[0]}:tokens=3")
            ov[k.strip()] = v.strip()
        parsed_models.append((name, tuple(sorted(models.check_overrides(name, ov).items()))))
    fmts = [f for f in _split(formats, "formats")]
    if fmts == ["all"]:
        fmts = list(FORMATS)
    for f in fmts:
        format_spec(f)
    resolutions = sorted({models.parse_resolution(r) for r in _split(res, "res")}, key=lambda r: (r[0] * r[1], r))
    for name, _ in parsed_models:
        for r in resolutions:
            models.check_resolution(name, r)
    convs = _split(converter, "converter") if converter else []
    for c in convs:
        if not any(c in {x.name for x in FORMATS[f].converters} for f in fmts):
            valid = sorted({x.name for f in fmts for x in FORMATS[f].converters})
            raise ToolkitError(f"no requested format has a converter {c!r}; valid: {', '.join(valid)}")
    precs = _split(precision, "precision")
    for p in precs:
        if p not in PRECISIONS:
            raise ToolkitError(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS)}")
    try:
        ths = sorted({int(t) for t in _split(str(threads), "threads")})
    except ValueError:
        raise ToolkitError(f"--threads takes whole numbers, not {threads!r}") from None
    if any(t < 1 for t in ths):
        raise ToolkitError("--threads must be at least 1")
    if iters is not None and iters < 2:
        raise ToolkitError(f"--iters must be at least 2 (statistics need two samples), not {iters}")
    if warmup < 0 or switch_warmup < 0:
        raise ToolkitError(f"--warmup and --switch-warmup cannot be negative ({warmup}, {switch_warmup})")
    n_rounds, k, top = round_settings(iters, rounds, per_round, max_rounds)
    if optimize not in OPTIMIZE_CHOICES:
        raise ToolkitError(f"--optimize takes {', '.join(OPTIMIZE_CHOICES)}, not {optimize!r}")
    units: tuple[str, ...] = ()
    if compute_units:
        from devices.apple import check_units

        units = tuple(sorted(set(check_units(_split(compute_units, "compute-units"), "--compute-units"))))
    return SweepArgs(device, tuple(sorted(set(parsed_models))), tuple(sorted(set(fmts))), tuple(sorted(set(convs))),
                     tuple(sorted(set(precs))), tuple(resolutions), tuple(ths), n_rounds * k, int(warmup),
                     n_rounds, k, int(switch_warmup), top, pass_count(n_rounds, passes), units,
                     optimize=OPTIMIZE_CHOICES[optimize])


# --------------------------------------------------------------------------------------------- run identity
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def resolve_run(store: Store, args: SweepArgs, *, run_id: str | None, new: bool, seed: int | None,
                environment: dict[str, Any], argv: list[str] | None, cells_total: int) -> tuple[dict[str, Any], bool]:
    """The run to work on: (run row, created). Same arguments -> same run; --new -> a fresh one."""
    base = f"{args.device}-{args.hash}"
    if run_id is None and not new:
        existing = store.runs_with_hash(args.hash)
        if existing:
            run_id = existing[-1]["run_id"]
    if run_id is not None:
        row = store.run(run_id)
        if row is not None:
            if row["args_hash"] != args.hash:
                raise ToolkitError(f"run {run_id} was made with other arguments ({json.dumps(row['args'])}); "
                                   "use another --run-id or --new")
            if seed is not None and seed != row["seed"]:
                raise ToolkitError(f"run {run_id} is shuffled with seed {row['seed']}, not {seed}; drop --seed to "
                                   "resume it or pass --new")
            return row, False
        candidates: Iterator[str] = iter([run_id])
    else:
        candidates = (base if i == 1 else f"{base}-{i}" for i in itertools.count(1))
    record = {"created": _now(), "args_hash": args.hash, "args": args.canonical(), "argv": argv,
              "seed": seed if seed is not None else secrets.randbelow(2**31), "device": args.device,
              "environment": environment, "git_commit": environment.get("git_commit"), "cells_total": cells_total}
    for rid in candidates:
        if store.add_run({"run_id": rid, **record}):
            return store.run(rid), True
        if run_id is not None:  # created by a concurrent sweep a moment ago
            return resolve_run(store, args, run_id=run_id, new=False, seed=seed, environment=environment,
                               argv=argv, cells_total=cells_total)
    raise AssertionError("unreachable")


def shuffled(cells: list[Cell], seed: int) -> list[Cell]:
    order = sorted(cells)
    random.Random(seed).shuffle(order)
    return order


# --------------------------------------------------------------------------------------------- rows
def _parity(manifest: dict[str, Any] | None) -> dict[str, Any]:
    from export.parity import worst

    w = worst((manifest or {}).get("parity"))
    return {"parity_verdict": ((manifest or {}).get("parity") or {}).get("verdict"),
            "parity_max_rel": w["max_rel"], "parity_cosine": w["cosine"], "parity_top1": w["top1"]}


def _quant(manifest: dict[str, Any] | None) -> str | None:
    """int8 cells: the manifest's op-kind record and parity figures, as the report needs them (JSON)."""
    m = manifest or {}
    q = (m.get("details") or {}).get("int8")
    if m.get("precision") != "int8" or not isinstance(q, dict):
        return None
    p = m.get("parity") or {}
    keep = ("ops", "int8_ops", "float_ops", "float_op_kinds", "conversions", "summary", "counted")
    return json.dumps({**{k: q[k] for k in keep if k in q},
                       "calibration": {k: (q.get("calibration") or {}).get(k) for k in ("source", "n", "digest")},
                       "checkpoint": "sha256" in (m.get("weights") or {}),
                       "quantized": p.get("quantized"), "fp32": p.get("images"), "cross_check": p.get("cross_check")},
                      sort_keys=True, default=str)


def cell_row(run_id: str, seq: int, cell: Cell, *, args: SweepArgs, status: str, manifest: dict | None = None,
             artifact: str | None = None, size: tuple[int, int] | None = None, measurement: Any = None,
             stage: str | None = None, error: str | None = None, session: str | None = None,
             nodes: dict[str, str] | None = None) -> dict[str, Any]:
    """One tidy row of the cells table (`nodes`: the Ray nodes that exported and timed it, --executor ray)."""
    m = manifest or {}
    params, madds = size if size else (m.get("params"), m.get("madds"))
    row: dict[str, Any] = {
        "run_id": run_id, "cell_key": cell.key, "seq": seq, "model": cell.model,
        "overrides": json.dumps(dict(cell.overrides), sort_keys=True), "family": models.spec(cell.model).family,
        "format": cell.format, "converter": cell.converter, "precision": cell.precision, "device": cell.device,
        "threads": cell.threads, "mode": cell.mode or None, "height": cell.height, "width": cell.width,
        "params": params, "madds": madds, "units": cell.units or None, "optimized": 1 if cell.optimized else None,
        "graph": json.dumps(counts_of(manifest), sort_keys=True) if manifest else None,
        "iterations": args.iterations, "warmup": args.warmup, "artifact": artifact,
        "artifact_bytes": m.get("file_bytes"), "export_seconds": m.get("export_seconds"), **_parity(manifest),
        "quant": _quant(manifest),
        "status": status, "stage": stage, "error": error, "finished": _now(),
        "export_node": (nodes or {}).get("export_node"), "timing_node": (nodes or {}).get("timing_node"),
    }
    if measurement is not None:
        rounds = measurement.rounds or None
        s = summary(measurement, cell.threads)
        row.update({
            "iterations": len(measurement.samples_ms), "session": session, "n_rounds": s.n_rounds,
            "per_round": measurement.per_round, "switch_warmup": measurement.switch_warmup, "round_cv": s.round_cv,
            "rounds": json.dumps(rounds) if rounds else None,
            "mean_ms": s.mean, "median_ms": s.median, "p10_ms": s.p10, "p90_ms": s.p90, "std_ms": s.std,
            "min_ms": s.min, "max_ms": s.max, "cv": s.cv, "ci95_low_ms": s.ci95_low, "ci95_high_ms": s.ci95_high,
            "unstable": int(s.unstable), "load_ms": measurement.load_ms, "first_ms": measurement.first_ms,
            "peak_rss_mb": measurement.peak_rss_mb, "overhead_us": measurement.overhead_us,
            "loadavg": measurement.loadavg, "cpus": json.dumps(measurement.cpus),
            "runtime_versions": json.dumps(measurement.runtime_versions, sort_keys=True),
            "samples_ms": json.dumps([round(v, 6) for v in measurement.samples_ms]),
            "cpu_median_ms": s.cpu_median,
            "cpu_samples_ms": json.dumps([round(v, 6) for v in measurement.cpu_samples_ms]),
            "runtime_median_ms": median(measurement.runtime_samples_ms) if measurement.runtime_samples_ms
            else None,
            "device_state": json.dumps(measurement.device_state, sort_keys=True) if measurement.device_state
            else None,
            **({} if measurement.raw_samples else {"raw_samples": 0}),
        })
    return row


def summary(m: Any, threads: int) -> stats.Summary:
    """The statistics of a measurement (bench/stats.py). A program that prints only aggregates, timed in one chunk
    (`--rounds 1` on a phone), gives one value: it is the cell's mean and median, and nothing else is known."""
    if not m.raw_samples and len(m.samples_ms) == 1:
        v = float(m.samples_ms[0])
        return stats.Summary(n=1, mean=v, median=v, p10=None, p90=None, std=None, min=v, max=v, cv=None,
                             ci95_low=None, ci95_high=None, unstable=False)
    return stats.summarize(m.samples_ms, m.cpu_samples_ms or None, threads=threads, rounds=m.rounds or None)


# --------------------------------------------------------------------------------------------- interrupts
class DeviceGone(ToolkitError):
    """The device stopped answering (several transport failures in a row): the sweep stops trying it."""


class _Deferred:
    """Ctrl-C raises at once, except inside `held()` (a store write), where it is raised right after."""

    def __init__(self):
        self.holding = False
        self.pending = False

    def handler(self, signum, frame):
        if self.holding:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    run_id: str
    store: Path
    report: Path | None = None
    answer: list[str] = field(default_factory=list)  # the report's answer, as the console prints it
    created: bool = False
    measured: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    gone: str | None = None  # why the sweep stopped trying the device (DeviceGone), if it did
    seconds: float = 0.0
    report_error: str | None = None


@dataclass
class Options:
    store: Path
    reports: Path
    artifacts: Path
    run_id: str | None = None
    new: bool = False
    seed: int | None = None
    timeout: float = 300.0
    export_timeout: float = 1800.0
    export_jobs: int = 2  # exports run before any timing, so they may use every core
    retry_failed: bool = False
    report: bool = True
    argv: list[str] | None = None
    wait: bool = False  # wait for a device another sweep is timing, instead of stopping
    profiles: Path | None = None  # a device profiles file (default: devices/devices.toml)
    executor: str = "local"  # "local": this machine's export workers and device; "ray": bench/ray_executor.py
    ray_address: str | None = None  # the Ray cluster to join (None: RAY_ADDRESS, else the one started here)


def run(args: SweepArgs, opts: Options, console: Any = None) -> SweepResult:
    """Run (or resume) a sweep, storing each cell as it finishes; render the report at the end."""
    from rich.console import Console

    import devices

    console = console or Console(highlight=False, soft_wrap=True)
    t_start = time.monotonic()
    if opts.run_id is not None:
        check_name(opts.run_id, "run id")
    device = devices.get(args.device, opts.profiles)
    if not args.compute_units and getattr(device, "compute_units", None):  # a Mac: the profile's Core ML units
        args = replace(args, compute_units=tuple(device.compute_units))
    for th in args.threads:
        check = getattr(device, "check_threads", None)
        if check is not None:
            check(th)
    if opts.report:
        _check_reports_folder(opts.reports)
    store = Store.open(opts.store)  # a bad store is said at once, before waiting for the device
    try:
        if opts.executor == "ray":  # the device's lock is taken on the node that holds it, by its timing actor
            from bench import ray_executor

            remote = ray_executor.RayDevice(device, opts, say=console.print)
            try:
                return _run_locked(args, opts, console, remote, store, ray_executor.NodeLock(remote), t_start)
            finally:
                remote.disconnect()
        with DeviceLock(device.name, "a bench run starting", wait=opts.wait, say=console.print) as lock:
            return _run_locked(args, opts, console, device, store, lock, t_start)
    finally:
        store.close()


def _check_reports_folder(reports: Path) -> None:
    """Fail before measuring, not after, when the report could not be written (a plain file, read-only)."""
    probe_dir = reports
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ToolkitError(f"reports folder {reports}: {probe_dir} is not a directory; pass another --reports "
                           "(or --no-report)")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise ToolkitError(f"reports folder {reports}: {probe_dir} is not writable; pass another --reports "
                           "(or --no-report)")


def _run_locked(args: SweepArgs, opts: Options, console: Any, device: Any, store: Store, lock: DeviceLock,
                t_start: float) -> SweepResult:
    cells = args.cells()
    environment = {**device.describe(), "git_commit": git_commit()}
    run_row, created = resolve_run(store, args, run_id=opts.run_id, new=opts.new, seed=opts.seed,
                                   environment=environment, argv=opts.argv, cells_total=len(cells))
    run_id = run_row["run_id"]
    lock.set_owner(f"run {run_id}")
    result = SweepResult(run_id, opts.store, created=created)
    if opts.retry_failed and not created:
        n = store.delete_failed(run_id)
        console.print(f"retrying {n} failed cell(s) of run {run_id}")
    order = shuffled(cells, run_row["seed"])
    seq = {c.key: i for i, c in enumerate(order)}
    done = store.done_keys(run_id)
    todo = [c for c in order if c.key not in done]
    verb = "new run" if created else ("resuming run" if todo else "run")
    console.print(f"{verb} {run_id}: {len(cells)} cells, {len(done)} stored, {len(todo)} to do "
                  f"(shuffle seed {run_row['seed']}); store {opts.store}")

    deferred = _Deferred()
    previous = signal.signal(signal.SIGINT, deferred.handler)
    exporters = [Worker("bench.export_worker", label=f"export worker {i + 1}") for i in range(opts.export_jobs)]
    try:
        if todo:
            _work(store, args, opts, run_id, seq, todo, device, exporters, deferred, console, result)
    except KeyboardInterrupt:
        result.interrupted = True
    except DeviceGone as exc:
        result.gone = str(exc)
    finally:
        for exporter in exporters:
            exporter.kill()
        device.close()
        signal.signal(signal.SIGINT, previous)

    rows = store.cells(run_id)
    result.counts = _counts(rows)
    result.failures = [f"{r['model']} {runtime_label(r['format'], r['converter'], r['precision'], r.get('units'))} "
                       f"{r['height']}x{r['width']} t{r['threads']}: [{r['stage']}] {r['error']}"
                       for r in rows if r["status"] == "failed"]
    if len(rows) == len(cells):
        store.mark_finished(run_id, _now())
    if result.interrupted:
        console.print(f"interrupted: {len(rows)} of {len(cells)} cells are stored in {opts.store}; run the same "
                      "command again to resume")
    elif result.gone:
        console.print(f"stopped: {escape(result.gone, 'terminal')}. {len(rows)} of {len(cells)} cells are stored "
                      f"in {opts.store}; "
                      f"when the device is back, run the same command to resume (add --retry-failed to measure the "
                      f"cells that failed again; check it first with `python -m devices check {device.name}`)",
                      markup=False)
    elif opts.report:
        from bench import report

        try:
            rendered = report.render_report(store, run_id, opts.reports)
            result.report, result.answer = rendered.path, rendered.answer
        except ToolkitError as exc:  # the cells are stored; only the report is missing
            result.report_error = str(exc)
    result.seconds = time.monotonic() - t_start
    return result


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    c = {"ok": 0, "failed": 0, "not run": 0, "unstable": 0}
    for r in rows:
        c["not run" if r["status"].startswith("not run") else r["status"]] += 1
        c["unstable"] += bool(r.get("unstable"))
    return c


@dataclass
class WorkContext:
    """What the three phases of a sweep's work share: where cells are stored, and how a store write is made."""

    store: Store
    args: SweepArgs
    opts: Options
    run_id: str
    seq: dict[str, int]
    deferred: _Deferred
    result: SweepResult
    export_nodes: dict[str, str] = field(default_factory=dict)  # cell key -> the Ray node that exported it
    timed_on: dict[str, str] = field(default_factory=dict)  # artifact -> the Ray node that timed it

    def _nodes(self, cell: Cell, kw: dict[str, Any]) -> dict[str, str]:
        return {"export_node": self.export_nodes.get(cell.key), "timing_node": self.timed_on.get(kw.get("artifact"))}

    def save(self, cell: Cell, **kw: Any) -> None:
        """Store one cell; Ctrl-C during the write is raised right after it commits."""
        with self.deferred.held():
            self.store.add_cell(cell_row(self.run_id, self.seq[cell.key], cell, args=self.args,
                                         nodes=self._nodes(cell, kw), **kw))

    def save_group(self, cells: list[tuple[Cell, dict[str, Any]]]) -> None:
        """Store a group's cells in one transaction: a group is stored whole or not at all (a resumed run re-times
        a group that was cut off, so its members' rounds stay paired)."""
        with self.deferred.held():
            self.store.add_cells([cell_row(self.run_id, self.seq[c.key], c, args=self.args, nodes=self._nodes(c, kw),
                                           **kw) for c, kw in cells])


@dataclass
class Plan:
    runnable: list[Cell]
    not_run: list[tuple[Cell, str]]  # with the device's reason


def _work(store: Store, args: SweepArgs, opts: Options, run_id: str, seq: dict[str, int], todo: list[Cell],
          device: Any, exporters: list[Worker], deferred: _Deferred, console: Any, result: SweepResult) -> None:
    """Plan the cells, export what can run here, store what cannot, then time the exported cells."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    work = WorkContext(store, args, opts, run_id, seq, deferred, result, timed_on=getattr(device, "timed_on", {}))
    plan = plan_cells(todo, device)
    export: Any = export_cells
    if opts.executor == "ray":  # the same steps, the groups as Ray tasks (bench/ray_executor.py)
        from bench import ray_executor

        export = functools.partial(ray_executor.export_cells, steps=(export_groups, export_request, take_export))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[cell]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        artifacts, sizes = export(work, plan.runnable, exporters, progress)
        exporter = exporters[0]  # for the info requests of cells not run here
        _store_not_run(work, plan.not_run, sizes, exporter)
        exporter.kill()  # free its memory (torch, converters) before timing anything
        time_cells(work, todo, artifacts, device, progress)


def plan_cells(todo: list[Cell], device: Any) -> Plan:
    """Which cells run on this device, and which are stored as "not run: <reason>" (device.can_run says why)."""
    plan = Plan([], [])
    for c in todo:
        reason = device.can_run(c.format)
        if reason:
            plan.not_run.append((c, reason))
        else:
            plan.runnable.append(c)
    return plan


def export_cells(work: WorkContext, runnable: list[Cell], exporters: list[Worker],
                 progress: Any) -> tuple[dict[str, tuple[str, dict]], dict[tuple, tuple[int, int]]]:
    """Export the runnable cells in the export workers; store the failures.

    Grouped by model and resolution (one capture serves every format of a group), the groups spread over the
    export workers: nothing is timed yet, so exports may use every core. Returns (cell key -> (artifact, manifest),
    (model, overrides, resolution) -> (params, MAdds)).
    """
    sizes: dict[tuple, tuple[int, int]] = {}
    artifacts: dict[str, tuple[str, dict]] = {}
    task, groups = export_groups(work, runnable, progress)
    idle: queue.Queue[Worker] = queue.Queue()
    for w in exporters:
        idle.put(w)
    pool = concurrent.futures.ThreadPoolExecutor(len(exporters), thread_name_prefix="export")
    try:
        futures = [pool.submit(_export_group, g, idle, work.opts) for g in groups]
        for fut in concurrent.futures.as_completed(futures):
            for cell, reply in fut.result():
                take_export(work, progress, task, cell, reply, artifacts, sizes)
    except BaseException:
        for w in exporters:  # unblock the threads waiting on a child for good, then drop queued groups
            w.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return artifacts, sizes


def export_groups(work: WorkContext, runnable: list[Cell], progress: Any) -> tuple[Any, list[list[Cell]]]:
    """The export phase's progress task and the cells still to export, grouped by model and resolution (one
    torch.export capture serves every format of a group)."""
    grouped = sorted(runnable, key=lambda c: (c.model, c.overrides, c.res, c.format))
    task = progress.add_task("export ", total=len(grouped), cell="")
    groups: dict[tuple, list[Cell]] = {}
    for cell in grouped:
        if work.store.has_cell(work.run_id, cell.key):
            progress.advance(task)
        else:
            groups.setdefault((cell.model, cell.overrides, cell.res), []).append(cell)
    return task, list(groups.values())


def export_request(cell: Cell, opts: Options) -> dict[str, Any]:
    """The export worker's request for one cell (bench/export_worker.py)."""
    return {"op": "export", "model": cell.model, "overrides": dict(cell.overrides), "format": cell.format,
            "converter": cell.converter, "precision": cell.precision, "res": list(cell.res),
            "out": str(opts.artifacts), "optimize": cell.optimized}


def take_export(work: WorkContext, progress: Any, task: Any, cell: Cell, reply: dict[str, Any],
                artifacts: dict[str, tuple[str, dict]], sizes: dict[tuple, tuple[int, int]]) -> None:
    """One export's reply: an artifact to time (into `artifacts`), or a failed cell stored at once."""
    progress.update(task, cell=cell.label())
    manifest = reply.get("manifest")
    if manifest and manifest.get("madds"):
        sizes[(cell.model, cell.overrides, cell.res)] = (manifest["params"], manifest["madds"])
    if reply["ok"]:
        artifacts[cell.key] = (mode_artifact(reply["artifact"], cell.mode), manifest)
        if not reply.get("cached"):
            verdict = (manifest.get("parity") or {}).get("verdict", "?")
            progress.console.print(f"  export  {cell.label()}: {manifest.get('export_seconds', 0):.0f} s, parity "
                                   f"{verdict}", markup=False)
    else:
        work.save(cell, status="failed", stage=reply["stage"], error=reply["error"], manifest=manifest,
                  artifact=reply.get("artifact"))
        progress.console.print(f"  failed  {cell.label()}: [{reply['stage']}] {escape(reply['error'], 'terminal')}",
                               markup=False)
    progress.advance(task)


def _export_group(group: list[Cell], idle: queue.Queue[Worker], opts: Options) -> list[tuple[Cell, dict[str, Any]]]:
    """One group's exports in whichever export worker is idle (a pool thread waits here for one)."""
    worker = idle.get()
    try:
        replies = []
        for cell in group:
            req = export_request(cell, opts)
            try:
                reply = worker.call(req, opts.export_timeout)
            except WorkerError as exc:
                reply = {"ok": False, "stage": "export", "error": f"{exc.stage}: {exc}"}
            replies.append((cell, reply))
        return replies
    finally:
        idle.put(worker)


def _store_not_run(work: WorkContext, not_run: list[tuple[Cell, str]], sizes: dict[tuple, tuple[int, int]],
                   exporter: Worker) -> None:
    """Formats this device cannot run: stored without exporting, with the model's size where it can be known."""
    for cell, reason in not_run:
        size = sizes.get((cell.model, cell.overrides, cell.res)) or work.store.known_size(
            cell.model, json.dumps(dict(cell.overrides), sort_keys=True), cell.height, cell.width)
        if size is None:
            try:
                reply = exporter.call({"op": "info", "model": cell.model, "overrides": dict(cell.overrides),
                                       "res": list(cell.res)}, work.opts.export_timeout)
                size = (reply["params"], reply["madds"]) if reply.get("ok") else None
            except WorkerError:
                size = None
            if size:
                sizes[(cell.model, cell.overrides, cell.res)] = size
        work.save(cell, status=f"not run: {reason}", size=size)


def group_key(cell: Cell) -> tuple:
    """Cells compared with each other: same device, runtime (format, converter, precision), threads, resolution."""
    return (cell.device, cell.format, cell.converter, cell.precision, cell.units, cell.threads, cell.height,
            cell.width)


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """The groups timed together, in the order their first cell comes in `cells` (the run's shuffled order)."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(group_key(c), []).append(c)
    return list(groups.values())


def _group_seed(run_seed: int, cells: list[Cell], first_round: int) -> int:
    text = json.dumps([run_seed, first_round, [c.key for c in cells]])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


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


def _merge(first: Any, more: Any) -> Any:
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


def time_pass(device: Any, cells: list[Cell], paths: list[str], args: SweepArgs, run_seed: int, timeout: float,
              n_rounds: int, first_round: int, say: Any = None) -> list[Any]:
    """One pass over a group: `n_rounds` interleaved rounds numbered from `first_round`; per cell a Measurement or
    a MeasureError. A failure of the whole group (the worker hung or crashed) is retried member by member, so one
    bad artifact costs only its own cell."""
    from devices.base import MeasureError

    # The first pass warms each model up fully after loading; later passes load it again in the same (warm) worker,
    # where the first run plus the switch warm-up before every chunk suffice (the report's chunk check shows it).
    warmup = args.warmup if first_round == 0 else min(args.warmup, args.switch_warmup)

    def call(members: list[int]) -> list[Any]:
        sub = [cells[i] for i in members]
        units = {"units": cells[0].units} if cells[0].units else {}  # only devices that run Core ML take it
        return device.run_group([paths[i] for i in members], rounds=n_rounds, per_round=args.per_round,
                                warmup=warmup, switch_warmup=args.switch_warmup, threads=cells[0].threads,
                                timeout=timeout * len(members) * max(n_rounds / args.rounds, 0.2),
                                seed=_group_seed(run_seed, sub, first_round), first_round=first_round, **units)

    everyone = list(range(len(cells)))
    try:
        return call(everyone)
    except MeasureError as exc:
        if len(cells) == 1 or exc.stage == "transport":  # the device is unreachable: its members would be too
            return [exc] * len(cells)
        if say:
            say(f"  group   {_group_label(cells[0])}: [{exc.stage}] {escape(str(exc), 'terminal')}; timing its "
                "members one by one", markup=False)
        results = []
        for i in everyone:
            try:
                results += call([i])
            except MeasureError as one:
                results.append(one)
        return results


def _absorb(results: list[Any], new: list[Any]) -> list[Any]:
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
            out.append(_merge(old, m) if isinstance(m, Measurement) else m)
    return out


def _group_label(cell: Cell) -> str:
    return (f"{runtime_label(cell.format, cell.converter, cell.precision, cell.units)} "
            f"{models.format_resolution(cell.res)} t{cell.threads}")


def group_id(cells: list[Cell]) -> str:
    """A group's identity in the passes table: its members' cell keys."""
    return hashlib.sha256(json.dumps(sorted(c.key for c in cells)).encode()).hexdigest()[:16]


def time_cells(work: WorkContext, todo: list[Cell], artifacts: dict[str, tuple[str, dict]], device: Any,
               progress: Any) -> None:
    """The measuring loop, in passes: every group (the cells compared with each other) gets `rounds / passes`
    interleaved rounds per pass, the groups of a pass in a fresh shuffled order, so each ratio's rounds are spread
    over the whole timing phase and meet the machine's slow changes too, not one window of a few seconds.

    Each pass of each group is stored at once (store.add_pass) and a resumed run goes on with the passes not stored
    yet. After the scheduled passes, a group with an interval still wider than +-stats.ADAPT_HALF_WIDTH gets
    further passes while it has run fewer than `max_rounds` rounds (the rule: docs/bench.md, "Rounds"); then its
    cells are stored whole. On a host device the loop holds the machine's timing cores.
    """
    from devices.base import MeasureError, Measurement, decode_result, encode_result

    store, args, opts, run_id = work.store, work.args, work.opts, work.run_id
    run_seed = (store.run(run_id) or {}).get("seed") or 0
    cores = timing_cores(f"run {run_id}", say=progress.console.print) if device.kind == "host" else \
        contextlib.nullcontext()
    with cores:  # on this machine: exclusive use of the cores (exports next door wait for the timed loops)
        measure = [c for c in todo if c.key in artifacts and not store.has_cell(run_id, c.key)]
        per_pass = args.rounds // args.passes
        per_cell = (args.iterations + args.warmup + args.passes * (1 + args.switch_warmup)
                    + args.rounds * args.switch_warmup)
        weight = {c.key: (artifacts[c.key][1].get("madds") or 1) * per_cell for c in measure}
        task = progress.add_task("measure", total=sum(weight.values()) or 1, cell="")
        mtask = progress.add_task("  cells", total=len(measure), cell="")
        state: dict[str, dict[str, Any]] = {}
        for g in group_cells(measure):
            gid = group_id(g)
            results: list[Any] = [None] * len(g)
            done = set()
            for pass_no, payload in store.passes(run_id, gid):
                results = _absorb(results, [decode_result(m) for m in payload])
                done.add(pass_no)
            state[gid] = {"cells": g, "results": results, "done": done, "paths": [artifacts[c.key][0] for c in g]}
            for c in g:
                progress.advance(task, weight[c.key] * len(done) / args.passes)

        def finish(gid: str) -> None:
            st = state.pop(gid)
            g, results = st["cells"], st["results"]
            rows = []
            for cell, path, m in zip(g, st["paths"], results):
                manifest = artifacts[cell.key][1]
                if isinstance(m, Measurement):
                    rows.append((cell, {"status": "ok", "manifest": manifest, "artifact": path, "measurement": m,
                                        "session": gid}))
                else:
                    m = m if m is not None else MeasureError("not measured", "run")
                    rows.append((cell, {"status": "failed", "stage": getattr(m, "stage", "run"), "error": str(m),
                                        "manifest": manifest, "artifact": path}))
            work.save_group(rows)
            n_rounds = max((len(set(m.rounds)) for m in results if isinstance(m, Measurement)), default=0)
            progress.console.print(f"  group   {_group_label(g[0])} ({len(g)} models): {n_rounds} rounds of "
                                   f"{args.per_round}", markup=False)
            for cell, m in zip(g, results):
                if isinstance(m, Measurement):
                    s = summary(m, cell.threads)
                    spread = f", rounds disagree {s.round_cv:.1%}" if s.round_cv is not None else \
                        f", cv {s.cv:.1%}" if s.cv is not None else ", one printed aggregate"
                    flag = "" if s.contention is None else f", wall/CPU {1 + s.contention:.2f}"
                    flag += "  UNSTABLE" if s.unstable else ""
                    progress.console.print(f"  ok      {cell.label()}: median {s.median:.2f} ms, mean {s.mean:.2f} ms"
                                           f"{spread}{flag}", markup=False)
                    work.result.measured += 1
                else:
                    progress.console.print(f"  failed  {cell.label()}: [{getattr(m, 'stage', 'run')}] "
                                           f"{escape(str(m), 'terminal')}", markup=False)
                progress.advance(mtask)

        give_up = getattr(device, "give_up_after", None)  # remote kinds: transport failures in a row tolerated
        lost: list[str] = []  # the transport failures since the last group that went through

        def run_pass(gid: str, pass_no: int) -> None:
            st = state[gid]
            g = st["cells"]
            alive = [i for i, m in enumerate(st["results"]) if m is None or isinstance(m, Measurement)]
            if alive:
                progress.update(task, cell=f"pass {pass_no + 1}: {_group_label(g[0])} ({len(alive)} models)")
                new = time_pass(device, [g[i] for i in alive], [st["paths"][i] for i in alive], args, run_seed,
                                opts.timeout, per_pass, pass_no * per_pass, say=progress.console.print)
                if new and all(getattr(m, "stage", None) == "transport" for m in new):
                    # Not a pass: the device could not be reached. Its cells are stored failed (stage transport;
                    # `--retry-failed` measures them again, resuming from the passes already stored).
                    lost.append(str(new[0]))
                    for i, m in zip(alive, new):
                        st["results"][i] = m
                    finish(gid)
                    if give_up and len(lost) >= give_up:
                        raise DeviceGone(f"device {device.name} stopped answering ({len(lost)} transport failures "
                                         f"in a row; last: {lost[-1]})")
                    return
                lost.clear()
                full: list[Any] = [None] * len(g)
                for i, m in zip(alive, new):
                    full[i] = m
                with work.deferred.held():
                    store.add_pass(run_id, gid, pass_no, [encode_result(m) for m in full])
                st["results"] = _absorb(st["results"], full)
            st["done"].add(pass_no)
            if pass_no < args.passes:
                for c in g:
                    progress.advance(task, weight[c.key] / args.passes)

        def is_wide(gid: str) -> list[str]:
            """wide_points of a group, computed once per number of passes it has had."""
            st = state[gid]
            if st.get("wide_at") != len(st["done"]):
                st["wide"], st["wide_at"] = wide_points(st["cells"], st["results"]), len(st["done"])
            return st["wide"]

        rng = random.Random(run_seed)
        pass_no = 0
        while state:
            extra = pass_no >= args.passes
            order = sorted(gid for gid, st in state.items() if pass_no not in st["done"])
            rng.shuffle(order)
            if extra:  # adaptive passes: only the groups whose intervals are still wide
                order = [gid for gid in order if is_wide(gid)]
                if order:
                    progress.console.print(f"  pass    {pass_no + 1}: {len(order)} group(s) with an interval wider "
                                           f"than +-{stats.ADAPT_HALF_WIDTH:.0%} get {per_pass} more round(s)",
                                           markup=False)
            for gid in order:
                if gid in state:  # a group can finish early (its device unreachable)
                    run_pass(gid, pass_no)
            if order and not extra:
                progress.console.print(f"  pass    {pass_no + 1}/{args.passes}: {len(order)} group(s), {per_pass} "
                                       "round(s) each", markup=False)
            pass_no += 1
            if pass_no >= args.passes:
                capped = (pass_no + 1) * per_pass > args.max_rounds
                for gid in [gid for gid in state if capped or (extra and gid not in order)
                            or not is_wide(gid)]:
                    finish(gid)
