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

The package, in the order a sweep uses it:

    cells.py      Cell, SweepArgs and parse_args (the command line's lists, validated)
    runs.py       run identity and resume (resolve_run), the shuffled order
    driver.py     run(): the device and its lock, the run, then the phases below
    plan.py       which cells run on the device; the groups timed together
    exports.py    the export phase's steps (groups, requests, replies taken, cells not run here)
    timing.py     the timing phase: interleaved rounds in passes, stored pass by pass
    merge.py      a group's results over its passes; whether its intervals are settled
    rows.py       a cell as a row of the store
    context.py    Options, SweepResult, the WorkContext every store write goes through, the interrupt rule
    executors/    where exports and timing run: local (this machine) and ray (a cluster, docs/cluster.md)

Its names are re-exported here (`from bench import sweep; sweep.parse_args(...)`); the modules import each other by
their own names, never this file, so importing one does not import the lot twice over.
"""

from bench.sweep import executors
from bench.sweep.cells import OPTIMIZE_CHOICES, Cell, SweepArgs, _split, parse_args, pass_count, round_settings
from bench.sweep.context import DeviceGone, Options, SweepResult, WorkContext, _Deferred
from bench.sweep.driver import _work, run
from bench.sweep.executors.local import export_cells
from bench.sweep.exports import export_groups, export_request, store_not_run, take_export
from bench.sweep.merge import absorb, wide_points
from bench.sweep.plan import Plan, group_cells, group_id, group_key, group_label, plan_cells
from bench.sweep.rows import cell_row, summary
from bench.sweep.runs import now, resolve_run, shuffled
from bench.sweep.timing import time_cells, time_pass

__all__ = ["OPTIMIZE_CHOICES", "Cell", "DeviceGone", "Options", "Plan", "SweepArgs", "SweepResult", "WorkContext",
           "_Deferred", "_split", "_work", "absorb", "cell_row", "executors", "export_cells", "export_groups",
           "export_request", "group_cells", "group_id", "group_key", "group_label", "now", "parse_args",
           "pass_count", "plan_cells", "resolve_run", "round_settings", "run", "shuffled", "store_not_run",
           "summary", "take_export", "time_cells", "time_pass", "wide_points"]
