"""The export phase's steps, the same under every executor (bench/sweep/executors/): the cells still to export
grouped by (model, resolution), so one torch.export capture serves every format of a group; the export worker's
request for a cell (bench/export_worker.py); a reply taken (an artifact to time, or a failed cell stored at once);
and the cells the device cannot run, stored without exporting them."""

from __future__ import annotations

import json
from typing import Any

from bench.sweep.cells import Cell
from bench.sweep.context import Options, WorkContext
from bench.why.plan import mode_artifact
from devices.subproc import Worker, WorkerError
from models.escape import escape


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

def store_not_run(work: WorkContext, not_run: list[tuple[Cell, str]], sizes: dict[tuple, tuple[int, int]],
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
