"""Core ML int8, two ways, validated structurally on Linux (parity "not run: needs macOS").

    coremltools          the PT2E-converted program (export.quant.pt2e, the XNNPACK quantizer's scales: the ones
                         of the .pte) through coremltools after `run_decompositions({})`: convolutions and linear
                         layers with int8 weights, activations quantized and dequantized around them. The target
                         is iOS17, the first whose ML programs have activation quantize / dequantize ops. W8A8
                         runs in int8 only on the Neural Engine of A17 Pro / M4 and later; elsewhere Core ML
                         dequantizes.
    coremltools-weights  the fp32 ML program (export/coreml.py) with coremltools' linear_quantize_weights:
                         weight-only int8, per-channel symmetric; activations stay float (what most Core ML users
                         ship: a quarter of the weights' size, float compute).

coremltools' own CoreMLQuantizer imports torch.ao.quantization.quantizer, gone in torch 2.14, so the activation
scales come from the XNNPACK quantizer. inspect(package) walks the MIL program: an op whose tensor inputs all come
from `dequantize` and whose outputs all go to `quantize` is counted int8, every other compute op float; each
activation quantize / dequantize is a conversion, each constexpr dequantization of an int8 constant an int8 weight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

from export import quant
from export.spec import Converted, Job
from models.errors import ToolkitError

DEPLOYMENT_TARGET = "iOS17"
_CONVERSIONS = {"quantize", "dequantize"}
_CONSTEXPR = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense")


def convert(job: Job) -> Converted:
    return _weights(job) if job.converter == "coremltools-weights" else _w8a8(job)


def _w8a8(job: Job) -> Converted:
    import numpy as np
    import torch

    from export import coreml

    q = quant.pt2e(job, "xnnpack")
    t = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(q.module, (job.example(),)).run_decompositions({})
    ct = coreml.coremltools()  # after torch's compiler stack (TOOLCHAIN.md)
    h, w = job.resolution
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        model = ct.convert(program, convert_to="mlprogram",
                           inputs=[ct.TensorType(name=coreml.INPUT_NAME, shape=(1, 3, h, w), dtype=np.float32)],
                           outputs=[ct.TensorType(name=coreml.OUTPUT_NAME, dtype=np.float32)],
                           minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                           compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    stages = {f"pt2e_{k}": v for k, v in q.seconds.items()} | {"coremltools": time.perf_counter() - t}
    converted = _save(job, model, stages, f"{job.name} at {h}x{w} (int8 weights and activations, PT2E scales)")
    converted.details["int8"]["scales_digest"] = q.scales_digest
    return converted


def _weights(job: Job) -> Converted:
    from export import coreml

    t = time.perf_counter()
    work = job.out_dir / "work"
    work.mkdir()
    src = coreml.convert(dataclasses.replace(job, out_dir=work, precision="fp32", converter="coremltools",
                                             stem="fp32"))
    ct = coreml.coremltools()
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                      granularity="per_channel"))
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        model = linear_quantize_weights(ct.models.MLModel(str(src.file), skip_model_load=True), config=config)
    stages = {"coremltools_weights": time.perf_counter() - t}
    h, w = job.resolution
    converted = _save(job, model, stages, f"{job.name} at {h}x{w} (int8 weights, float activations)",
                      target=coreml.DEPLOYMENT_TARGET)
    import shutil

    shutil.rmtree(work)
    return converted


def _save(job: Job, model, stages: dict[str, float], description: str, target: str = DEPLOYMENT_TARGET) -> Converted:
    from export import coreml

    model.short_description = description
    path = job.out_dir / f"{job.stem}.mlpackage"
    model.save(str(path))
    debug_map = path / "executorch_debug_handle_mapping.json"
    if debug_map.exists():
        debug_map.unlink()
    details = coreml.validate(path, (1, 3, *job.resolution))
    details["deployment_target"] = target
    record = inspect(path)
    if job.converter != "coremltools-weights":
        quant.require_int8(record, "coremltools")
    elif not record["weight_dtypes"].get("int8"):
        raise ToolkitError("coremltools' linear_quantize_weights left no int8 weight")
    return Converted(path, "NCHW", {"coreml": details, "nodes": details["op_count"], "int8": record,
                                    "stage_seconds": {k: round(v, 2) for k, v in stages.items()}},
                     reference=None)


# --------------------------------------------------------------------------------------------- the package
def inspect(path: Path) -> dict[str, Any]:
    """Per MIL op kind, int8 (between dequantize and quantize) or float; conversions; int8 constants."""
    from export import coreml

    ct = coreml.coremltools()
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    producer: dict[str, str] = {}
    consumers: dict[str, list[str]] = {}
    operations = []

    def walk(block) -> None:
        for op in block.operations:
            operations.append(op)
            for o in op.outputs:
                producer[o.name] = op.type
            for arg in op.inputs.values():
                for a in arg.arguments:
                    if a.WhichOneof("binding") == "name":
                        consumers.setdefault(a.name, []).append(op.type)
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    ops: dict[str, dict[str, int]] = {}
    weights: Counter[str] = Counter()
    conversions = 0
    for op in operations:
        if op.type == "const":
            continue
        if op.type.startswith(_CONSTEXPR):
            weights["int8"] += 1
            continue
        if op.type in _CONVERSIONS:
            conversions += 1
            continue
        ins = [a.name for arg in op.inputs.values() for a in arg.arguments if a.WhichOneof("binding") == "name"
               and producer.get(a.name) not in (None, "const") and not producer[a.name].startswith(_CONSTEXPR)]
        outs = [c for o in op.outputs for c in consumers.get(o.name, [])]
        int8 = bool(ins) and all(producer[i] == "dequantize" for i in ins) and bool(outs) and all(
            c == "quantize" for c in outs)
        ops.setdefault(op.type, {"int8": 0, "float": 0})["int8" if int8 else "float"] += 1
    return quant.op_record(ops, conversions, where="MIL ops of the ML program (structure; Core ML decides at load "
                           "time what runs in int8)", weights=dict(weights))
