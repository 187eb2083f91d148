"""`python -m devices.native compare`: the same .pte files timed by executorch.runtime and by et-bench, together.

Each file is one group of two members, the file through executorch.runtime and the same file through et-bench,
timed in interleaved rounds by one host worker (devices/rounds.py): the two runners meet the same machine in every
round, so the per-round ratio carries no drift between them. The table gives both medians, their ratio, the median
of the per-round ratios with its range, and the CPU-time medians (one thread: what the inference costs when nothing
else wants the core). The device and CPU locks are held as `python -m devices run` holds them.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from models.common import markdown_table, median
from models.errors import ToolkitError

HEAD = ["model", "res", "executorch.runtime ms", "et-bench ms", "et-bench / runtime", "per-round ratio (min-max)",
        "CPU ms runtime / et-bench", "rounds x iters"]


def round_ratios(a: Any, b: Any) -> list[float]:
    """b's median over a's, per round both have samples in (Measurements with `rounds`)."""
    def by_round(m: Any) -> dict[int, list[float]]:
        out: dict[int, list[float]] = defaultdict(list)
        for r, s in zip(m.rounds, m.samples_ms):
            out[r].append(s)
        return out

    ra, rb = by_round(a), by_round(b)
    return [median(rb[r]) / median(ra[r]) for r in sorted(ra) if r in rb and median(ra[r]) > 0]


def row(manifest: dict[str, Any], python: Any, native: Any) -> list[str]:
    h, w = manifest.get("resolution") or ("?", "?")
    ratios = round_ratios(python, native)
    mp, mn = median(python.samples_ms), median(native.samples_ms)
    spread = f"{median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else "-"
    cpu = f"{median(python.cpu_samples_ms):.2f} / {median(native.cpu_samples_ms):.2f}"
    return [manifest.get("model", "?"), f"{h}x{w}", f"{mp:.2f}", f"{mn:.2f}", f"{mn / mp:.3f}", spread, cpu,
            f"{len(set(python.rounds))} x {python.per_round}"]


def compare(args: argparse.Namespace) -> list[list[str]]:
    """Time every artifact of `args.artifacts` with both runners; print the table (Markdown), return its rows."""
    import os

    from devices.base import MeasureError
    from devices.host import HostDevice, HostProfile
    from devices.native import find_binary
    from export.core import resolve
    from export.hostlock import DeviceLock, timing_cores

    arts = [resolve(a) for a in args.artifacts]
    for art in arts:
        if art.manifest.get("format") != "executorch":
            raise ToolkitError(f"{art.dir} is a {art.manifest.get('format')} artifact; compare times .pte files")
    binary = find_binary(args.native_runner)
    dev = HostDevice("host", HostProfile(runner="native", native_runner=str(binary)))
    dev.check_threads(args.threads)
    rows, raw = [], []
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        with DeviceLock(dev.name, "`python -m devices.native compare`", wait=True), \
                timing_cores("`python -m devices.native compare`"):
            for i, art in enumerate(arts):
                python, native = dev.measure([art, art], ["python", "native"], rounds=args.rounds,
                                             per_round=args.per_round, warmup=args.warmup,
                                             switch_warmup=args.switch_warmup, threads=args.threads,
                                             timeout=args.timeout, seed=args.seed + i)
                for m in (python, native):
                    if isinstance(m, MeasureError):
                        raise ToolkitError(f"{art.file}: [{m.stage}] {m}")
                rows.append(row(art.manifest, python, native))
                raw.append({"artifact": str(art.dir), "python": python.as_dict(), "native": native.as_dict()})
                print(" | ".join(rows[-1]), flush=True)
    finally:
        dev.close()
    after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print()
    print(markdown_table(HEAD, rows))
    if load and after:
        print(f"\nload average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before, "
              f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after; threads {args.threads}; et-bench {binary}")
    if args.json:
        Path(args.json).write_text(json.dumps({"loadavg_before": load, "loadavg_after": after, "rows": rows,
                                               "measurements": raw}, indent=1))
    return rows
