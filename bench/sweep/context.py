"""What a sweep's phases share: its options, its result, the context every store write goes through, and the
interrupt rule (Ctrl-C stops at once, except during a store write, which is never torn: it is raised right after the
write commits)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.store import Store
from bench.sweep.cells import Cell, SweepArgs
from bench.sweep.rows import cell_row
from models.errors import ToolkitError


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
    executor: str = "local"  # "local": this machine's export workers and device; "ray": bench/sweep/executors/ray.py
    ray_address: str | None = None  # the Ray cluster to join (None: RAY_ADDRESS, else the one started here)

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
