"""TFLite int8 from litert-torch, two ways, and what a quantized .tflite computes in int8.

    litert-torch       the flow Google recommends: the fp32 litert-torch export (export/tflite.py), then
                       ai-edge-quantizer's static_wi8_ai8 recipe calibrated on the calibration set (per-channel
                       int8 weights, int8 activations, float32 input and output). It has no PyTorch-side
                       reference: the quantized reference is the same file on LiteRT's reference kernels
                       (OpResolverType.BUILTIN_REF: no XNNPACK, TFLite's portable integer kernels).
    litert-torch-pt2e  litert-torch's own PT2E path: its PT2EQuantizer (per-channel symmetric weights) on the shared
                       capture, calibrated, converted with fold_quantize=False and handed to litert_torch.convert
                       with the quantizer in its QuantConfig. The quantized reference is the converted module in
                       PyTorch. A family it cannot lower is one line saying so (the other TFLite converters remain).

inspect(file) reads the flatbuffer: an operator whose output tensor is an integer type ran in int8 (int16 / int32
where the kernel needs it), one with a float output stayed float; QUANTIZE (float -> int8) and DEQUANTIZE
(int8 -> float) of activations are the conversions. The weight tensors' types are listed beside it.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from export import quant
from export.spec import Converted, Job
from models.errors import ToolkitError

_INT = {"INT8", "UINT8", "INT16", "INT32"}


def convert(job: Job) -> Converted:
    return _pt2e(job) if job.converter == "litert-torch-pt2e" else _static(job)


def _static(job: Job) -> Converted:
    from export import tflite

    stages: dict[str, float] = {}
    src, work, stages["fp32_export"] = job.source(tflite.convert, "work", stem="fp32")
    path = job.out_dir / f"{job.stem}.tflite"
    t = time.perf_counter()
    recipe_name = aeq_static(src.file, path, quant.calibration_batch(job), "litert-torch's fp32 file")
    stages["ai_edge_quantizer"] = time.perf_counter() - t
    import shutil

    shutil.rmtree(work)
    return finish(job, path, stages, f"ai-edge-quantizer {recipe_name}", reference_kernels(path))


def aeq_static(src: Path, dst: Path, batch, what: str) -> str:
    """Quantize the float .tflite `src` with ai-edge-quantizer's static int8 recipe, calibrated on `batch`
    (NCHW, normalised; transposed when the file takes NHWC). Returns the recipe's name."""
    import numpy as np

    from export import tflite

    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as exc:
        raise ToolkitError(f"int8 TFLite needs ai-edge-quantizer, which cannot be imported ({exc})") from None
    interp = tflite._interpreter(src, 1)
    signatures = interp.get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    shape = tuple(interp.get_input_details()[0]["shape"])
    nhwc = shape[-1] == 3 and shape[1] != 3
    samples = [{name: np.ascontiguousarray((x.transpose(1, 2, 0) if nhwc else x)[None])} for x in batch]
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            q = quantizer.Quantizer(bytes(Path(src).read_bytes()), recipe.static_wi8_ai8())
            result = q.calibrate({key: samples}, num_threads=1)
            out = q.quantize(result, enable_progress_bar=False, enable_progress_report=False)
    except Exception as exc:  # noqa: BLE001 - a quantizer failure is a one-line error
        raise ToolkitError(f"ai-edge-quantizer could not quantize {what} to int8: {type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]}") from None
    Path(dst).write_bytes(out.quantized_model)
    return "static_wi8_ai8"


def _pt2e(job: Job) -> Converted:
    import torch
    import torch._dynamo  # noqa: F401 - before litert-torch (TOOLCHAIN.md)

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    q = quant.pt2e(job, "litert")
    stages = {f"pt2e_{k}": v for k, v in q.seconds.items()}
    path = job.out_dir / f"{job.stem}.tflite"
    t = time.perf_counter()
    chatter = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            edge = litert_torch.convert(q.module, (job.example(),),
                                        quant_config=QuantConfig(pt2e_quantizer=q.quantizer))
        edge.export(str(path))
    except Exception as exc:  # noqa: BLE001 - a family this path cannot lower: one line, the others remain
        raise ToolkitError(f"litert-torch's PT2E path cannot convert {job.name}: {type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]} (int8 TFLite of it: --converter litert-torch or "
                           "onnx2tf)") from None
    stages["litert_torch_convert"] = time.perf_counter() - t
    reference = quant.Reference(quant.torch_runner(q.module), "the converted PT2E model in PyTorch", q.output_step)
    converted = finish(job, path, stages, "litert-torch PT2EQuantizer", reference)
    converted.details["int8"]["scales_digest"] = q.scales_digest
    return converted


def finish(job: Job, path: Path, stages: dict[str, float], tool: str, reference: quant.Reference) -> Converted:
    """The manifest details of a quantized .tflite: the flatbuffer's figures, delegation, the int8 record."""
    from export import tflite

    details = tflite.inspect(path)
    if details["flex_op_count"] or details["custom_op_count"]:
        raise ToolkitError(f"{tool} produced ops LiteRT's builtin runtime cannot run: {details['custom_ops']}")
    details["delegation"] = tflite.delegation(path)
    record = inspect(path)
    quant.require_int8(record, tool)
    if reference.step is None:
        reference.step = record.get("output_step")
    details["int8"] = record
    details["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    return Converted(path, "NHWC" if job.converter == "onnx2tf" else "NCHW", details, reference=reference)


def reference_kernels(path: Path, nhwc: bool = False) -> quant.Reference:
    """The same file on LiteRT's reference kernels (no XNNPACK): the quantized reference of files that have no
    PyTorch-side one. It takes NCHW batches like every reference (an NHWC file's are transposed here).

    The reference kernels run in a child process: on some files they abort the process (SIGABRT inside LiteRT's
    reference FULLY_CONNECTED / BATCH_MATMUL path: Mobile-Former-294M's full-integer file at 224, while XNNPACK
    runs the same file), and an abort in the export's own process would end the CLI with no line at all. In a
    child it is one failed check ("the quantized reference failed: ... aborted") and the next format still runs."""

    def run(x):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                return pool.submit(_on_reference_kernels, str(path), nhwc, x).result()
            except BrokenProcessPool:
                raise RuntimeError("LiteRT's reference kernels aborted on this file (the child process died); "
                                   "XNNPACK ran it") from None

    return quant.Reference(run, "the same file on LiteRT's reference kernels (no XNNPACK)", None)


def _on_reference_kernels(path: str, nhwc: bool, x):
    """In the child: one batch through the file on the reference kernels (NCHW in, logits out)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from export import tflite

    interp = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    run = tflite.runner(interp, Path(path))
    return run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x)


# --------------------------------------------------------------------------------------------- the file
def inspect(file: Path) -> dict[str, Any]:
    """Per builtin op kind, how many produce integer tensors (int8) and how many float ones (see the docstring)."""
    from export import tflite

    model, op_codes, types = tflite.read_model(file)
    codes = [name if builtin else "CUSTOM" for builtin, name in op_codes]
    sg = model.Subgraphs(0)
    def has_data(t: int) -> bool:
        b = sg.Tensors(t).Buffer()
        return b < model.BuffersLength() and bool(model.Buffers(b).DataLength() or model.Buffers(b).Size())

    constant = {t for t in range(sg.TensorsLength()) if has_data(t)}
    ops: dict[str, dict[str, int]] = {}
    weights: Counter[str] = Counter()
    conversions = 0
    for t in constant:
        if sg.Tensors(t).ShapeLength() >= 2:
            weights[types.get(sg.Tensors(t).Type(), "?")] += 1
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        name = codes[op.OpcodeIndex()]
        ins = [op.Inputs(k) for k in range(op.InputsLength()) if op.Inputs(k) >= 0]
        if name in ("QUANTIZE", "DEQUANTIZE"):
            conversions += not all(i in constant for i in ins)
            continue
        out = sg.Tensors(op.Outputs(0)) if op.OutputsLength() else None
        kind = "int8" if out is not None and types.get(out.Type()) in _INT else "float"
        ops.setdefault(name, {"int8": 0, "float": 0})[kind] += 1
    out_index = sg.Outputs(0)
    qp = sg.Tensors(out_index).Quantization()
    step = float(qp.Scale(0)) if types.get(sg.Tensors(out_index).Type()) in _INT and qp and qp.ScaleLength() else None
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        if codes[op.OpcodeIndex()] == "DEQUANTIZE" and op.Outputs(0) == out_index:
            qp = sg.Tensors(op.Inputs(0)).Quantization()
            if qp is not None and qp.ScaleLength():
                step = float(qp.Scale(0))
    return quant.op_record(ops, conversions, where="operators of the .tflite (integer output = int8)",
                           weights=dict(weights), output_step=step)
