"""Where a sweep's two kinds of work run. An executor is a module with two functions:

    hold(device, opts, say)   a context manager yielding (the device as the timing phase calls it, its lock): the
                              lock is held for the whole run and named after it (`lock.set_owner`)
    export_cells(work, runnable, exporters, progress)
                              the export phase: the runnable cells exported (bench/sweep/exports.py's steps, the
                              failures stored as they come back); returns (cell key -> (artifact, manifest),
                              (model, overrides, resolution) -> (params, MAdds))

  local  this machine's export workers and its device (the default: `make bench` needs no cluster)
  ray    exports as Ray tasks on any node, the device's groups in a Ray actor on the node that offers
         `device:<name>` (docs/cluster.md); Ray is imported only when this one is chosen

Everything else (plan, run identity and resume, the pass schedule, the store, written by this process alone) is the
sweep's own and the same under both.
"""

from __future__ import annotations

from types import ModuleType

from models.errors import ToolkitError

NAMES = ("local", "ray")


def get(name: str) -> ModuleType:
    """The executor called `name` (one line naming the valid ones otherwise)."""
    if name == "local":
        from bench.sweep.executors import local

        return local
    if name == "ray":
        from bench.sweep.executors import ray

        return ray
    raise ToolkitError(f"unknown executor {name!r}; valid: {', '.join(NAMES)}")
