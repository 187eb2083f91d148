"""Core ML: torch.export capture -> coremltools (ML program) -> .mlpackage; runs only on macOS.

Why this path: coremltools 9 converts a torch.export program (TOOLCHAIN.md: it works for every registered model
where the TorchScript path is on its way out), so the capture shared across formats is reused. coremltools wants
the ATen dialect, hence `run_decompositions({})` on it (a new program; the shared capture is not modified).

Choices:
  * convert_to="mlprogram" (the current model type; the older "neuralnetwork" has no fp16 compute control);
  * compute_precision FLOAT32 or FLOAT16 by the artifact's precision. Inputs and outputs stay float32 in both, so
    callers feed the same arrays: coremltools inserts the casts inside an fp16 program;
  * minimum_deployment_target iOS16 (= macOS 13, spec version 7): supported by every iPhone since the 8/X and
    every Apple-silicon Mac, and the first target whose ML programs take the fp16 op set we use. Recorded in the
    manifest;
  * a fixed input shape (1, 3, H, W) named "input", one output named "logits".
coremltools also writes `executorch_debug_handle_mapping.json` into the package when ExecuTorch is installed
(a debugging aid of ExecuTorch's Core ML backend, not part of the model and not in the package manifest); we drop it.

Import-order trap (TOOLCHAIN.md): coremltools imports TensorFlow when it is installed, and TensorFlow imported
before torch's compiler stack crashes the process (exit 139). We import torch._dynamo first, and hide TensorFlow
from coremltools' import when it is not loaded yet: Core ML conversion from PyTorch never needs it, the import
costs ~10-20 s here, and it keeps `--format all` (onnx, tflite, executorch, coreml in one process) safe.

On Linux a package cannot execute (`predict` is macOS-only): runs_here() says "needs macOS", parity records
"not run: needs macOS", and the export validates the package structurally instead: it loads with
`MLModel(path, skip_model_load=True)`, the input and output names, shapes and types are the expected ones, the
weights file holds every blob the program references (catches truncation), and the MIL op histogram goes into the
manifest. On macOS, load() runs the package with compute_units CPU_ONLY (written from coremltools' documentation;
untested here, since this toolkit's CI host is Linux). Core ML has no thread-count setting; `threads` is ignored.
"""

from __future__ import annotations

import json
import logging
import platform
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from export.spec import Converted, Converter, FormatSpec, Job
from models.errors import ToolkitError

FORMAT = FormatSpec("coreml", ".mlpackage", (Converter("coremltools", ("coremltools", "torch"), "coreml"),),
                    "coremltools (macOS only)", ("coremltools",), "coreml", rank=4)


DEPLOYMENT_TARGET = "iOS16"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_BLOB_SENTINEL = 0xDEADBEEF  # start of each blob's metadata record in weight.bin (MIL blob storage)
_DTYPES = {65568: "float32", 65552: "float16", 131104: "int32"}  # ArrayFeatureType.ArrayDataType codes


def coremltools():
    """Import coremltools safely: torch's compiler stack first, TensorFlow kept out if not already loaded."""
    import torch._dynamo  # noqa: F401  (must precede any TensorFlow import)

    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # version-support warnings, missing macOS proxies
    hide_tf = "tensorflow" not in sys.modules
    if hide_tf:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` fail fast
    try:
        import coremltools as ct
    finally:
        if hide_tf and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
    return ct


# --------------------------------------------------------------------------------------------- convert
def convert(job: Job) -> Converted:
    import contextlib
    import io

    import numpy as np

    program = job.exported_program().run_decompositions({})  # capture first: torch._dynamo before coremltools
    ct = coremltools()
    h, w = job.resolution
    precision = ct.precision.FLOAT16 if job.precision == "fp16" else ct.precision.FLOAT32
    with contextlib.redirect_stderr(io.StringIO()):  # coremltools' per-pass progress bars
        model = ct.convert(program, convert_to="mlprogram",
                           inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, 3, h, w), dtype=np.float32)],
                           outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                           minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                           compute_precision=precision, skip_model_load=True)
    model.short_description = f"{job.name} at {h}x{w} ({job.precision}), NCHW float32 input normalised"
    path = job.out_dir / f"{job.stem}.mlpackage"
    model.save(str(path))
    debug_map = path / "executorch_debug_handle_mapping.json"
    if debug_map.exists():
        debug_map.unlink()
    details = validate(path, (1, 3, h, w))
    details["deployment_target"] = DEPLOYMENT_TARGET
    details["compute_precision"] = "float16" if job.precision == "fp16" else "float32"
    return Converted(path, "NCHW", {"coreml": details, "nodes": details["op_count"]})  # nodes: MIL ops, no consts


# --------------------------------------------------------------------------------------------- validation
def validate(path: Path, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Structural check of an .mlpackage without running it; returns the manifest's "coreml" details.

    Any problem (missing or truncated files, wrong names or shapes) is a ToolkitError naming the package.
    """
    path = Path(path)
    if not path.is_dir() or not (path / "Manifest.json").is_file():
        raise ToolkitError(f"{path} is not an .mlpackage (no Manifest.json)")
    try:
        manifest = json.loads((path / "Manifest.json").read_text())
        entries = manifest["itemInfoEntries"].values()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ToolkitError(f"{path}: unreadable Manifest.json ({exc})") from None
    for entry in entries:
        item = path / "Data" / entry.get("path", "")
        if not item.exists():
            raise ToolkitError(f"{path} is incomplete: {item.relative_to(path)} is missing")
    ct = coremltools()
    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:  # noqa: BLE001 - protobuf and coremltools raise many types on a corrupt spec
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ToolkitError(f"{path} does not load (corrupt or truncated?): {msg}") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise ToolkitError(f"{path} is not an ML program")
    inputs = [_feature(f) for f in spec.description.input]
    outputs = [_feature(f) for f in spec.description.output]
    if [i["name"] for i in inputs] != [INPUT_NAME] or [o["name"] for o in outputs] != [OUTPUT_NAME]:
        raise ToolkitError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
                           f"{[i['name'] for i in inputs]} -> {[o['name'] for o in outputs]}")
    if input_shape is not None and tuple(inputs[0]["shape"]) != tuple(input_shape):
        raise ToolkitError(f"{path}: input shape {inputs[0]['shape']}, expected {list(input_shape)}")
    ops, blobs = _program_ops(spec.mlProgram)
    _check_blobs(path, blobs)
    consts = ops.pop("const", 0)
    return {"spec_version": spec.specificationVersion, "inputs": inputs, "outputs": outputs,
            "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))), "op_count": sum(ops.values()),
            "const_count": consts, "weight_blobs": len(blobs), "validated": "structure (cannot execute on this host)"}


def _feature(f) -> dict[str, Any]:
    arr = f.type.multiArrayType
    return {"name": f.name, "shape": [int(s) for s in arr.shape], "dtype": _DTYPES.get(arr.dataType, arr.dataType)}


def _program_ops(program) -> tuple[Counter, list[tuple[str, int]]]:
    """Op histogram of the MIL program (nested blocks included) and the weight blobs its constants reference."""
    ops: Counter[str] = Counter()
    blobs: list[tuple[str, int]] = []

    def walk(block) -> None:
        for op in block.operations:
            ops[op.type] += 1
            for value in op.attributes.values():
                if value.WhichOneof("value") == "blobFileValue":
                    blobs.append((value.blobFileValue.fileName, int(value.blobFileValue.offset)))
            for inner in op.blocks:
                walk(inner)

    for function in program.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return ops, blobs


def _check_blobs(path: Path, blobs: list[tuple[str, int]]) -> None:
    """Each referenced blob's metadata record must sit in the weights file and its data must fit in it."""
    files: dict[str, bytes] = {}
    for name, offset in blobs:
        rel = name.removeprefix("@model_path/")
        if rel not in files:
            weights = path / "Data" / "com.apple.CoreML" / rel
            try:
                files[rel] = weights.read_bytes()
            except OSError:
                raise ToolkitError(f"{path} is incomplete: weights file {rel} is missing") from None
        data = files[rel]
        if offset + 24 > len(data):
            raise ToolkitError(f"{path} is truncated: weights file {rel} ends before blob at byte {offset}")
        sentinel, _dtype, size, start = struct.unpack_from("<IIQQ", data, offset)
        if sentinel != _BLOB_SENTINEL or start + size > len(data):
            raise ToolkitError(f"{path} is corrupt or truncated: weight blob at byte {offset} of {rel} is invalid")


# --------------------------------------------------------------------------------------------- runtime
def runs_here() -> str | None:
    if platform.system() != "Darwin":
        return "needs macOS"
    import importlib.util

    spec = importlib.util.find_spec("coremltools")  # top-level lookup: does not import coremltools
    folder = Path(spec.origin).parent if spec and spec.origin else None
    if folder is None or not any(folder.glob("libcoremlpython*")):
        return "coremltools installed without its macOS runtime (libcoremlpython)"
    return None


def load(file: Path, manifest: dict[str, Any], threads: int | None):
    """Run the package on macOS with Core ML on the CPU only (untested here: written from the documentation)."""
    import numpy as np

    shape = manifest.get("coreml", {}).get("inputs", [{}])[0].get("shape")
    validate(file, tuple(shape) if shape else None)
    ct = coremltools()
    model = ct.models.MLModel(str(file), compute_units=ct.ComputeUnit.CPU_ONLY)
    predict = model.predict

    def infer(x: np.ndarray) -> np.ndarray:
        return np.asarray(predict({INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[OUTPUT_NAME])

    return infer

