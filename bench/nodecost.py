"""The per-node cost of a runtime, and how much of each model's fixed cost its node count explains. Pure functions
from a run's analysed rows (bench/analysis.py).

The probe (models/family_nodecost.py, FamilySpec.measures == "per_node") is a chain of N trivial nodes and one of
2N, timed in every group of the run like the peak probe. Per group (runtime, threads, resolution) the cost of one
node is (latency(2N) - latency(N)) / (nodes(2N) - nodes(N)), per round (both chains met the same machine) with the
median's order-statistic interval (bench/stats.round_statistic), the node counts read from the two artifacts'
own graphs (so a converter that adds or drops a node is counted as it ran). A runtime's figure is the median over
its groups. Beside a model's fitted fixed cost the report sets nodes x per-node cost: the share of the fixed cost
that the number of nodes alone explains (the rest: the work that does not shrink with the image, e.g. the tokens'
path, and per-node costs above the trivial node's).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import models
from bench.analysis import Analysis, plain_runtime
from bench.stats import CellSamples, round_statistic
from models.common import median

PER_NODE = "per_node"


def nodes_of(row: dict[str, Any]) -> int | None:
    """The nodes a cell's runtime runs: onnxruntime's optimized graph where known, else the file's own graph."""
    g = row.get("graph") or {}
    n = g.get("runtime_nodes") or g.get("nodes")
    return int(n) if n else None


def _measures(family: str) -> str:
    try:
        return models.family_info(family).measures
    except Exception:  # noqa: BLE001 - a family the registry no longer has measures nothing
        return ""


def is_node_probe(row: dict[str, Any]) -> bool:
    return _measures(row.get("family") or "") == PER_NODE


def node_costs(a: Analysis) -> dict[str, dict[str, Any]]:
    """runtime label -> {"us": per-node cost (median over its groups), "points": one per group}."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in a.rows:
        if r["status"] == "ok" and r.get("samples_ms") and is_node_probe(r) and nodes_of(r) and not r.get("mode"):
            groups[(r["runtime"], r["height"], r["width"])].append(r)
    out: dict[str, dict[str, Any]] = {}
    for (rt, h, w), rs in sorted(groups.items()):
        rs = sorted(rs, key=nodes_of)
        lo, hi = rs[0], rs[-1]
        dn = nodes_of(hi) - nodes_of(lo)
        if dn <= 0:
            continue
        est = round_statistic([CellSamples(hi["samples_ms"], hi.get("rounds"), hi.get("session")),
                               CellSamples(lo["samples_ms"], lo.get("rounds"), lo.get("session"))],
                              lambda p, q, dn=dn: (p - q) / dn * 1e3)
        out.setdefault(rt, {"points": []})["points"].append(
            {"height": h, "width": w, "us": est.value, "low": est.low, "high": est.high, "nodes": [nodes_of(lo),
                                                                                                   nodes_of(hi)]})
    for v in out.values():
        v["us"] = median(p["us"] for p in v["points"])
    return out


def annotate_fits(fits: list[dict[str, Any]], a: Analysis, costs: dict[str, dict[str, Any]]) -> None:
    """Add to each fit row its model's node count, the runtime's per-node cost and their product (ms), in place."""
    nodes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rt, by_model in a.series.items():
        for label, rs in by_model.items():
            nodes[(rt, label)] += [n for n in (nodes_of(r) for r in rs) if n]
    for f in fits:
        ns = nodes.get((f["runtime"], f["model"]))
        cost = costs.get(f["runtime"]) or costs.get(plain_runtime(f["runtime"]))
        f["nodes"] = int(median(ns)) if ns else None
        f["per_node_us"] = cost["us"] if cost else None
        f["nodes_ms"] = f["nodes"] * cost["us"] / 1e3 if ns and cost else None


def sentences(costs: dict[str, dict[str, Any]], fits: list[dict[str, Any]]) -> list[str]:
    out = []
    for rt, c in sorted(costs.items()):
        pts = ", ".join(f"{p['us']:.2f} us (95% CI {p['low']:.2f} to {p['high']:.2f}) at {p['height']}x{p['width']}"
                        for p in c["points"])
        n = c["points"][0]["nodes"]
        out.append(f"On {rt}, one more trivial node costs {c['us']:.2f} us (the chains of {n[0]} and {n[1]} nodes "
                   f"timed in the same rounds: {pts}).")
    for f in fits:
        if f.get("nodes_ms") is None or f["role"] not in ("subject", "baseline") or f["overrides"]:
            continue
        share = f["nodes_ms"] / f["fixed_ms"] if f["fixed_ms"] > 0 else None
        out.append(f"On {f['runtime']}, {f['model']}: {f['nodes']} nodes x {f['per_node_us']:.2f} us = "
                   f"{f['nodes_ms']:.2f} ms beside a fitted fixed cost of {f['fixed_ms']:.2f} ms"
                   + (f" ({share:.0%} of it)." if share is not None else "."))
    return out
