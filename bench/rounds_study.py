"""What `--max-rounds` costs against what it buys: the same sweep run twice at each cap, the two runs of a cap compared
the way `bench compare` compares runs (slowdown ratios point by point: |B/A - 1| and whether B's ratio falls inside
A's 95% interval), beside the timing seconds each run took.

    python -m bench.rounds_study --max-rounds 12,15,20 [--repeats 2] [the sweep: --models --formats --res ...]

Every run is a fresh one (`--new`) of the sweep with that cap, so artifacts are exported once and only timing is
repeated; the table (reports/rounds-study/study.md and study.json) has, per cap, the seconds of each run, the groups
that hit the cap and the agreement of the pair. The default cap is chosen from it (docs/bench.md, "Rounds"): the
smallest cap whose agreement is as good as the largest cap's within the runs' own spread. Timing on a shared
machine answers nothing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.errors import ToolkitError, cli_main


def ratio_agreement(store, run_a: str, run_b: str) -> tuple[list[list[str]], list[float], list[bool]]:
    """Every subject / baseline ratio point of run B beside run A's: table rows, B/A per point, and whether B's
    ratio lies inside A's 95% interval (the comparison `bench compare` prints)."""
    from bench.analysis import analyse

    pa, pb = (analyse(store.run(r), store.cells(r)) for r in (run_a, run_b))
    points_a = {(p.runtime, p.numer, p.denom, lbl): q for p in pa.pairs for q, lbl in zip(p.curve.points, p.labels)}
    rows, ratios, inside = [], [], []
    for p in pb.pairs:
        for q, lbl in zip(p.curve.points, p.labels):
            qa = points_a.get((p.runtime, p.numer, p.denom, lbl))
            if qa is None:
                continue
            ratios.append(q.ratio / qa.ratio)
            inside.append(qa.low <= q.ratio <= qa.high)
            rows.append([p.runtime, f"{p.numer} / {p.denom}", lbl, f"{qa.ratio:.3f} ({qa.low:.2f}-{qa.high:.2f})",
                         f"{q.ratio:.3f} ({q.low:.2f}-{q.high:.2f})", f"{q.ratio / qa.ratio:.3f}",
                         "yes" if inside[-1] else "no"])
    return rows, ratios, inside


def summarise(store, runs: list[dict[str, Any]], cap: int) -> dict[str, Any]:
    from bench import stats

    cells = [c for r in runs for c in store.cells(r["run_id"]) if c["status"] == "ok"]
    capped = sum(1 for c in cells if (c.get("n_rounds") or 0) >= cap) / max(len(cells), 1)
    out: dict[str, Any] = {"max_rounds": cap, "runs": [r["run_id"] for r in runs],
                           "seconds": [round(r["seconds"], 1) for r in runs], "cells_at_cap": round(capped, 3)}
    if len(runs) >= 2:
        _, ratios, inside = ratio_agreement(store, runs[0]["run_id"], runs[1]["run_id"])
        s = stats.spread(ratios)
        out.update({"points": s["n"], "median_abs_dev": s["median_abs_dev"], "max_abs_dev": s["max_abs_dev"],
                    "inside_ci": sum(inside) / len(inside) if inside else None})
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    from bench.writers import md_table

    def pct(v):
        return "" if v is None else f"{v:.1%}"

    body = [[r["max_rounds"], " / ".join(f"{s:.0f}" for s in r["seconds"]), pct(r["cells_at_cap"]), r.get("points", ""),
             pct(r.get("median_abs_dev")), pct(r.get("max_abs_dev")), pct(r.get("inside_ci")), ", ".join(r["runs"])]
            for r in results]
    return "\n".join(["# --max-rounds: timing seconds against run-to-run agreement", "",
                      *md_table(["max rounds", "seconds per run", "cells at the cap", "ratio points",
                                 "median |B/A - 1|", "max |B/A - 1|", "B inside A's 95% CI", "runs"], body), ""])


def main(argv: list[str] | None = None) -> int:
    from bench import sweep
    from bench.store import Store
    from export.core import DEFAULT_OUT
    from models import defaults
    from models.common import ROOT

    DEFAULT_MODELS, DEFAULT_FORMATS, DEFAULT_RES = (",".join(defaults.SWEEP_MODELS), defaults.SWEEP_FORMATS,
                                                    defaults.SWEEP_RESOLUTIONS)
    DEFAULT_STORE, DEFAULT_REPORTS = ROOT / "results" / "results.sqlite", ROOT / "reports"  # bench run's defaults

    ap = argparse.ArgumentParser(prog="python -m bench.rounds_study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-rounds", default="12,15,20", help="caps to compare (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cap (default: %(default)s)")
    ap.add_argument("--device", default="host")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--formats", default=DEFAULT_FORMATS)
    ap.add_argument("--res", default=DEFAULT_RES)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--per-round", type=int, default=None)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    ap.add_argument("--artifacts", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        caps = sorted({int(t) for t in args.max_rounds.split(",") if t.strip()})
    except ValueError:
        raise ToolkitError(f"--max-rounds takes whole numbers, not {args.max_rounds!r}") from None
    if not caps or args.repeats < 1:
        raise ToolkitError("--max-rounds needs at least one cap and --repeats at least 1")
    results = []
    for cap in caps:
        sargs = sweep.parse_args(device=args.device, models_arg=args.models, formats=args.formats, res=args.res,
                                 threads=args.threads, rounds=args.rounds, per_round=args.per_round, max_rounds=cap)
        runs = []
        for i in range(args.repeats):
            print(f"max-rounds {cap}: run {i + 1} of {args.repeats}", flush=True)
            res = sweep.run(sargs, sweep.Options(store=args.store, reports=args.reports, artifacts=args.artifacts,
                                                 new=True, report=False))
            if res.interrupted:
                return 130
            runs.append({"run_id": res.run_id, "seconds": res.seconds})
        store = Store.open(args.store, readonly=True)
        try:
            results.append(summarise(store, runs, cap))
        finally:
            store.close()
        print(json.dumps(results[-1]), flush=True)
    out = args.reports / "rounds-study"
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(results, indent=1))
    (out / "study.md").write_text(markdown(results))
    print(markdown(results))
    print(f"written: {out / 'study.md'}, {out / 'study.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "bench.rounds_study"))
