"""Where the time goes: per-component latency shares from onnxruntime's per-node profile, across resolutions.

For each (model, resolution) the ONNX artifact (exported and verified through export.export, cached) runs under
onnxruntime's profiler for N iterations on a fixed number of threads. Every profiled kernel is mapped back to the
module it came from (the dynamo ONNX exporter records each node's module class hierarchy in its metadata), and
kernels are summed into the components a reader cares about. Which module classes make which component is each
family's own knowledge (its FamilySpec's `components` and `block_rest` in models/family_*.py): for the subject,
e.g., its convolutions, the hyper networks, its element-wise work, the bridges and the global branch; for a
baseline its convolutions, attention, MLPs, squeeze-excite and so on. Generic layers (convolution, linear, norm)
are mapped here.

This is what makes the small-image slowdown legible: at small inputs the convolutions shrink with H*W while the
global branch, hyper networks and per-op overhead of the many small ops do not.

    python -m bench.profile --models A,B,C --res 128,224,512   (default models: models/defaults.py PROFILE_MODELS)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import models
from bench.writers import md_table
from models import defaults
from models.errors import ToolkitError, cli_main
from models.escape import Markdown, escape


def _merged(attr: str) -> dict[str, str]:
    """One family attribute (module class -> component) over every registered family; a class two families map to
    different components is a registration error."""
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for fam in models.families():
        for cls, comp in getattr(fam, attr).items():
            if cls in out and out[cls] != comp:
                raise ValueError(f"module class {cls!r} is {out[cls]!r} in family {owner[cls]} but {comp!r} in "
                                 f"family {fam.name} ({attr})")
            out[cls] = comp
            owner.setdefault(cls, fam.name)
    return out


# module class (basename) -> component, from the families. The deepest of these classes in a node's module path
# decides; generic layers (GENERIC) only count when no such class encloses the node (a Linear in a hyper network
# counts towards the hyper network).
COMPONENTS = _merged("components")
# BatchNorm2d folds into the convolution before it at inference, so its tensors are the conv's
GENERIC = {"Conv2d": "conv", "BatchNorm2d": "conv", "Linear": "linear", "LayerNorm": "norm"}
# what is left in a block itself, from the families, when no deeper class matched
BLOCK_REST = _merged("block_rest")


def _classify(classes: list[str], op_type: str) -> str:
    comp = next((COMPONENTS[c] for c in reversed(classes) if c in COMPONENTS), None)
    if comp is None:
        comp = next((GENERIC[c] for c in reversed(classes) if c in GENERIC), None)
    if comp is None:
        comp = next((BLOCK_REST[c] for c in reversed(classes) if c in BLOCK_REST), None)
    return comp or {"Conv": "conv", "MatMul": "linear", "Gemm": "linear"}.get(op_type, "other")


def node_components(onnx_path: Path, optimized_path: Path) -> dict[str, str]:
    """Optimized-graph node name -> component.

    The exporter's metadata (each node's module class hierarchy) lives on the original graph; onnxruntime fuses
    and renames nodes, so an optimized node is matched to the original by name, by name prefix ("X/Fusion"), by
    the tensor its name was made from ("<tensor>_nchwc"), by the tensors it produces, and failing those it
    inherits the component of the node feeding it (layout reorders, reshapes around fused Gemms).
    """
    import ast

    import onnx

    by_name, by_tensor = {}, {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        meta = {m.key: m.value for m in node.metadata_props}
        try:
            hierarchy = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        except (ValueError, SyntaxError):
            hierarchy = []
        comp = _classify([c.rsplit(".", 1)[-1] for c in hierarchy], node.op_type)
        by_name[node.name] = comp
        for t in node.output:
            by_tensor[t] = comp
    graph = onnx.load(str(optimized_path), load_external_data=False).graph
    out: dict[str, str] = {}
    produced: dict[str, str] = {}
    for _ in range(3):  # a few passes let inherited components flow along chains of new nodes
        for node in graph.node:
            comp = (by_name.get(node.name) or by_name.get(node.name.split("/")[0])
                    or by_tensor.get(node.name.removesuffix("_nchwc"))  # NCHWc convs: "<output>_nchwc"
                    or next((by_tensor[t] for t in node.output if t in by_tensor), None)
                    or next((produced[t] for t in node.input if t in produced), None)
                    or next((by_tensor[t] for t in node.input if t in by_tensor), None))
            if comp:
                out[node.name] = comp
                for t in node.output:
                    produced[t] = comp
    return out


def graph_summary(optimized_path: Path) -> dict[str, int]:
    """What onnxruntime's optimizer made of the graph: convolutions, how many carry a fused activation, and the
    layout reorders (NCHW <-> NCHWc) it inserted. A convolution whose output must reach memory unactivated (dynamic
    ReLU reads it) cannot take its activation along."""
    import onnx

    nodes = onnx.load(str(optimized_path), load_external_data=False).graph.node
    convs = [n for n in nodes if n.op_type in ("Conv", "FusedConv")]
    fused = [n for n in convs if any(a.name == "activation" and a.s for a in n.attribute)]
    return {"nodes": len(nodes), "convs": len(convs), "convs_fused_activation": len(fused),
            "layout_reorders": sum(n.op_type in ("ReorderInput", "ReorderOutput") for n in nodes)}


CHAIN_NODES = 1000  # the calibration graph: this many trivial binary nodes on an 8-float tensor


def _session(path: str, threads: int, profiling_dir: str | None, optimize: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # (saving an NCHWc-optimized graph warns; it is only read back here)
    if profiling_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profiling_dir, "ort")
    return opts, lambda: ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _kernel_events(trace: list[dict[str, Any]], warmup: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The timed runs (`model_run` after the warm-up) and the node kernel events inside them."""
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    timed = runs[warmup:]  # the warm-up runs are profiled too; leave them out
    start = timed[0]["ts"] if timed else 0
    kernels = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
               and e["ts"] >= start]
    return timed, kernels


_FLOORS: dict[int, float] = {}


def profiler_floor_us(threads: int, runs: int = 30, warmup: int = 5) -> float:
    """What onnxruntime's profiler adds to each node's `_kernel_time` event on this machine, in microseconds.

    Measured, not assumed: a chain of CHAIN_NODES trivial binary nodes (Add/Mul of 8 floats and a constant: two
    inputs, like most of a vision model's nodes) runs with and without the profiler, interleaved; the floor is the
    profiled mean event duration minus the whole unprofiled time per node (so it is a lower bound on the overhead:
    the unprofiled time includes the executor's own step). Mobile-Former has ~1,250 nodes per run, most of them
    tiny, so this floor is most of what profiling adds (docs/why.md)."""
    if threads in _FLOORS:
        return _FLOORS[threads]
    import time

    import onnx
    from onnx import TensorProto, helper

    with tempfile.TemporaryDirectory() as tmp:
        names = ["x", *[f"t{i}" for i in range(CHAIN_NODES)]]
        nodes = [helper.make_node("Mul" if i % 2 else "Add", [names[i], "c"], [names[i + 1]])
                 for i in range(CHAIN_NODES)]
        c = helper.make_tensor("c", TensorProto.FLOAT, [1, 8], [1.0] * 8)
        graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                                  [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1, 8])], [c])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = os.path.join(tmp, "chain.onnx")
        onnx.save(model, path)
        plain = _session(path, threads, None, optimize=False)[1]()
        profiled = _session(path, threads, tmp, optimize=False)[1]()
        x = {"x": np.ones((1, 8), np.float32)}
        for _ in range(warmup):
            plain.run(None, x)
            profiled.run(None, x)
        plain_s = []
        for _ in range(runs):
            t0 = time.perf_counter()
            plain.run(None, x)
            plain_s.append(time.perf_counter() - t0)
            profiled.run(None, x)
        trace = json.loads(Path(profiled.end_profiling()).read_text())
    timed, kernels = _kernel_events(trace, warmup)
    if not kernels:
        raise ToolkitError("onnxruntime's profiler wrote no node events for the calibration chain")
    per_run = [[e["dur"] for e in kernels if r["ts"] <= e["ts"] <= r["ts"] + r["dur"]] for r in timed]
    event_us = float(np.median([np.mean(d) for d in per_run if d]))  # the median run: robust to a busy moment
    plain_us = float(np.median(plain_s)) * 1e6 / CHAIN_NODES
    _FLOORS[threads] = max(event_us - plain_us, 0.0)
    return _FLOORS[threads]


def attribute(trace: list[dict[str, Any]], components: dict[str, str], warmup: int, iterations: int,
              floor_us: float) -> dict[str, Any]:
    """Mean ms per iteration per component from a profile trace, each node event less the profiler's floor
    (never below zero); the raw sums are kept beside the corrected ones."""
    timed, kernels = _kernel_events(trace, warmup)
    raw: dict[str, float] = defaultdict(float)
    net: dict[str, float] = defaultdict(float)
    for e in kernels:
        comp = components.get(e["name"][: -len("_kernel_time")], "other")
        raw[comp] += e["dur"] / 1000.0
        net[comp] += max(e["dur"] - floor_us, 0.0) / 1000.0
    n = max(iterations, 1)
    return {"run_ms": sum(r["dur"] for r in timed) / 1000.0 / max(len(timed), 1),
            "raw_kernel_ms": sum(raw.values()) / n, "kernel_ms": sum(net.values()) / n,
            "raw_components_ms": {k: v / n for k, v in sorted(raw.items())},
            "components_ms": {k: v / n for k, v in sorted(net.items())},
            "kernels_per_run": len(kernels) / n, "profiler_floor_us": floor_us}


def profile(art, threads: int, iterations: int, warmup: int) -> dict[str, Any]:
    """Run the artifact under onnxruntime's profiler; return mean ms per iteration per component, corrected for
    the profiler's own per-node cost measured on this machine (profiler_floor_us)."""
    import time

    import export

    floor = profiler_floor_us(threads)
    with tempfile.TemporaryDirectory() as tmp:
        opts, make = _session(str(art.file), threads, tmp)
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        sess = make()
        plain = export.load(art, threads=threads)  # the runtime exactly as the timed cells load it
        components = node_components(art.file, Path(opts.optimized_model_filepath))
        graph = graph_summary(Path(opts.optimized_model_filepath))
        h, w = art.manifest["resolution"]
        x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
        name = sess.get_inputs()[0].name
        plain_s = []
        for i in range(warmup + iterations):  # each profiled run beside an unprofiled one: the same moment
            sess.run(None, {name: x})
            t0 = time.perf_counter()
            plain(x)
            if i >= warmup:
                plain_s.append(time.perf_counter() - t0)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    out = attribute(trace, components, warmup, iterations, floor)
    return {"model": art.manifest["model"], "resolution": [h, w], "threads": threads, "iterations": iterations,
            "plain_ms": float(np.median(plain_s)) * 1e3, "graph": graph, **out}


def render(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """A Markdown table and a stacked-bar plot per model (share of time per component vs resolution)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Where the time goes (onnxruntime per-node profile)", ""]
    paths = []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_model[r["model"]].append(r)
    for model, rows in by_model.items():
        comps = sorted({c for r in rows for c in r["components_ms"]},
                       key=lambda c: -sum(r["components_ms"].get(c, 0) for r in rows))
        lines += [f"## {escape(model, 'markdown')} ({rows[0]['threads']} thread(s), {rows[0]['iterations']} "
                  "iterations)", ""]
        body = [[c, *[f"{r['components_ms'].get(c, 0):.2f} ms ({r['components_ms'].get(c, 0) / r['kernel_ms']:.0%})"
                      for r in rows]] for c in comps]
        body.append([Markdown("**kernels (less the profiler's floor) / raw / profiled run**"),
                     *[f"{r['kernel_ms']:.2f} / {r['raw_kernel_ms']:.2f} / {r['run_ms']:.2f} ms" for r in rows]])
        lines += md_table(["component", *[f"{r['resolution'][0]}x{r['resolution'][1]}" for r in rows]], body)
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['resolution'][0]}x{r['resolution'][1]}" for r in rows]
        bottom = np.zeros(len(rows))
        for c in comps:
            share = np.array([r["components_ms"].get(c, 0) / r["kernel_ms"] * 100 for r in rows])
            ax.bar(labels, share, bottom=bottom, label=c)
            bottom += share
        ax.set_ylabel("% of kernel time")
        ax.set_title(f"{model}: where the time goes (onnxruntime)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        path = out_dir / f"profile_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
        lines += [f"![{model}]({path.name})", ""]
    floors = sorted({f"{r['profiler_floor_us']:.1f}" for r in results})
    lines += [f"Each node's time is its `_kernel_time` event less the profiler's own cost per event, measured here on "
              f"a chain of {CHAIN_NODES} trivial nodes with and without profiling: {', '.join(floors)} us.", ""]
    md = out_dir / "profile.md"
    md.write_text("\n".join(lines))
    (out_dir / "profile.json").write_text(json.dumps(results, indent=1))
    return [md, *paths]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(defaults.PROFILE_MODELS),
                    help="comma list (default: %(default)s)")
    ap.add_argument("--res", default="128,224,384,512", help="comma list of N or HxW")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="reports/profile", help="output folder (default: %(default)s)")
    ap.add_argument("--artifacts", default=None, help="artifacts root (default: ./artifacts)")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.threads < 1:
        raise ToolkitError("--iters and --threads must be at least 1")

    import export

    results = []
    for name in args.models.split(","):
        for res in args.res.split(","):
            art = export.export(name, "onnx", res, out=args.artifacts)
            r = profile(art, args.threads, args.iters, args.warmup)
            results.append(r)
            top = sorted(r["components_ms"].items(), key=lambda kv: -kv[1])[:3]
            print(f"{name:<24} {res:>8}  {r['run_ms']:7.2f} ms/run  " +
                  ", ".join(f"{c} {v / r['kernel_ms']:.0%}" for c, v in top), flush=True)
    paths = render(results, Path(args.out))
    print(f"\nwritten: {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "bench.profile"))
