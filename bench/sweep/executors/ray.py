"""The Ray executor of a sweep (`bench run --executor ray [--ray-address ADDR]`, docs/cluster.md).

The sweep's plan, run identity, resume, pass schedule and store are bench/sweep/'s, unchanged: this module only
replaces where the two kinds of work run (the executor interface: bench/sweep/executors/__init__.py).

- Exports are Ray tasks (one CPU each) that any node may run. A task runs one (model, resolution) group of cells in
  a fresh export worker process on its node (bench/export_worker.py, so a converter that crashes still costs one
  cell) and returns the replies and its node id. Ray retries a task whose node died on another node. Artifacts are
  written to the `--artifacts` folder, which every node sees at the same path (a shared folder: docs/cluster.md).
- Timing runs in one Ray actor per device, which needs the custom resource `device:<name>` (1 unit): only the node
  started with `--resources '{"device:<name>": 1}'` can hold it, and only one actor can hold it at a time across
  the cluster, so two groups never time at once on a device. The actor takes the device's lock on its node and, for
  the host, this machine's timing cores while it times (export/hostlock.py).
- The driver alone writes the SQLite store, pass by pass: `RayDevice` stands in for the device in the sweep's
  timing loop (bench/sweep/timing.time_cells), so resume, `--retry-failed` and the report do not change.

A node that dies while it times fails that group's cells with stage `transport` naming the node; the sweep then
stops trying the device (the rest of its cells stay unstored) and the same command with `--retry-failed` completes
the run once the node is back, resuming from the passes already stored.

Ray is imported only inside the functions here, and this module only when `--executor ray` is chosen.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from bench.sweep.exports import export_groups, export_request, take_export
from devices.cluster import connect, offered, resource
from devices.subproc import Worker, WorkerError, one_line
from models.errors import ToolkitError

READY_TIMEOUT_S = 180.0  # the timing actor's start on its node (a process importing the device code)
EXPORT_RETRIES = 3  # Ray re-runs an export task whose node died, on another node, this many times


# --------------------------------------------------------------------------------------------- exports
def _export_task(requests: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """One group's exports on whichever node Ray chose, in a fresh export worker process (killed at the end)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    worker = Worker("bench.export_worker", label=f"export worker on {socket.gethostname()}")
    replies = []
    try:
        for req in requests:
            try:
                replies.append(worker.call(req, timeout))
            except WorkerError as exc:
                replies.append({"ok": False, "stage": "export", "error": f"{exc.stage}: {exc}"})
    finally:
        worker.kill()
    return {"node": node, "replies": replies}


def export_cells(work: Any, runnable: list[Any], exporters: list[Worker],
                 progress: Any) -> tuple[dict[str, tuple[str, dict]], dict[tuple, tuple[int, int]]]:
    """The local executor's export_cells over the cluster: a Ray task per (model, resolution) group; the replies are
    taken (and failures stored) by the driver as they come back, with the same steps (bench/sweep/exports.py)."""
    ray = connect(work.opts.ray_address)
    sizes: dict[tuple, tuple[int, int]] = {}
    artifacts: dict[str, tuple[str, dict]] = {}
    task, groups = export_groups(work, runnable, progress)
    remote = ray.remote(num_cpus=1, max_retries=EXPORT_RETRIES)(_export_task)
    pending = {remote.remote([export_request(c, work.opts) for c in g], work.opts.export_timeout): g
               for g in groups}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ready[0])
            try:
                out = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - the task's nodes died more often than Ray retries
                out = {"node": None, "replies": [{"ok": False, "stage": "transport",
                                                  "error": f"export task lost: {one_line(exc)}"}] * len(group)}
            for cell, reply in zip(group, out["replies"]):
                if out["node"]:
                    work.export_nodes[cell.key] = out["node"]
                take_export(work, progress, task, cell, reply, artifacts, sizes)
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    return artifacts, sizes


# --------------------------------------------------------------------------------------------- timing
@contextlib.contextmanager
def hold(device: Any, opts: Any, say: Any) -> Iterator[tuple[Any, Any]]:
    """The device timed through the cluster: its timing actor holds the device's lock on the node it is attached
    to; the actor is stopped and the cluster left at the end."""
    remote = RayDevice(device, opts, say=say)
    try:
        yield remote, NodeLock(remote)
    finally:
        remote.disconnect()


class _DeviceActor:
    """Runs on the node that holds `device:<name>`: the device object, its lock on that node, its timed groups."""

    def __init__(self, name: str, profiles: str | None):
        import ray

        import devices

        self.node = ray.get_runtime_context().get_node_id()
        self.device = devices.get(name, profiles)
        self.lock: Any = None

    def start(self, owner: str, wait: bool) -> dict[str, Any]:
        """Take the device's lock on this node; what the node and device say about themselves (or an error)."""
        from export.hostlock import DeviceLock

        try:
            self.lock = DeviceLock(self.device.name, owner, wait=wait).__enter__()
            return {"ok": True, "node": self.node, "host": socket.gethostname(), "kind": self.device.kind,
                    "describe": self.device.describe(),
                    "compute_units": list(getattr(self.device, "compute_units", None) or [])}
        except ToolkitError as exc:
            return {"ok": False, "error": str(exc)}

    def set_owner(self, owner: str) -> None:
        if self.lock is not None:
            self.lock.set_owner(owner)

    def can_run(self, fmt: str) -> str | None:
        return self.device.can_run(fmt)

    def run_group(self, paths: list[str], kw: dict[str, Any]) -> dict[str, Any]:
        from devices.base import MeasureError, encode_result
        from export.hostlock import timing_cores

        cores = timing_cores(f"ray timing actor of {self.device.name}", say=lambda _: None) \
            if self.device.kind == "host" else contextlib.nullcontext()
        try:
            with cores:
                results = self.device.run_group(paths, **kw)
        except MeasureError as exc:
            return {"ok": False, "stage": exc.stage, "error": str(exc)}
        return {"ok": True, "members": [encode_result(m) for m in results]}

    def close(self) -> None:
        self.device.close()
        if self.lock is not None:
            self.lock.__exit__(None, None, None)
            self.lock = None


class RayDevice:
    """The sweep's device when it is timed through the cluster: each call goes to the device's timing actor.

    `kind` is "ray" (the driver takes no lock of this machine's cores: the actor takes them on its node);
    `timed_on` records the node that timed each artifact (the cells' timing_node)."""

    kind = "ray"
    give_up_after = 1  # the node holding the device died: stop trying it (the same command resumes)

    def __init__(self, device: Any, opts: Any, say: Any = print):
        self.local = device
        self.name = device.name
        self.ray = connect(opts.ray_address)
        self.timed_on: dict[str, str] = {}
        self.lost: str | None = None
        self._can_run: dict[str, str | None] = {}
        nodes = offered(self.ray)
        if self.name not in nodes:
            have = ", ".join(f"{d} ({len(n)} node(s))" for d, n in sorted(nodes.items())) or "none"
            raise ToolkitError(f"no node of the Ray cluster offers device {self.name} (resource "
                               f"{resource(self.name)}); devices offered: {have}. Start the node it is attached to "
                               f"with `ray start --address ... --resources '{{\"{resource(self.name)}\": 1}}'`")
        actor_cls = self.ray.remote(num_cpus=0, resources={resource(self.name): 1}, max_restarts=0,
                                    max_concurrency=1)(_DeviceActor)
        self.actor = actor_cls.remote(self.name, str(opts.profiles) if opts.profiles else None)
        try:
            info = self.ray.get(self.actor.start.remote("a bench run starting (ray)", opts.wait),
                                timeout=None if opts.wait else READY_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            self.disconnect()
            raise ToolkitError(f"the timing actor of device {self.name} did not start within {READY_TIMEOUT_S:.0f} s: "
                               f"another sweep holds {resource(self.name)} (pass --wait to wait for it) or its node "
                               "is busy") from None
        except Exception as exc:  # noqa: BLE001 - the actor could not start, or its node went away
            self.disconnect()
            raise ToolkitError(f"the timing actor of device {self.name} did not start: {one_line(exc)}") from None
        if not info["ok"]:
            self.disconnect()
            raise ToolkitError(info["error"])
        self.node, self.host, self.remote_kind = info["node"], info["host"], info["kind"]
        self.compute_units = info["compute_units"]
        self._describe = {**info["describe"], "executor": "ray", "ray_timing_node": self.node,
                          "ray_timing_host": self.host}
        say(f"ray: device {self.name} ({self.remote_kind}) is timed on node {self.node[:12]} ({self.host}); "
            f"exports run on any of {len(self.ray.nodes())} node(s)")

    def describe(self) -> dict[str, Any]:
        return self._describe

    def can_run(self, fmt: str) -> str | None:
        if fmt not in self._can_run:
            self._can_run[fmt] = self.ray.get(self.actor.can_run.remote(fmt))
        return self._can_run[fmt]

    def set_owner(self, owner: str) -> None:
        with contextlib.suppress(Exception):
            self.actor.set_owner.remote(owner)

    def run_group(self, paths: list[str], **kw: Any) -> list[Any]:
        from devices.base import MeasureError, decode_result

        for p in paths:
            self.timed_on[str(p)] = self.node
        if self.lost:
            raise MeasureError(self.lost, "transport")
        try:  # the device's own timeout stops a hung runtime; this one a node that stopped answering
            reply = self.ray.get(self.actor.run_group.remote([str(p) for p in paths], kw),
                                 timeout=2 * float(kw.get("timeout", 300)) + 60)
        except Exception as exc:  # noqa: BLE001 - the actor died with its node, or the node stopped answering
            self.lost = (f"node {self.node} ({self.host}) holding {resource(self.name)} was lost while timing: "
                         f"{one_line(exc)}")
            raise MeasureError(self.lost, "transport") from None
        if not reply["ok"]:
            raise MeasureError(reply["error"], reply["stage"])
        return [decode_result(m) for m in reply["members"]]

    def close(self) -> None:
        if not self.lost:
            with contextlib.suppress(Exception):
                self.ray.get(self.actor.close.remote(), timeout=60)

    def disconnect(self) -> None:
        """Stop the timing actor (it frees the device) and leave the cluster."""
        with contextlib.suppress(Exception):
            self.ray.kill(self.actor)
        self.local.close()
        self.ray.shutdown()


class NodeLock:
    """The sweep's device lock under Ray: held by the timing actor on the device's node; this only names the run."""

    def __init__(self, device: RayDevice):
        self.device = device

    def set_owner(self, owner: str) -> None:
        self.device.set_owner(owner)
