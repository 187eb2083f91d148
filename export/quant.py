"""int8 on every format: which converter quantizes how, the shared PT2E step, the op-kind record, and the
comparison with the quantized reference in output steps.

    INT8_PATHS[(format, converter)] -> Int8Path   (module, packages, how, reference)
    int8_path(spec, converter) -> Int8Path        (one line naming the converters that can, when this one cannot)
    pt2e(job, flavour) -> Quantized               (prepare -> calibrate -> convert, once per process and model)
    op_record(ops, conversions, ...) -> dict      (the manifest's "int8" op histogram: per op kind int8 / float)
    step_figures(ref, got, step) -> dict          (agreement with the quantized reference, in output steps)

Every format quantizes the way its own toolchain does it (static post-training quantization, per-channel symmetric
int8 weights, activations calibrated on photographs: export/calibration.py); docs/int8.md has the measurements and
the parity bounds. The converters that exist for int8 only (the second ONNX converter, litert-torch's own PT2E path,
Core ML's weight-only quantization) are declared here and attached to their format by export/formats.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.spec import Converter
from models.errors import ToolkitError

XNNPACK_PT2E = "PT2E (torchao prepare/convert) with ExecuTorch's XNNPACKQuantizer, per-channel symmetric weights"


@dataclass(frozen=True)
class Int8Path:
    module: str  # export.<module>.convert(job) makes the int8 artifact of this converter
    packages: tuple[str, ...]  # distributions identifying the quantizer (beside the converter's, in the cache key)
    how: str  # the toolchain's own flow, one line (manifest)
    reference: str  # what the artifact is compared with in output steps
    depends: tuple[str, ...] = ()  # export modules whose code its artifacts depend on


# The int8-only converters, attached to their formats by export/formats.py (they make no fp32 / fp16 artifacts).
EXTRA_CONVERTERS: dict[str, tuple[Converter, ...]] = {
    "onnx": (Converter("pt2e", ("torch", "torchao", "onnx", "onnxscript"), "int8_onnx", precisions=()),),
    "tflite": (Converter("litert-torch-pt2e", ("litert-torch", "ai-edge-litert", "torchao"), "int8_tflite",
                         precisions=()),),
    "coreml": (Converter("coremltools-weights", ("coremltools", "torch"), "int8_coreml", precisions=()),),
}

INT8_PATHS: dict[tuple[str, str], Int8Path] = {
    ("onnx", "torch-dynamo"): Int8Path(
        "int8_onnx", ("onnxruntime",),
        "onnxruntime quantize_static after quant_pre_process: QDQ, per-channel symmetric int8 weights, uint8 "
        "activations (MinMax calibration)",
        "the same QDQ file in onnxruntime with graph optimisations off (quantize / dequantize computed in float)",
        ("onnx",)),
    ("onnx", "pt2e"): Int8Path(
        "int8_onnx", ("executorch",), XNNPACK_PT2E + "; the converted graph exported by torch.onnx (dynamo)",
        "the converted PT2E model in PyTorch (the .pte's scales)", ("onnx",)),
    ("tflite", "litert-torch"): Int8Path(
        "int8_tflite", ("ai-edge-quantizer",),
        "ai-edge-quantizer's static_wi8_ai8 recipe on the fp32 litert-torch file (per-channel int8 weights, int8 "
        "activations)", "the same file on LiteRT's reference kernels (no XNNPACK)", ("tflite",)),
    ("tflite", "litert-torch-pt2e"): Int8Path(
        "int8_tflite", (),
        "litert-torch's PT2EQuantizer (per-channel symmetric weights), converted with fold_quantize=False",
        "the converted PT2E model in PyTorch", ("tflite",)),
    ("tflite", "onnx2tf"): Int8Path(
        "int8_onnx2tf", (),
        "onnx2tf's integer quantization (-oiqt: the TFLite converter with our calibration images, per-channel int8 "
        "weights, int8 activations, float32 input and output)",
        "the same file on LiteRT's reference kernels (no XNNPACK)", ("onnx", "tflite", "tflite_onnx2tf")),
    ("executorch", "xnnpack"): Int8Path(
        "int8_executorch", ("torchao",), XNNPACK_PT2E + ", lowered with the XNNPACK partitioner",
        "the converted PT2E model in PyTorch", ("executorch",)),
    ("coreml", "coremltools"): Int8Path(
        "int8_coreml", ("torchao", "executorch"),
        XNNPACK_PT2E + ", the converted program through coremltools (int8 weights, activation quantize / dequantize, "
        "iOS17)", "not run: needs macOS", ("coreml",)),
    ("coreml", "coremltools-weights"): Int8Path(
        "int8_coreml", (),
        "coremltools linear_quantize_weights on the fp32 ML program: weight-only int8, per-channel symmetric "
        "(activations stay float16/float32)", "not run: needs macOS", ("coreml",)),
}

# Artifacts that carry the same scales (one PT2E conversion) and run in different int8 runtimes: each is compared
# with its twin when the twin is in the same artifacts root (export/parity.py cross_check)
TWINS = {("executorch", "xnnpack"): ("onnx", "pt2e"), ("onnx", "pt2e"): ("executorch", "xnnpack")}

MODULES = ("quant", "calibration")  # the int8 pipeline's own code, part of every int8 artifact's code hash


def int8_path(spec, conv: Converter) -> Int8Path:
    """How `conv` of format `spec` makes int8; a converter without a way is one line naming those with one."""
    path = INT8_PATHS.get((spec.name, conv.name))
    if path is None:
        can = [c.name for c in spec.converters if (spec.name, c.name) in INT8_PATHS]
        raise ToolkitError(f"{spec.name} converter {conv.name} cannot make int8 artifacts; int8 {spec.name} is made "
                           f"by: {', '.join(can) or 'none'}")
    return path


def float_check(spec, conv: Converter, precision: str) -> None:
    """An int8-only converter asked for a float precision is one line naming the converters that can."""
    if precision != "int8" and precision not in conv.precisions:
        can = [c.name for c in spec.converters if precision in c.precisions]
        raise ToolkitError(f"{spec.name} converter {conv.name} makes int8 artifacts only; {precision} {spec.name} is "
                           f"made by: {', '.join(can)}")


def supports(spec, conv: Converter, precision: str) -> bool:
    return (spec.name, conv.name) in INT8_PATHS if precision == "int8" else precision in conv.precisions


# --------------------------------------------------------------------------------------------- PT2E
@dataclass
class Quantized:
    """A PT2E-converted model: the module (the eager quantized reference), its scales digest, its output step."""

    module: Any
    scales_digest: str
    output_step: float | None
    flavour: str
    seconds: dict[str, float]
    quantizer: Any = None  # the quantizer that annotated it (litert-torch's converter wants it back)


_PT2E: dict[str, tuple[tuple, Quantized]] = {}


def calibration_batch(job) -> np.ndarray:
    import models

    s = models.spec(job.name)
    return job.calibration.batch(job.resolution, s.mean, s.std)


def pt2e(job, flavour: str = "xnnpack") -> Quantized:
    """prepare_pt2e -> calibrate on the job's calibration set -> convert_pt2e, on the shared capture's module.

    flavour "xnnpack": ExecuTorch's XNNPACKQuantizer (per-channel symmetric), weights folded to int8 (the .pte,
    the second ONNX converter and Core ML share it, so the three carry the same scales); "litert": litert-torch's
    PT2EQuantizer, weights left as quantize ops (fold_quantize=False, what litert-torch's converter expects).
    One result per flavour is kept per process (the formats of one model follow each other).
    """
    import time

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    key = (id(job.model), job.name, job.resolution, job.calibration.digest, flavour)
    if _PT2E.get(flavour, (None,))[0] == key:
        return _PT2E[flavour][1]
    if flavour == "xnnpack":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
    else:
        import torch._dynamo  # noqa: F401 - before litert-torch (TOOLCHAIN.md)
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer as XNNPACKQuantizer
        from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    seconds = {}
    t = time.perf_counter()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    with torch.no_grad():
        prepared = prepare_pt2e(job.exported_program().module(), quantizer)
        seconds["prepare"] = time.perf_counter() - t
        t = time.perf_counter()
        for x in calibration_batch(job):
            prepared(torch.from_numpy(x[None]))
        seconds["calibrate"] = time.perf_counter() - t
        t = time.perf_counter()
        converted = convert_pt2e(prepared, fold_quantize=flavour == "xnnpack")
        seconds["convert"] = time.perf_counter() - t
    q = Quantized(converted, scales_digest(converted), fx_output_step(converted), flavour,
                  {k: round(v, 2) for k, v in seconds.items()}, quantizer)
    _PT2E[flavour] = (key, q)  # one per flavour: a model's formats follow each other in a process
    return q


def _is_q(node, kind: str) -> bool:
    return node.op == "call_function" and f"{kind}_per_" in str(node.target)


def scales_digest(gm) -> str:
    """sha256 over every quantize node's scale and zero point, in graph order: equal digests, equal scales."""
    h = hashlib.sha256()
    for n in gm.graph.nodes:
        if _is_q(n, "quantize"):
            h.update(repr([a for a in n.args[1:] if not hasattr(a, "op")]).encode())
    return h.hexdigest()[:16]


def fx_output_step(gm) -> float | None:
    """The scale of the dequantize feeding the graph output (one step of the logits), if the output is quantized."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    src = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
    if hasattr(src, "op") and _is_q(src, "dequantize") and isinstance(src.args[1], float):
        return float(src.args[1])
    return None


def fx_histogram(gm) -> tuple[dict[str, dict[str, int]], int]:
    """Per op kind of a PT2E-converted graph: how many run between dequantize and quantize (int8) and how many
    on float tensors; and the number of quantize / dequantize nodes on activations."""
    ops: dict[str, dict[str, int]] = {}
    conversions = 0
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if _is_q(n, "quantize") or _is_q(n, "dequantize"):
            if not (_is_q(n, "dequantize") and getattr(n.args[0], "op", "") in ("get_attr", "placeholder")
                    and "weight" in str(n.args[0].target)):
                conversions += 1
            continue
        name = str(getattr(n.target, "__name__", n.target)).removeprefix("aten.").split(".")[0]
        if name in ("getitem",):
            continue
        ins = [a for a in n.args if hasattr(a, "op")]
        int8 = bool(ins) and all(_is_q(a, "dequantize") for a in ins) and bool(n.users) and all(
            _is_q(u, "quantize") for u in n.users)
        slot = ops.setdefault(name, {"int8": 0, "float": 0})
        slot["int8" if int8 else "float"] += 1
    return ops, conversions


# --------------------------------------------------------------------------------------------- the record
SHAPE_OPS = frozenset({"view", "reshape", "view_copy", "permute", "permute_copy", "flatten", "transpose",
                       "RESHAPE", "TRANSPOSE", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
                       "squeeze", "unsqueeze", "clone", "contiguous", "slice", "slice_copy", "expand", "Identity",
                       "XNNStaticReshape", "XNNStaticTranspose", "XNNStaticSlice", "XNNCopy"})


def op_record(ops: dict[str, dict[str, int]], conversions: int, *, where: str, weights: dict[str, int] | None = None,
              **extra: Any) -> dict[str, Any]:
    """The manifest's int8 op histogram: per op kind, how many ran in int8 and how many stayed float.

    `where` says what was counted (e.g. "XNNPACK delegate nodes of the .pte"); `conversions` is the number of
    quantize / dequantize steps between an int8 and a float op inside the graph (each boundary pays one)."""
    ops = {k: v for k, v in sorted(ops.items()) if v["int8"] or v["float"]}
    compute = {k: v for k, v in ops.items() if k not in SHAPE_OPS}
    n_int8 = sum(v["int8"] for v in compute.values())
    n_float = sum(v["float"] for v in compute.values())
    floats = dict(sorted(((k, v["float"]) for k, v in compute.items() if v["float"]), key=lambda kv: (-kv[1], kv[0])))
    summary = f"{n_int8}/{n_int8 + n_float} compute ops int8"
    if floats:
        summary += "; float: " + ", ".join(f"{k} x{v}" for k, v in floats.items())
    summary += f"; {conversions} int8<->float conversions"
    record = {"counted": where, "ops": ops, "int8_ops": n_int8, "float_ops": n_float, "float_op_kinds": floats,
              "conversions": conversions, "summary": summary}
    if weights is not None:
        record["weight_dtypes"] = dict(sorted(weights.items()))
    return record | extra


def require_int8(record: dict[str, Any], what: str) -> None:
    """A quantizer that left every compute op float made no int8 artifact: one line, nothing written."""
    if not record["int8_ops"]:
        raise ToolkitError(f"{what} produced no int8 operator ({record['summary']}); refusing to call it int8")


# --------------------------------------------------------------------------------------------- reference figures
@dataclass
class Reference:
    """The quantized reference an int8 artifact is compared with: its runner, what it is, one output step."""

    run: Any  # NCHW float32 batch of one -> logits
    what: str
    step: float | None


def torch_runner(module):
    """A numpy-in, numpy-out runner of a (quantized) torch module."""
    import torch

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run
