"""TFLite through onnx2tf: torch.export capture -> ONNX (export/onnx.py) -> onnx2tf (subprocess) -> NHWC .tflite.

The converter our users named: its files take NHWC input, which is what phone delegates like. Loading and the
runtime are shared with litert-torch's files (export/tflite.py); the manifest says "NHWC" and export.load transposes
NCHW batches, so callers never see the layout.

Decisions (each met on this machine; docs/export.md keeps the measurements, per model):
* The ONNX file is the ONNX format module's own conversion of the shared capture; onnx2tf gets a copy (it rewrites
  its input in place).
* onnx2tf imports TensorFlow, and TensorFlow imported before torch._dynamo kills the process: it runs in a
  subprocess that calls onnx2tf.convert and onnx2tf's own float32 TFLite step, nothing more.
* Its calibration sample file is written locally first (a seeded array of the expected shape): nothing is fetched.
* `-rtpo erf`: an exact GELU reaching ONNX as Div/Erf/Add/Mul/Mul would otherwise become a Flex op; onnx2tf's
  pseudo-Erf writes it with builtin ops (|error| <= 1.5e-7).
* Parameter replacement: every Reshape whose rank-4 output has the shape of some Conv output (a feature map) gets an
  explicit NCHW->NHWC transpose, so feature maps are in one layout at every resolution (onnx2tf#105's trap).
* `-nuo` (no onnxsim): node names in the replacement file must be the exported graph's own.
* Fast first, strict when needed: fast mode (`-dsm`), checked against onnxruntime on the same ONNX file; strict
  mode when they differ (fast mode is silently wrong on some files). The manifest records the mode and the check.
* fp16 means one thing for every TFLite converter: litert-torch's weight-only float16 recipe, applied with
  ai-edge-quantizer to onnx2tf's checked float32 file.
* Delegation: onnx2tf turns a token pick (`z[:, 0]`) into GATHER and a hard-sigmoid into RELU_0_TO_1, neither of
  which XNNPACK takes; the manifest's delegation lists them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from export.spec import Converted, Job
from models.errors import ToolkitError

# onnx2tf.convert() arguments; `output_signaturedefs` is its command line's default (the function's is False), the
# others are the command line's -n -nuo -rtpo erf (see the module docstring), -dsm and -prf
OPTIONS = {"non_verbose": True, "not_use_onnxsim": True, "replace_to_pseudo_operators": ["erf"],
           "output_signaturedefs": True}
FAST = {"disable_strict_mode": True}  # -dsm: skip onnx2tf's per-op accuracy search
CALIBRATION = "calibration_image_sample_data_20x128x128x3_float32.npy"
TIMEOUT_S = 3600
WORK = "onnx2tf-work"  # the work folder in the job's output directory
CHECK_SAMPLES = 2


def convert(job: Job) -> Converted:
    from export import onnx as onnx_format
    from export import tflite

    src, work, onnx_s = job.source(onnx_format.convert, WORK, converter="torch-dynamo", stem="source")
    seconds = {"onnx": onnx_s}
    _write_calibration(work / CALIBRATION)
    replacements = layout_replacements(src.file)
    options = dict(OPTIONS)
    if replacements:
        (work / "replace.json").write_text(json.dumps({"format_version": 1, "operations": replacements}, indent=1))
        options["param_replacement_file"] = "replace.json"

    t1 = time.perf_counter()
    out = _onnx2tf(src.file, work, "fast", options | FAST, job)
    seconds["onnx2tf_fast"] = time.perf_counter() - t1
    check = _check_against_onnx(src.file, out)
    mode = "fast (-dsm), checked against onnxruntime"
    if not check["ok"]:  # onnx2tf's default transposes got the layout wrong: let its strict search fix it
        t2 = time.perf_counter()
        out = _onnx2tf(src.file, work, "strict", options, job)
        seconds["onnx2tf_strict"] = time.perf_counter() - t2
        first, check = check, _check_against_onnx(src.file, out)
        mode = (f"strict (fast mode was wrong: max_rel {first['max_rel']:.1e}, cosine {first['cosine']:.4f})")
    path = job.out_dir / f"{job.stem}.tflite"
    fp16 = None
    if job.precision == "fp16":
        t3 = time.perf_counter()
        fp16 = weight_fp16(out, path)
        seconds["fp16_weights"] = time.perf_counter() - t3
    else:
        shutil.move(out, path)
    shutil.rmtree(work)
    details = tflite.inspect(path)
    if details["flex_op_count"] or details["custom_op_count"]:
        raise ToolkitError(f"onnx2tf produced ops LiteRT's builtin runtime cannot run: {details['custom_ops']}")
    details["delegation"] = tflite.delegation(path)
    details.update({"onnx_opset": src.details.get("opset"), "onnx2tf_options": options,
                    "onnx2tf_mode": mode, "onnx2tf_check": check,
                    "param_replacements": [f"{r['op_name']}: {r['param_name']} -> NHWC" for r in replacements],
                    "stage_seconds": {k: round(v, 2) for k, v in seconds.items()}})
    if fp16 is not None:
        details["fp16"] = fp16
    return Converted(path, "NHWC", details)


def _onnx2tf(onnx_file: Path, work: Path, tag: str, options: dict[str, Any], job: Job,
             entry: str = "export.tflite_onnx2tf", out_name: str | None = None, args: tuple[str, ...] = ()) -> Path:
    """onnx2tf in a subprocess (`<entry>._subprocess`) on a fresh copy of the ONNX file (it rewrites its input)."""
    shutil.copyfile(onnx_file, work / f"{tag}.onnx")
    out = work / (out_name or f"{tag}_float32.tflite")
    cmd = [sys.executable, "-c", f"import sys, {entry} as m; m._subprocess(*sys.argv[1:])",
           f"{tag}.onnx", out.name, json.dumps(options), *args]
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    log = work / f"{tag}.log"
    try:
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolkitError(f"onnx2tf did not finish {job.name} within {TIMEOUT_S} s") from None
    if proc.returncode != 0 or not out.is_file():
        raise ToolkitError(f"onnx2tf failed on {job.name} at {job.resolution[0]}x{job.resolution[1]} "
                           f"(exit {proc.returncode}): {_error_line(log.read_text(errors='replace'))}")
    return out


def _subprocess(onnx_file: str, out_file: str, options: str) -> None:
    """In the subprocess: onnx2tf's ONNX -> Keras conversion, then its float32 TFLite step, and nothing else.

    onnx2tf's command line would also write a SavedModel and a float16 .tflite, neither of which we use (6-9 s of
    the 45-60 s it takes on Mobile-Former 26m). `disable_model_save` makes onnx2tf.convert return the Keras model
    instead; the TFLite step is the one onnx2tf runs for its float32 file: a concrete function of the model, and
    TFLiteConverter with builtin plus Select TF ops, batch-matmul unfolding off (a Flex op in the result is then
    rejected by `convert` with a clear error).
    """
    import onnx2tf
    import tensorflow as tf

    model = onnx2tf.convert(input_onnx_file_path=onnx_file, output_folder_path="onnx2tf-out", disable_model_save=True,
                            **json.loads(options))
    spec = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs]
    concrete = tf.function(lambda *inputs: model(inputs), input_signature=spec).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.unfold_batchmatmul = False
    Path(out_file).write_bytes(converter.convert())


def fp16_recipe() -> list[dict[str, Any]]:
    """litert-torch's `full_fp16_recipe`, translated by litert-torch itself into an ai-edge-quantizer recipe."""
    import torch._dynamo  # noqa: F401 - before litert-torch (TOOLCHAIN.md; it does not import TensorFlow itself)

    try:
        from litert_torch.generative.quantize import quant_recipes
        from litert_torch.quantize import translate_recipe
    except ImportError as exc:
        raise ToolkitError(f"fp16 with onnx2tf applies litert-torch's fp16 recipe, and litert-torch cannot be "
                           f"imported ({exc})") from None

    return translate_recipe.translate_to_ai_edge_recipe(quant_recipes.full_fp16_recipe().generative_recipe)


def weight_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Write `src` (a float32 .tflite) to `dst` with fp16 as litert-torch makes it; the manifest's record of how."""
    from export.core import package_version

    recipe = fp16_recipe()
    try:
        from ai_edge_quantizer import quantizer
    except ImportError as exc:
        raise ToolkitError(f"fp16 with onnx2tf needs ai-edge-quantizer, which cannot be imported ({exc})") from None
    chatter = io.StringIO()  # one of its progress bars ignores enable_progress_bar; keep the CLI's lines clean
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            result = quantizer.Quantizer(bytes(Path(src).read_bytes()), recipe).quantize(
                enable_progress_bar=False, enable_progress_report=False)
    except Exception as exc:  # noqa: BLE001 - a quantizer failure on onnx2tf's graph is a one-line error
        raise ToolkitError(f"ai-edge-quantizer could not apply the fp16 recipe to onnx2tf's float32 file: "
                           f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    Path(dst).write_bytes(result.quantized_model)
    return {"source": "onnx2tf's float32 .tflite (the file checked against onnxruntime)",
            "recipe": "litert-torch full_fp16_recipe: weight-only float16 (FLOAT_CAST), activations float32",
            "tool": f"ai-edge-quantizer {package_version('ai-edge-quantizer')} "
                    f"(recipe translated by litert-torch {package_version('litert-torch')})",
            "quantizer_recipe": recipe}


def _check_against_onnx(onnx_file: Path, tflite_file: Path) -> dict[str, Any]:
    """The float32 .tflite against onnxruntime on the source ONNX, on a few random inputs (a layout check)."""
    import numpy as np
    import onnxruntime as ort

    from export import parity, tflite

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = tflite.load(tflite_file, {}, 1)
    x = np.random.default_rng(0).standard_normal((CHECK_SAMPLES, *session.get_inputs()[0].shape[1:]),
                                                 dtype=np.float32)
    ref = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    got = run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    figures = parity.compare(ref, got)
    limits = parity.THRESHOLDS["fp32"]
    ok = figures["max_rel"] <= limits["max_rel"] and figures["cosine"] >= limits["cosine"]
    return {"ok": bool(ok), "max_rel": figures["max_rel"], "cosine": figures["cosine"], "n": len(x)}


def _write_calibration(path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(path, rng.random((20, 128, 128, 3), dtype=np.float32))


def _error_line(text: str) -> str:
    """The informative part of an onnx2tf failure log: the failing ONNX node and the exception message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    node = re.findall(r"onnx_op_name: (\S+)", text)
    errors = [ln.strip() for ln in text.splitlines() if re.match(r"\s*\w*(Error|Exception)\b.*:", ln)]
    parts = ([f"at ONNX node {node[-1]}"] if node else []) + (errors[-1:] if errors else [])
    if not parts:
        tail = [ln.strip() for ln in text.splitlines() if ln.strip()]
        parts = tail[-1:] or ["no output"]
    return " ".join(" ".join(parts).split())[:300]


def layout_replacements(onnx_file: Path) -> list[dict[str, Any]]:
    """onnx2tf parameter-replacement entries: every Reshape that rebuilds a feature map gets an NCHW->NHWC transpose.

    A feature map is a rank-4 tensor whose shape some Conv in the graph outputs; the Reshapes that rebuild one are
    the channel shuffles (rank 5 -> 4) and the Mobile<-Former bridge output (B, heads, C/heads, HW -> B, C, H, W).
    """
    import onnx
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(onnx_file))).graph
    shape = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
             for v in (*graph.value_info, *graph.input, *graph.output) if v.type.tensor_type.HasField("shape")}
    feature_maps = {tuple(shape[n.output[0]]) for n in graph.node if n.op_type == "Conv" and n.output[0] in shape}
    found = []
    for node in graph.node:
        out, src = shape.get(node.output[0]), shape.get(node.input[0])
        if node.op_type == "Reshape" and out and len(out) == 4 and tuple(out) in feature_maps and src != out:
            found.append({"op_name": node.name, "param_target": "outputs", "param_name": node.output[0],
                          "post_process_transpose_perm": [0, 2, 3, 1]})
    return found
