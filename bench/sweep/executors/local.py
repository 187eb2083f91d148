"""The local executor (the default): exports in this machine's export worker processes, timing on the device as
this machine reaches it, under the device's lock here (export/hostlock.py)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
from collections.abc import Iterator
from typing import Any

from bench.sweep.cells import Cell
from bench.sweep.context import Options, WorkContext
from bench.sweep.exports import export_groups, export_request, take_export
from devices.subproc import Worker, WorkerError
from export.hostlock import DeviceLock


@contextlib.contextmanager
def hold(device: Any, opts: Options, say: Any) -> Iterator[tuple[Any, Any]]:
    """The device as the sweep times it, and its lock: this machine's lock of the device (--wait waits for it)."""
    with DeviceLock(device.name, "a bench run starting", wait=opts.wait, say=say) as lock:
        yield device, lock


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
