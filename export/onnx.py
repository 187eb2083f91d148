"""ONNX: torch.export capture -> torch.onnx (dynamo exporter) -> one self-contained .onnx -> onnxruntime.

Why the dynamo exporter: it converts the shared torch.export capture (no second trace), and onnx2tf converts its
output for the attention models where the TorchScript exporter's file fails (TOOLCHAIN.md). Weights are embedded
(external_data=False): these models are far below the 2 GB protobuf limit, so one file is simpler to ship.
fp16 converts the fp32 graph with onnxruntime's float16 tool, keeping float32 inputs and outputs (keep_io_types) so
callers feed the same arrays; onnxruntime's CPU provider runs it with casts where it lacks fp16 kernels.
Execution mode: a manifest whose details say "session": {"execution_mode": "parallel"} (bench's mode "parallel": a
copy of the manifest beside a link to the same file, bench/why/plan.py) loads with ORT_PARALLEL: `threads` inter-op
threads run independent nodes at the same time, each node single-threaded; the default mode runs nodes one by one
with `threads` intra-op threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.spec import Converted, Converter, FormatSpec, Job

FORMAT = FormatSpec("onnx", ".onnx", (Converter("torch-dynamo", ("torch", "onnx", "onnxscript"), "onnx"),),
                    "onnxruntime", ("onnxruntime",), "onnx", dynamic=True, rank=1, modes=("parallel",))


OPSET = 18


def convert(job: Job) -> Converted:
    import onnx
    import torch

    path = job.out_dir / f"{job.stem}.onnx"
    source, dynamic_shapes = job.exported_program(), None
    if job.dynamic:  # a capture of its own, with symbolic H and W
        from torch.export import Dim

        import models

        lo, hi = models.spec(job.name).min_resolution, models.MAX_RESOLUTION
        source = job.model
        dynamic_shapes = ({2: Dim("height", min=lo, max=hi), 3: Dim("width", min=lo, max=hi)},)
    with torch.no_grad():
        program = torch.onnx.export(source, (job.example(),), dynamo=True, opset_version=OPSET,
                                    input_names=["input"], output_names=["logits"], external_data=False, verbose=False,
                                    optimize=True, dynamic_shapes=dynamic_shapes)
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    if job.precision == "fp16":
        import onnx_ir
        from onnxruntime.transformers.float16 import convert_float_to_float16

        graph = onnx_ir.from_proto(convert_float_to_float16(proto, keep_io_types=True))
        graph.graph.sort()  # the float16 tool appends its input casts after their users
        proto = onnx_ir.to_proto(graph)
        onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    return Converted(path, "NCHW", {"opset": opset, "ops": dict(sorted(ops.items())), "nodes": len(proto.graph.node)})


def runs_here() -> str | None:
    return None


def load(file: Path, manifest: dict[str, Any], threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if ((manifest.get("details") or {}).get("session") or {}).get("execution_mode") == "parallel":
        # independent branches at the same time: `threads` inter-op threads, each node on one (no oversubscription)
        opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        opts.inter_op_num_threads = threads or 1
        opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = session.run

    def infer(x):
        return run(None, {name: x})[0]

    return infer
