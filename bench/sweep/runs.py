"""A run's identity and its resume: the run id is derived from the sweep's arguments (device + a hash of
SweepArgs.canonical), so the same command finds the same run and only measures the cells not stored yet; `--new`
starts another run with the same arguments (id suffix -2, -3, ...). Cells are measured in an order shuffled with a
seed recorded in the run, so a resumed run keeps its seed and order."""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

from bench.store import Store
from bench.sweep.cells import Cell, SweepArgs
from models.errors import ToolkitError


def now() -> str:
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
    record = {"created": now(), "args_hash": args.hash, "args": args.canonical(), "argv": argv,
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
