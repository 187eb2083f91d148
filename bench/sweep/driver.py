"""A sweep from its arguments to its stored cells and its report: the device and its lock (through the chosen
executor), the run resolved or resumed, then the work in phases: plan, export, the cells not run here, timing."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.labels import runtime_label
from bench.store import Store
from bench.sweep import executors
from bench.sweep.cells import Cell, SweepArgs
from bench.sweep.context import DeviceGone, Options, SweepResult, WorkContext, _Deferred
from bench.sweep.exports import store_not_run
from bench.sweep.plan import plan_cells
from bench.sweep.runs import now, resolve_run, shuffled
from bench.sweep.timing import time_cells
from devices.subproc import Worker
from models.common import check_name, git_commit
from models.errors import ToolkitError
from models.escape import escape


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
        # local: the device's lock here; ray: the device's timing actor holds it on the node the device is attached to
        with executors.get(opts.executor).hold(device, opts, say=console.print) as (timed, lock):
            return _run_locked(args, opts, console, timed, store, lock, t_start)
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

def _run_locked(args: SweepArgs, opts: Options, console: Any, device: Any, store: Store, lock: Any,
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
        store.mark_finished(run_id, now())
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
    export = executors.get(opts.executor).export_cells  # the same steps; under ray the groups are Ray tasks
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[cell]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        artifacts, sizes = export(work, plan.runnable, exporters, progress)
        exporter = exporters[0]  # for the info requests of cells not run here
        store_not_run(work, plan.not_run, sizes, exporter)
        exporter.kill()  # free its memory (torch, converters) before timing anything
        time_cells(work, todo, artifacts, device, progress)
