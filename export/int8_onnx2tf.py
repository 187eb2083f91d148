"""TFLite int8 through onnx2tf: the fp32 ONNX file -> onnx2tf's integer quantization (-oiqt) -> NHWC .tflite.

The second TFLite converter's own int8 path: onnx2tf converts to Keras and saves the SavedModel, then runs the
TFLite converter with its representative dataset (optimizations DEFAULT, TFLITE_BUILTINS_INT8, per-channel
weights). Its calibration images are ours, never its download: the calibration set in [0, 1], NHWC, in a .npy
handed over with the model's mean and std (`custom_input_op_name_np_data_path`, the command line's -cind), which
onnx2tf applies itself. The artifact is its `*_integer_quant.tflite`: int8 weights and activations inside,
float32 input and output (a QUANTIZE first and a DEQUANTIZE last), NHWC input like every onnx2tf file.

Everything else is the fp32 converter's (export/tflite_onnx2tf.py): the layout parameter replacements, fast mode
checked against onnxruntime on the float32 file onnx2tf writes beside the int8 one, strict mode when fast mode got
the layout wrong, the subprocess (TensorFlow never enters this process), its per-op sample file written locally.
The quantized reference is the same file on LiteRT's reference kernels (export/int8_tflite.py).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from export import int8_tflite, quant
from export.spec import Converted, Job

CALIBRATION_FILE = "calibration.npy"


def convert(job: Job) -> Converted:
    import numpy as np

    import models
    from export import onnx as onnx_format
    from export import tflite_onnx2tf as o2t

    src, work, onnx_s = job.source(onnx_format.convert, o2t.WORK, converter="torch-dynamo", stem="source")
    stages = {"onnx": onnx_s}
    o2t._write_calibration(work / o2t.CALIBRATION)  # the sample file of its per-op checks: nothing is fetched
    s = models.spec(job.name)
    mean, std = np.asarray(s.mean, np.float32), np.asarray(s.std, np.float32)
    raw = quant.calibration_batch(job).transpose(0, 2, 3, 1) * std + mean  # back to [0, 1]: onnx2tf normalises
    np.save(work / CALIBRATION_FILE, np.ascontiguousarray(raw, dtype=np.float32))
    options = dict(o2t.OPTIONS)
    replacements = o2t.layout_replacements(src.file)
    if replacements:
        (work / "replace.json").write_text(json.dumps({"format_version": 1, "operations": replacements}, indent=1))
        options["param_replacement_file"] = "replace.json"
    args = (CALIBRATION_FILE, json.dumps(s.mean), json.dumps(s.std))

    def run(tag: str, opts: dict) -> tuple[Path, dict]:
        t = time.perf_counter()
        out = o2t._onnx2tf(src.file, work, tag, opts, job, entry="export.int8_onnx2tf",
                           out_name=f"{tag}_integer_quant.tflite", args=args)
        stages[f"onnx2tf_{tag}"] = time.perf_counter() - t
        return out, o2t._check_against_onnx(src.file, work / f"{tag}_float32.tflite")

    out, check = run("fast", options | o2t.FAST)
    mode = "fast (-dsm), its float32 file checked against onnxruntime"
    if not check["ok"]:
        first = check
        out, check = run("strict", options)
        mode = f"strict (fast mode was wrong: max_rel {first['max_rel']:.1e}, cosine {first['cosine']:.4f})"
    path = job.out_dir / f"{job.stem}.tflite"
    shutil.move(out, path)
    shutil.rmtree(work)
    converted = int8_tflite.finish(job, path, stages, "onnx2tf -oiqt", int8_tflite.reference_kernels(path, nhwc=True))
    converted.details.update({"onnx_opset": src.details.get("opset"), "onnx2tf_options": options,
                              "onnx2tf_mode": mode, "onnx2tf_check": check,
                              "param_replacements": [f"{r['op_name']}: {r['param_name']} -> NHWC"
                                                     for r in replacements]})
    return converted


def _subprocess(onnx_file: str, out_file: str, options: str, calibration: str, mean: str, std: str) -> None:
    """In the subprocess: onnx2tf with integer quantization on our calibration images; the int8 file to
    `out_file`, its float32 sibling beside it (for the layout check)."""
    import numpy as np
    import onnx2tf

    folder = Path("onnx2tf-out")
    onnx2tf.convert(input_onnx_file_path=onnx_file, output_folder_path=str(folder),
                    output_integer_quantized_tflite=True, quant_type="per-channel",
                    custom_input_op_name_np_data_path=[["input", calibration, np.asarray(json.loads(mean), np.float32),
                                                        np.asarray(json.loads(std), np.float32)]],
                    **json.loads(options))
    stem = Path(onnx_file).stem
    shutil.move(folder / f"{stem}_integer_quant.tflite", out_file)
    shutil.move(folder / f"{stem}_float32.tflite", Path(out_file).with_name(f"{stem}_float32.tflite"))
    shutil.rmtree(folder)
