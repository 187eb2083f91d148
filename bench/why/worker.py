"""The profiling process of `bench why` (`python -m bench.why.worker`, one per thread count, pinned like the timing
worker): one profiled pass per cell, after the timed loop, so profiling never touches the timed samples.

  onnxruntime  its per-node profile (bench/profile.py), nodes mapped to the family's components;
  ExecuTorch   ETDump through the runtime (enable_etdump) read by the devtools Inspector; XNNPACK runs the delegated
               graph, so its events are XNNPACK operators (Convolution, GEMM, ...); XNNPACK's lowering keeps no
               debug-handle map, so not even an ETRecord maps them back to model modules: they are reported by
               operator kind, and said so;
  LiteRT       ai-edge-litert's Python Interpreter has no profiler accessor: a note, no numbers.
MAdds per component come from the same counter as the model's (models/madds.py), split by module.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from typing import Any

from devices.subproc import one_line, serve
from devices.worker import make_input, pin
from models.errors import ToolkitError

ITERATIONS = 20
WARMUP = 5


def component_madds(model_name: str, overrides: dict[str, Any], resolution: tuple[int, int]) -> dict[str, float]:
    """MAdds per profile component: the counter's per-module FLOPs, each module's own share (its total minus its
    children's) given to the deepest enclosing class the families map (bench/profile.py's rule)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import models
    from bench.profile import _classify

    model = models.create(model_name, **overrides)
    classes = {name: type(m).__name__ for name, m in model.named_modules()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *resolution))
    totals = {k: sum(v.values()) / 2 for k, v in counter.get_flop_counts().items() if k != "Global"}
    root = type(model).__name__
    out: dict[str, float] = defaultdict(float)

    def parent(key: str) -> str | None:  # the nearest enclosing module that ran (a ModuleList never runs itself)
        parts = key.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in totals),
                    None)

    children: dict[str, float] = defaultdict(float)
    for key, total in totals.items():
        if key != root and parent(key) is not None:
            children[parent(key)] += total
    for key, total in totals.items():
        name = key.split(".", 1)[1] if "." in key else ""
        own = total - children[key]
        if own <= 0:
            continue
        chain = [classes.get(".".join(name.split(".")[:i]), "") for i in range(1, name.count(".") + 2)]
        out[_classify(chain, "")] += own
    return dict(out)


def profile_onnx(artifact: str, threads: int) -> dict[str, Any]:
    import export
    from bench.profile import CHAIN_NODES, profile

    art = export.resolve(artifact)
    p = profile(art, threads, ITERATIONS, WARMUP)
    note = (f"onnxruntime's profiler adds its own cost to every node event: {p['profiler_floor_us']:.1f} us per event "
            f"with {threads} thread(s), measured on this machine on a chain of {CHAIN_NODES} trivial nodes timed with "
            f"and without profiling; it is subtracted from each of the {p['kernels_per_run']:.0f} node events per run "
            f"(raw, this cell's kernels sum to {p['raw_kernel_ms']:.2f} ms; less the floor, {p['kernel_ms']:.2f} ms)")
    return {"tool": "onnxruntime profiler", "components_ms": p["components_ms"], "total_ms": p["kernel_ms"],
            "plain_ms": p["plain_ms"], "graph": p["graph"],
            "kernel_ms": p["kernel_ms"], "raw_kernel_ms": p["raw_kernel_ms"], "profiled_run_ms": p["run_ms"],
            "raw_components_ms": p["raw_components_ms"], "profiler_floor_us": p["profiler_floor_us"],
            "nodes_per_run": p["kernels_per_run"], "iterations": ITERATIONS, "note": note}


XNN_KINDS = (("Convolution", "XNNPACK convolution"), ("Fully Connected", "XNNPACK fully-connected (1x1 conv, linear)"),
             ("Batch Matrix Multiply", "XNNPACK GEMM (attention matmul)"), ("Transpose", "XNNPACK layout"),
             ("Reshape", "XNNPACK layout"), ("Copy", "XNNPACK layout"))


DELEGATE_REST = "XNNPACK delegate outside its operators (set-up, copies)"
RUNTIME_REST = "ExecuTorch outside the delegate"


def profile_executorch(artifact: str, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    import export
    from export.executorch import _quiet

    art = export.resolve(artifact)
    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(int(threads))
    module, _ = _quiet(portable_lib._load_for_executorch, str(art.file), None, True)
    plain = export.load(art, threads=threads)  # the runtime exactly as the timed cells load it
    image = make_input(art.manifest)
    x = torch.from_numpy(np.ascontiguousarray(image))
    plain_s = []
    for i in range(WARMUP + ITERATIONS):  # each traced run beside an untraced one: the same moment
        module.forward([x])
        t0 = time.perf_counter()
        plain(image)
        if i >= WARMUP:
            plain_s.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.etdp")
        module.write_etdump_result_to_file(path)
        inspector, _ = _quiet(lambda: Inspector(etdump_path=path), )
    comps: dict[str, float] = defaultdict(float)
    delegated = portable = 0
    execute_ms = delegate_ms = 0.0
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for ev in block.events:
            pd = ev.perf_data
            if pd is None or not pd.raw:
                continue
            raw = list(pd.raw)[WARMUP:] or list(pd.raw)
            ms = float(np.mean(raw))
            if ev.is_delegated_op:
                delegated += 1
                kind = next((k for pat, k in XNN_KINDS if pat in ev.name), "XNNPACK other (element-wise, norm)")
            elif ev.name.startswith("Method::execute"):
                execute_ms += ms
                continue
            elif ev.name.startswith("DELEGATE_CALL"):
                delegate_ms += ms
                continue
            elif ev.name.startswith(("OPERATOR_CALL", "Method")):
                continue  # envelopes around the events counted here
            else:
                portable += 1
                kind = f"portable {ev.name.split('.')[0]}" if "native_call" not in ev.name else \
                    f"portable {ev.name.removeprefix('native_call_').split('.')[0]}"
            comps[kind] += ms
    ops = sum(v for k, v in comps.items() if k.startswith("XNNPACK"))
    if delegate_ms > ops:  # time inside the delegate call that no operator event covers
        comps[DELEGATE_REST] = delegate_ms - ops
    if execute_ms - sum(comps.values()) > 0.005:
        comps[RUNTIME_REST] = execute_ms - sum(comps.values())
    note = (f"ETDump resolved {delegated} XNNPACK operator events and {portable} portable-kernel events per run. "
            "XNNPACK names each event by its own operator and an ordinal ('Convolution (NHWC, F32) IGEMM #2') with "
            f"no debug handle, and ExecuTorch {_et_version()}'s XNNPACK backend returns an empty debug-handle map "
            "when it lowers a graph (backends/xnnpack/xnnpack_preprocess.py), so no ETRecord can map those events "
            "back to the model's modules: this profile splits the time by operator kind, not by Mobile-Former "
            "component (that split comes from the difference method). The time inside "
            f"the delegate call that no operator event covers is '{DELEGATE_REST}'; the components add up to "
            "Method::execute")
    return {"tool": "ExecuTorch ETDump", "components_ms": dict(comps), "total_ms": execute_ms or sum(comps.values()),
            "plain_ms": float(np.median(plain_s)) * 1e3,
            "iterations": ITERATIONS, "note": note}


def _et_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def main() -> None:
    pin()

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        try:
            fmt, art, th = req["format"], req["artifact"], int(req["threads"])
            if fmt == "onnx":
                out = profile_onnx(art, th)
            elif fmt == "executorch":
                out = profile_executorch(art, th)
            else:
                raise ToolkitError(f"no profiler for {fmt}")
            if req.get("madds"):
                out["components_madds"] = component_madds(req["model"], req.get("overrides") or {},
                                                          tuple(req["resolution"]))
            return {"ok": True, "profile": out}
        except (ToolkitError, ValueError, KeyError, TypeError, RuntimeError, OSError) as exc:
            return {"ok": False, "stage": "profile", "error": one_line(exc)}

    serve(handle)


if __name__ == "__main__":
    main()
