"""`--optimize`: the artifact a deployment engineer would ship, beside the plain one (which stays the reference).

    export(model, fmt, res, optimize=True) -> artifacts/<model>/<H>x<W>/<format>[-<converter>]-<precision>-opt/

Two kinds of work, each recorded in the manifest (`optimized: true`, `optimization`):
  * model level, before any converter: the family's export form (FamilySpec.export_form), the same function written
    with fewer, larger ops. Mobile-Former has one (models/mobileformer_fast.py); timm's families have none, so they
    are the control: whatever their optimized artifact gains comes from the graph tools alone.
  * graph level, after the converter, with the field's own tools: ONNX files go through onnxslim (what Ultralytics'
    exporter runs), pinned in requirements.lock. onnxruntime's offline-optimized model is not used: its basic level
    is what onnxruntime redoes at every load anyway, and its extended and layout levels write com.microsoft
    operators (FusedConv, FusedGemm, NCHWc reorders for this CPU's vector width) that no other ONNX runtime or
    converter reads, so the file would stop being a portable ONNX artifact (docs/export.md, "Optimized exports").
    TFLite and ExecuTorch take the export form; their converters' own options are left at their defaults (the
    fp32 graphs already lower to one XNNPACK partition; docs/export.md says what else was looked at).

Checks on top of the usual parity against PyTorch (the plain model, as for every artifact): the optimized artifact
against the plain artifact of the same cell, run in the same runtime on the same inputs, within VS_PLAIN_MAX_REL of
the plain artifact's largest logit (fp32), or, where the plain artifact itself is further than a quarter of that from
PyTorch, within NOISE_MULTIPLE (4) times the plain artifact's own error against PyTorch. Two float32 evaluations of
one function differ by their rounding errors, and the plain artifact's distance from PyTorch (itself float32) is that
network's rounding noise at that size (1.5e-5 for Mobile-Former-294M at 128 with seeded weights, so a literal 1e-5
would fail any rewrite, even a reordering of additions). Measured: optimized against plain was 0.69-0.95 times the
plain artifact's own error on Mobile-Former-294M at 128 and 224 in all three formats, and 2.19 times on
Mobile-Former-26M at 64 on ExecuTorch (6.4e-6 own error, 1.40e-5 against plain: the CI run that failed a bound of 2);
a wrong rewrite (a dropped term, a swapped operand) shows at 1e-3 and above, so 4 still catches it with room.
The bound used and the floor are recorded. A miss fails
the export like a parity miss.
`graph_counts` gives both graphs' node counts, the delegated ops and the file size for the manifest.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import models
from export.spec import Converted

SUFFIX = "-opt"
VS_PLAIN_MAX_REL = {"fp32": 1e-5}  # precisions not listed are recorded, not gated
NOISE_MULTIPLE = 4  # times the plain artifact's own error against PyTorch (measured, above)
VERSION = 1  # bump when what --optimize does changes without a code change here (part of the cache key)


def has_export_form(model: str) -> bool:
    return models.family_info(models.spec(model).family).export_form is not None


def model_form(model: str, net: Any, fmt: str) -> tuple[Any, list[str]]:
    """The module the converter is given: the family's export form of `net` for format `fmt`, or `net` itself;
    with the steps applied (for the manifest)."""
    form = models.family_info(models.spec(model).family).export_form
    if form is None:
        return net, []
    return form(net, fmt), [f"model: {models.spec(model).family} export form (same function, fewer ops)"]


def post_convert(fmt: str, converted: Converted) -> list[str]:
    """Graph-level clean-up of the converted file, in place; returns the steps applied."""
    if fmt != "onnx":
        return []
    import onnx
    import onnxslim

    proto = onnx.load(str(converted.file))
    slim = onnxslim.slim(proto)
    onnx.checker.check_model(slim)
    onnx.save(slim, str(converted.file))
    ops: dict[str, int] = {}
    for node in slim.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    converted.details.update({"ops": dict(sorted(ops.items())), "nodes": len(slim.graph.node)})
    return [f"graph: onnxslim {_version('onnxslim')}"]


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


@functools.lru_cache(maxsize=64)
def _ort_nodes(path: str, mtime: float) -> int:
    """Nodes of the graph onnxruntime runs (all its optimisations, this CPU, one thread)."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return len(onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node)


def graph_counts(fmt: str, file: Path, details: dict[str, Any], file_bytes: int | None = None) -> dict[str, Any]:
    """Node counts of an artifact's graph: `nodes` (what the file holds: ONNX nodes, TFLite operators, ExecuTorch
    edge ops before XNNPACK's own fusions), `runtime_nodes` (ONNX: the graph onnxruntime runs after its
    optimisations on this CPU), `delegated` and `partitions` (TFLite, ExecuTorch: what XNNPACK took)."""
    out: dict[str, Any] = {}
    if fmt == "onnx":
        out["nodes"] = details.get("nodes")
        try:
            out["runtime_nodes"] = _ort_nodes(str(file), Path(file).stat().st_mtime)
        except Exception:  # noqa: BLE001 - a count, never a reason to fail an export
            out["runtime_nodes"] = None
    elif fmt == "tflite":
        d = details.get("delegation") or {}
        out.update({"nodes": details.get("operators"), "delegated": d.get("delegated_nodes"),
                    "partitions": d.get("partitions")})
    elif fmt == "executorch":
        d = details.get("delegation") or {}
        if d:
            out.update({"nodes": d.get("delegated_ops", 0) + d.get("portable_ops", 0),
                        "delegated": d.get("delegated_ops"), "partitions": d.get("partitions")})
    if file_bytes is not None:
        out["file_bytes"] = file_bytes
    return {k: v for k, v in out.items() if v is not None}


def counts_of(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The graph counts of a manifest: its `graph` record, or (an artifact written before it existed) what its
    details allow."""
    m = manifest or {}
    if m.get("graph"):
        return dict(m["graph"])
    fmt = m.get("format", "")
    got = graph_counts(fmt, Path("/nonexistent"), m.get("details") or {}, m.get("file_bytes"))
    got.pop("runtime_nodes", None)
    return got


def versus_plain(manifest: dict[str, Any], net: Any, plain_manifest: dict[str, Any], plain_load,
                 opt_load) -> dict[str, Any]:
    """The optimized artifact against the plain one on the parity inputs (random and photographs, the same arrays
    the PyTorch check used): figures per set (export/parity.py's), the bound, the noise floor and a verdict."""
    from export import parity as P

    res = tuple(manifest["resolution"])
    ref = P._reference(net, res, manifest["input"]["mean"], manifest["input"]["std"], bool(manifest.get("dynamic")))
    plain, opt = plain_load(), opt_load()
    bound = VS_PLAIN_MAX_REL.get(manifest["precision"])
    floor = P.worst(plain_manifest.get("parity"))["max_rel"]
    if bound is not None and floor is not None and NOISE_MULTIPLE * floor > bound:
        bound = NOISE_MULTIPLE * floor
    out: dict[str, Any] = {"max_rel_bound": bound, "plain_vs_pytorch_max_rel": floor}
    failures = []
    for key, (x, _) in ref["sets"].items():
        figures = P.compare(P._run(plain, x), P._run(opt, x))
        out[key] = figures
        if bound is not None and not figures["max_rel"] <= bound:
            failures.append(f"{key}: max_rel {figures['max_rel']:.2e} against the plain artifact > {bound:g}")
    out["verdict"] = "failed" if failures else ("passed" if bound is not None else "recorded")
    if failures:
        out["reason"] = "; ".join(failures)
    return out


def describe(manifest: dict[str, Any]) -> str:
    """One line: both graphs' node counts and sizes, and the check against the plain artifact."""
    plain, opt = (manifest.get("optimization") or {}).get("plain") or {}, manifest.get("graph") or {}

    def side(g: dict[str, Any]) -> str:
        nodes = g.get("runtime_nodes", g.get("nodes"))
        what = "nodes onnxruntime runs" if "runtime_nodes" in g else "nodes"
        return f"{nodes} {what}" + (f" ({g['delegated']} delegated)" if g.get("delegated") is not None else "")

    vs = (manifest.get("parity") or {}).get("vs_plain") or {}
    worst = max((vs[k]["max_rel"] for k in ("random", "images") if isinstance(vs.get(k), dict)), default=None)
    check = f"; vs plain: max_rel {worst:.1e} ({vs.get('verdict')})" if worst is not None else ""
    return f"optimized: {side(opt)} against {side(plain)} plain{check}"
