"""Which cells run on the device and which are stored as "not run: <reason>", and the groups the timing
phase times together (the cells compared with each other)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import models
from bench.labels import runtime_label
from bench.sweep.cells import Cell


@dataclass
class Plan:
    runnable: list[Cell]
    not_run: list[tuple[Cell, str]]  # with the device's reason

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

def group_id(cells: list[Cell]) -> str:
    """A group's identity in the passes table: its members' cell keys."""
    return hashlib.sha256(json.dumps(sorted(c.key for c in cells)).encode()).hexdigest()[:16]

def group_label(cell: Cell) -> str:
    return (f"{runtime_label(cell.format, cell.converter, cell.precision, cell.units)} "
            f"{models.format_resolution(cell.res)} t{cell.threads}")
