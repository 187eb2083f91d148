"""ONNX int8, two converters, and what a quantized ONNX file runs in int8 on this CPU.

    torch-dynamo  the fp32 export (export/onnx.py) -> onnxruntime's quant_pre_process -> quantize_static: QDQ
                  format, per-channel symmetric int8 weights, uint8 activations, MinMax calibration on the
                  calibration set; only op types with integer kernels here are quantized (OP_TYPES), and
                  attention (Softmax, MatMul of two activations) is left float (`attention_nodes`). uint8
                  activations because they are what onnxruntime's x86 kernels fuse: with them every QDQ
                  convolution becomes a QLinearConv, with int8 activations far fewer do (the pt2e file's int8
                  activations leave conv + ReLU units float: docs/int8.md). The quantized reference is the same
                  file with graph optimisations off, where QuantizeLinear / DequantizeLinear run as float
                  arithmetic around float kernels.
    pt2e          the PT2E-converted model (export.quant.pt2e, the XNNPACK quantizer: the scales of the .pte)
                  exported by torch.onnx's dynamo exporter: QuantizeLinear / DequantizeLinear nodes carrying the
                  .pte's scales, so onnxruntime and ExecuTorch can be compared on one set of scales. Its quantized
                  reference is the converted module in PyTorch.

inspect(file) counts two things: the QDQ node units of the file (an op whose inputs all come from
DequantizeLinear and whose outputs all go to QuantizeLinear is int8), and, the manifest's main figure, the graph
onnxruntime actually runs after its optimisations (QLinear* / QGemm kernels are int8, every other kernel float,
each remaining QuantizeLinear / DequantizeLinear one int8 <-> float conversion).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from export import quant
from export.spec import Converted, Job
from models.errors import ToolkitError

# The op types quantize_static may quantize: those onnxruntime's CPU provider runs as integer kernels (QLinearConv,
# QGemm, QLinearMatMul, QLinearAdd/Mul/Concat/Sigmoid/pools) and those that only move int8 data. Left to its
# default list, quantize_static also wraps LayerNormalization, Slice, Gather, ... in QDQ pairs, and on
# Mobile-Former-like graphs the fused file then disagrees with its own QDQ arithmetic (docs/int8.md).
OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Concat", "Relu", "Clip", "Transpose", "Reshape", "Split",
            "MaxPool", "GlobalAveragePool", "AveragePool", "Sigmoid", "Squeeze", "Unsqueeze", "Flatten", "Resize",
            "Pad")
ACTIVATIONS = "QUInt8"
WEIGHTS = "QInt8"
_SHAPE = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "ReorderInput", "ReorderOutput"}


def convert(job: Job) -> Converted:
    return _pt2e(job) if job.converter == "pt2e" else _static(job)


def _static(job: Job) -> Converted:
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    from export import onnx as onnx_format

    stages: dict[str, float] = {}
    src, work, stages["fp32_export"] = job.source(onnx_format.convert, "work", stem="fp32")
    t = time.perf_counter()
    pre = work / "pre.onnx"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quant_pre_process(str(src.file), str(pre))
    stages["pre_process"] = time.perf_counter() - t
    batch = quant.calibration_batch(job)

    class Reader:
        def __init__(self):
            self.items = iter(batch)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"input": np.ascontiguousarray(x[None])}

    path = job.out_dir / f"{job.stem}.onnx"
    kept = attention_nodes(pre)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():  # scratch files: a TemporaryDirectory
        quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=getattr(QuantType, WEIGHTS), activation_type=getattr(QuantType, ACTIVATIONS),
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(OP_TYPES),
                        nodes_to_exclude=sorted(kept))
    stages["quantize_static"] = time.perf_counter() - t
    _drop(work)
    record = inspect(path)
    quant.require_int8(record, "onnxruntime's quantize_static")
    record["activation_type"], record["weight_type"] = ACTIVATIONS, WEIGHTS
    if kept:
        kinds = Counter(kept.values())
        record["kept_float_by_toolkit"] = (", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())) + ": attention "
                                           "stays float on onnxruntime (docs/int8.md)")
    reference = quant.Reference(_reference_runner(path), quant.INT8_PATHS[("onnx", "torch-dynamo")].reference,
                                record.get("output_step"))
    return Converted(path, "NCHW", {"opset": src.details.get("opset"), "nodes": record["file_nodes"], "int8": record,
                                    "stage_seconds": {k: round(v, 2) for k, v in stages.items()}},
                     reference=reference)


def attention_nodes(path: Path) -> dict[str, str]:
    """The attention nodes quantize_static is told to leave float: every Softmax, and every MatMul of two
    activations (no weight among its inputs). onnxruntime fuses them into QLinearSoftmax / QLinearMatMul whose
    results disagree with its own QDQ arithmetic, and quantizing them costs the float model most of its agreement
    (measured: docs/int8.md, "onnxruntime and attention"). MatMuls with a weight (linear layers) are quantized."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return {n.name: n.op_type for n in graph.node if n.op_type == "Softmax"
            or (n.op_type == "MatMul" and not any(i in weights for i in n.input))}


def _pt2e(job: Job) -> Converted:
    import onnx
    import torch

    q = quant.pt2e(job, "xnnpack")
    path = job.out_dir / f"{job.stem}.onnx"
    t = time.perf_counter()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on the quantized ops it maps
        program = torch.onnx.export(q.module, (job.example(),), dynamo=True, opset_version=max(21, _opset()),
                                    input_names=["input"], output_names=["logits"], external_data=False,
                                    verbose=False, optimize=True)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))
    seconds = {f"pt2e_{k}": v for k, v in q.seconds.items()} | {"onnx_export": time.perf_counter() - t}
    record = inspect(path)
    quant.require_int8(record, "the dynamo exporter of the PT2E-converted model")
    record.update({"scales_digest": q.scales_digest, "output_step": q.output_step})
    reference = quant.Reference(quant.torch_runner(q.module), "the converted PT2E model in PyTorch", q.output_step)
    return Converted(path, "NCHW", {"opset": record["opset"], "nodes": record["file_nodes"], "int8": record,
                                    "stage_seconds": {k: round(v, 2) for k, v in seconds.items()}},
                     reference=reference)


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_static logs through the root logger (a warning per LayerNorm weight it cannot quantize per
    channel, which it then quantizes per tensor); keep the CLI's lines clean."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _opset() -> int:
    from export.onnx import OPSET

    return OPSET


def _drop(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _reference_runner(path: Path):
    """The QDQ file with every graph optimisation off: quantize / dequantize as float arithmetic."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


# --------------------------------------------------------------------------------------------- the file
def _units(graph) -> tuple[dict[str, dict[str, int]], int]:
    """QDQ node units of a graph: per op type int8 / float, and the activation QuantizeLinear nodes."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name for i in graph.initializer}
    ops: dict[str, dict[str, int]] = {}
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        acts = [i for i in n.input if i and i not in inits and getattr(producer.get(i), "op_type", "") != "Constant"]
        int8 = bool(acts) and all(getattr(producer.get(i), "op_type", "") == "DequantizeLinear" for i in acts) and all(
            c.op_type == "QuantizeLinear" for o in n.output for c in consumers.get(o, [])) and any(
            consumers.get(o) for o in n.output)
        slot = ops.setdefault(n.op_type, {"int8": 0, "float": 0})
        slot["int8" if int8 else "float"] += 1
    quantizes = sum(1 for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    return ops, quantizes


def _runtime_graph(path: Path):
    """The graph onnxruntime runs after all its optimisations (the session this host loads)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return onnx.load(str(Path(d) / "optimized.onnx")).graph


def inspect(path: Path) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf errors of a damaged file
        raise ToolkitError(f"{path} is not a readable ONNX file: {type(exc).__name__}") from None
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    weights: Counter[str] = Counter()
    for i in graph.initializer:
        if len(i.dims) >= 2:
            weights[onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name] += 1
    file_ops, _ = _units(graph)
    run = _runtime_graph(path)
    ops: dict[str, dict[str, int]] = {}
    conversions = 0
    for n in run.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            conversions += n.input[0] not in {i.name for i in run.initializer}
            continue
        if n.op_type.startswith("QLinear") or n.op_type in ("QGemm", "ConvInteger", "MatMulInteger"):
            kind, where = n.op_type.removeprefix("QLinear").removeprefix("Q"), "int8"
        else:
            kind, where = n.op_type, "float"
        if n.op_type in _SHAPE:
            kind = n.op_type
        ops.setdefault(kind, {"int8": 0, "float": 0})[where] += 1
    step = None
    out = graph.output[0].name
    last = next((n for n in graph.node if out in n.output), None)
    if last is not None and last.op_type == "DequantizeLinear" and last.input[1] in inits:
        step = float(numpy_helper.to_array(inits[last.input[1]]).reshape(-1)[0])
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return quant.op_record(ops, conversions, where="kernels onnxruntime runs on this CPU after its graph "
                           "optimisations (QLinear*/QGemm = int8)", weights=dict(weights),
                           file_qdq_units=quant.op_record(file_ops, sum(1 for n in graph.node
                                                                        if n.op_type == "QuantizeLinear"),
                                                          where="QDQ node units of the file")["summary"],
                           file_nodes=len(graph.node), output_step=step, opset=opset)
