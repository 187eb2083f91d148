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


def profile(art, threads: int, iterations: int, warmup: int) -> dict[str, Any]:
    """Run the artifact under onnxruntime's profiler; return mean ms per iteration per component."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # (saving an NCHWc-optimized graph warns; it is only read back here)
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        sess = ort.InferenceSession(str(art.file), opts, providers=["CPUExecutionProvider"])
        components = node_components(art.file, Path(opts.optimized_model_filepath))
        h, w = art.manifest["resolution"]
        x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
        name = sess.get_inputs()[0].name
        for _ in range(warmup + iterations):
            sess.run(None, {name: x})
        trace = json.loads(Path(sess.end_profiling()).read_text())
    per: dict[str, float] = defaultdict(float)
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    timed_runs = runs[warmup:]  # the warm-up runs are profiled too; leave them out
    start = timed_runs[0]["ts"] if timed_runs else 0
    kernels = 0
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        node = e["name"][: -len("_kernel_time")]
        per[components.get(node, "other")] += e["dur"] / 1000.0
        kernels += 1
    total_run = sum(r["dur"] for r in timed_runs) / 1000.0 / max(len(timed_runs), 1)
    shares = {k: v / iterations for k, v in per.items()}
    return {"model": art.manifest["model"], "resolution": [h, w], "threads": threads, "iterations": iterations,
            "run_ms": total_run, "kernel_ms": sum(shares.values()), "components_ms": dict(sorted(shares.items())),
            "kernels_per_run": kernels / max(iterations, 1)}


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
        lines += [f"## {model} ({rows[0]['threads']} thread(s), {rows[0]['iterations']} iterations)", ""]
        body = [[c, *[f"{r['components_ms'].get(c, 0):.2f} ms ({r['components_ms'].get(c, 0) / r['kernel_ms']:.0%})"
                      for r in rows]] for c in comps]
        body.append(["**kernels total / run**", *[f"{r['kernel_ms']:.2f} / {r['run_ms']:.2f} ms" for r in rows]])
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
