"""A cell as the store keeps it: one tidy row of the cells table (its manifest's size, parity and int8 record,
its measurement's statistics and samples)."""

from __future__ import annotations

import json
from typing import Any

import models
from bench import stats
from bench.sweep.cells import Cell, SweepArgs
from bench.sweep.runs import now
from export.optimize import counts_of
from models.common import median


def _parity(manifest: dict[str, Any] | None) -> dict[str, Any]:
    from export.parity import worst

    w = worst((manifest or {}).get("parity"))
    return {"parity_verdict": ((manifest or {}).get("parity") or {}).get("verdict"),
            "parity_max_rel": w["max_rel"], "parity_cosine": w["cosine"], "parity_top1": w["top1"]}

def _quant(manifest: dict[str, Any] | None) -> str | None:
    """int8 cells: the manifest's op-kind record and parity figures, as the report needs them (JSON)."""
    m = manifest or {}
    q = (m.get("details") or {}).get("int8")
    if m.get("precision") != "int8" or not isinstance(q, dict):
        return None
    p = m.get("parity") or {}
    keep = ("ops", "int8_ops", "float_ops", "float_op_kinds", "conversions", "summary", "counted")
    return json.dumps({**{k: q[k] for k in keep if k in q},
                       "calibration": {k: (q.get("calibration") or {}).get(k) for k in ("source", "n", "digest")},
                       "checkpoint": "sha256" in (m.get("weights") or {}),
                       "quantized": p.get("quantized"), "fp32": p.get("images"), "cross_check": p.get("cross_check")},
                      sort_keys=True, default=str)

def cell_row(run_id: str, seq: int, cell: Cell, *, args: SweepArgs, status: str, manifest: dict | None = None,
             artifact: str | None = None, size: tuple[int, int] | None = None, measurement: Any = None,
             stage: str | None = None, error: str | None = None, session: str | None = None,
             nodes: dict[str, str] | None = None) -> dict[str, Any]:
    """One tidy row of the cells table (`nodes`: the Ray nodes that exported and timed it, --executor ray)."""
    m = manifest or {}
    params, madds = size if size else (m.get("params"), m.get("madds"))
    row: dict[str, Any] = {
        "run_id": run_id, "cell_key": cell.key, "seq": seq, "model": cell.model,
        "overrides": json.dumps(dict(cell.overrides), sort_keys=True), "family": models.spec(cell.model).family,
        "format": cell.format, "converter": cell.converter, "precision": cell.precision, "device": cell.device,
        "threads": cell.threads, "mode": cell.mode or None, "height": cell.height, "width": cell.width,
        "params": params, "madds": madds, "units": cell.units or None, "optimized": 1 if cell.optimized else None,
        "graph": json.dumps(counts_of(manifest), sort_keys=True) if manifest else None,
        "iterations": args.iterations, "warmup": args.warmup, "artifact": artifact,
        "artifact_bytes": m.get("file_bytes"), "export_seconds": m.get("export_seconds"), **_parity(manifest),
        "quant": _quant(manifest),
        "status": status, "stage": stage, "error": error, "finished": now(),
        "export_node": (nodes or {}).get("export_node"), "timing_node": (nodes or {}).get("timing_node"),
    }
    if measurement is not None:
        rounds = measurement.rounds or None
        s = summary(measurement, cell.threads)
        row.update({
            "iterations": len(measurement.samples_ms), "session": session, "n_rounds": s.n_rounds,
            "per_round": measurement.per_round, "switch_warmup": measurement.switch_warmup, "round_cv": s.round_cv,
            "rounds": json.dumps(rounds) if rounds else None,
            "mean_ms": s.mean, "median_ms": s.median, "p10_ms": s.p10, "p90_ms": s.p90, "std_ms": s.std,
            "min_ms": s.min, "max_ms": s.max, "cv": s.cv, "ci95_low_ms": s.ci95_low, "ci95_high_ms": s.ci95_high,
            "unstable": int(s.unstable), "load_ms": measurement.load_ms, "first_ms": measurement.first_ms,
            "peak_rss_mb": measurement.peak_rss_mb, "overhead_us": measurement.overhead_us,
            "loadavg": measurement.loadavg, "cpus": json.dumps(measurement.cpus),
            "runtime_versions": json.dumps(measurement.runtime_versions, sort_keys=True),
            "samples_ms": json.dumps([round(v, 6) for v in measurement.samples_ms]),
            "cpu_median_ms": s.cpu_median,
            "cpu_samples_ms": json.dumps([round(v, 6) for v in measurement.cpu_samples_ms]),
            "runtime_median_ms": median(measurement.runtime_samples_ms) if measurement.runtime_samples_ms
            else None,
            "device_state": json.dumps(measurement.device_state, sort_keys=True) if measurement.device_state
            else None,
            **({} if measurement.raw_samples else {"raw_samples": 0}),
        })
    return row

def summary(m: Any, threads: int) -> stats.Summary:
    """The statistics of a measurement (bench/stats.py). A program that prints only aggregates, timed in one chunk
    (`--rounds 1` on a phone), gives one value: it is the cell's mean and median, and nothing else is known."""
    if not m.raw_samples and len(m.samples_ms) == 1:
        v = float(m.samples_ms[0])
        return stats.Summary(n=1, mean=v, median=v, p10=None, p90=None, std=None, min=v, max=v, cv=None,
                             ci95_low=None, ci95_high=None, unstable=False)
    return stats.summarize(m.samples_ms, m.cpu_samples_ms or None, threads=threads, rounds=m.rounds or None)
