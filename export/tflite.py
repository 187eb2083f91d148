"""TFLite/LiteRT: litert-torch conversion (the default converter) and the format's runtime for both converters.

    convert(job)  nn.Module -> litert-torch -> .tflite (NCHW input, as the PyTorch model takes it)
    load(file)    ai-edge-litert Interpreter, XNNPACK applied (the default delegate), num_threads = threads
    inspect(file) op histogram, non-builtin (Flex/custom) ops, subgraphs, weight dtypes: read from the flatbuffer
    delegation(file) which nodes XNNPACK took, read back from the interpreter after it delegated

Decisions:
* Why litert-torch by default: it lowers torch.export straight to TFLite (no ONNX, no TensorFlow graph), so the
  file holds the PyTorch graph's own ops and the input stays NCHW. onnx2tf (export/tflite_onnx2tf.py) is the
  other converter, the one our users named; its files take NHWC input and load through this module too (the
  FORMATS row routes the format's load/runs_here here; export.load transposes NCHW batches for NHWC files).
* litert-torch runs its own torch.export on the module, so it does not reuse the shared capture: its FX passes
  rewrite the ExportedProgram they are given in place (node targets replaced), which would corrupt the capture
  that ONNX/ExecuTorch/Core ML use next, and it has no public entry point taking an ExportedProgram. The second
  capture costs ~3 s of a 20-45 s conversion (most of it goes to litert-torch's decompositions and MLIR lowering).
* fp16 is litert-torch's fp16 recipe (`full_fp16_recipe`: the weights of conv/linear ops stored as float16,
  FLOAT_CAST, activations float32): a phone GPU/NPU delegate computes in fp16, while the CPU (XNNPACK here)
  dequantizes the weights once and computes in fp32, so on this host fp16 parity measures weight rounding only.
  onnx2tf's float16 file (TensorFlow's float16 quantization) rounds every float constant instead, scalars
  included (attention scales, LayerNorm epsilon, biases): for Mobile-Former 294m at 224 that is 398 float16
  tensors against litert-torch's 187, and 3x the parity error (max_rel 6.9e-2 against 2.0e-2).
* TensorFlow imported before torch._dynamo/triton kills the process (TOOLCHAIN.md): torch._dynamo is imported
  before litert-torch, and nothing here imports TensorFlow (onnx2tf runs in a subprocess).
* Corrupt files: the interpreter verifies the flatbuffer before use (a truncated file raises ValueError, checked
  at 10 truncation points), and `_check_file` rejects wrong identifiers and buffers pointing past the end of the
  file (large models keep weights outside the flatbuffer, where the verifier does not look) before the
  interpreter ever sees the file.
* Delegation: ai-edge-litert's Interpreter has no public API for it. After allocate_tensors() its node list
  (`Interpreter._get_ops_details()`, a private but long-standing method) holds the original nodes plus one
  DELEGATE node per XNNPACK partition; walking producers back from the outputs (a delegated tensor is produced
  by its DELEGATE node) gives the nodes the interpreter still runs itself. What XNNPACK does inside a partition
  (e.g. fp16 inference) is not exposed.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

from export.spec import Converted, Converter, FormatSpec, Job
from models.errors import ToolkitError

FORMAT = FormatSpec("tflite", ".tflite", (
    Converter("litert-torch", ("litert-torch", "ai-edge-litert"), "tflite"),
    Converter("onnx2tf", ("onnx2tf", "tensorflow", "onnx"), "tflite_onnx2tf", depends=("onnx",))),
    "ai-edge-litert (XNNPACK)", ("ai-edge-litert",), "tflite", rank=2)


IDENTIFIER = b"TFL3"  # the TFLite flatbuffer file identifier, bytes 4..8


# --------------------------------------------------------------------------------------------- conversion
def convert(job: Job) -> Converted:
    import torch
    import torch._dynamo  # noqa: F401 - before anything that may import TensorFlow (TOOLCHAIN.md)

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress tree would drown the CLI's lines
    import litert_torch

    quant = None
    if job.precision == "fp16":
        from litert_torch.generative.quantize import quant_recipes

        quant = quant_recipes.full_fp16_recipe()
    path = job.out_dir / f"{job.stem}.tflite"
    chatter = io.StringIO()  # the fp16 quantizer prints sizes and progress bars; keep the CLI's lines clean
    with torch.no_grad(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        edge = litert_torch.convert(job.model, (job.example(),), quant_config=quant)
    edge.export(str(path))
    details = inspect(path)
    details["delegation"] = delegation(path)
    return Converted(path, "NCHW", details)


# --------------------------------------------------------------------------------------------- inspection
def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _check_file(file: Path) -> bytes:
    """The file's bytes, if they look like a complete TFLite flatbuffer; else a ToolkitError naming the file."""
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise ToolkitError(f"cannot read {file}: {exc.strerror or exc}") from None
    if len(data) < 16 or data[4:8] != IDENTIFIER:
        raise ToolkitError(f"{file} is not a TFLite model (no {IDENTIFIER.decode()} flatbuffer header; "
                           f"{len(data)} bytes): corrupt or truncated?")
    root = int.from_bytes(data[0:4], "little")
    if root >= len(data):
        raise ToolkitError(f"{file} is truncated: its root table lies past the end of the file ({len(data)} bytes)")
    try:
        model = _schema().Model.GetRootAs(data, 0)
        for i in range(model.BuffersLength()):
            buf = model.Buffers(i)
            if buf.Offset() > 1 and buf.Offset() + buf.Size() > len(data):
                raise ToolkitError(f"{file} is truncated: weight buffer {i} ends at byte {buf.Offset() + buf.Size()}"
                                   f" of a {len(data)}-byte file")
    except ToolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of a damaged flatbuffer
        raise ToolkitError(f"{file} is not a readable TFLite flatbuffer (corrupt or truncated?): "
                           f"{type(exc).__name__}: {exc}") from None
    return data


def read_model(file: Path) -> tuple[Any, list[tuple[bool, str]], dict[int, str]]:
    """The checked flatbuffer's root Model, its operator codes as (builtin?, name) and the tensor type names."""
    schema = _schema()
    data = _check_file(file)
    model = schema.Model.GetRootAs(data, 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # the schema keeps codes < 127 in both fields
        if code == schema.BuiltinOperator.CUSTOM:
            codes.append((False, (oc.CustomCode() or b"?").decode()))
        else:
            codes.append((True, builtin_names.get(code, f"BUILTIN_{code}")))
    return model, codes, type_names


def inspect(file: Path) -> dict[str, Any]:
    """What the flatbuffer holds: builtin op histogram, non-builtin ops, subgraphs, weight dtypes."""
    model, codes, type_names = read_model(file)
    builtin: Counter[str] = Counter()
    custom: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    tensors = 0
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            is_builtin, name = codes[sg.Operators(o).OpcodeIndex()]
            (builtin if is_builtin else custom)[name] += 1
        tensors += sg.TensorsLength()
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            buf = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
                weights[type_names.get(tensor.Type(), str(tensor.Type()))] += 1
    flex = sum(n for name, n in custom.items() if name.startswith("Flex"))
    return {"ops": dict(sorted(builtin.items())), "operators": sum(builtin.values()) + sum(custom.values()),
            "custom_ops": dict(sorted(custom.items())), "flex_op_count": flex,
            "custom_op_count": sum(custom.values()) - flex, "subgraphs": model.SubgraphsLength(),
            "tensors": tensors, "weight_tensors": dict(sorted(weights.items())),
            "schema_version": model.Version()}


def delegation(file: Path, threads: int | None = 1) -> dict[str, Any]:
    """Which nodes the XNNPACK delegate took when the interpreter loaded the file (see the module docstring)."""
    try:
        interp = _interpreter(file, threads)
        ops = interp._get_ops_details()  # private: the only place the post-delegation node list is exposed
    except Exception as exc:  # noqa: BLE001 - reported in the manifest; parity will fail loudly on its own
        return {"delegate": "XNNPACK", "summary": f"not measured: {type(exc).__name__}: {exc}"[:200]}
    partitions = [o for o in ops if o["op_name"] == "DELEGATE"]
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer: dict[int, dict[str, Any]] = {}
    for o in original + partitions:  # a tensor a partition outputs is produced by the partition
        for t in o["outputs"]:
            producer[int(t)] = o
    seen: set[int] = set()
    executed: list[dict[str, Any]] = []
    stack = [int(d["index"]) for d in interp.get_output_details()]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node["index"] in seen:
            continue
        seen.add(node["index"])
        executed.append(node)
        stack.extend(int(t) for t in node["inputs"] if t >= 0)
    left = Counter(o["op_name"] for o in executed if o["op_name"] != "DELEGATE")
    used = sum(1 for o in executed if o["op_name"] == "DELEGATE")
    n_left = sum(left.values())
    summary = f"XNNPACK {len(original) - n_left}/{len(original)} nodes in {used} partition(s)"
    if left:
        summary += "; interpreter: " + ", ".join(f"{k} x{v}" for k, v in left.most_common())
    return {"delegate": "XNNPACK", "nodes": len(original), "delegated_nodes": len(original) - n_left,
            "partitions": used, "not_delegated": dict(sorted(left.items())), "summary": summary}


# --------------------------------------------------------------------------------------------- runtime
def runs_here() -> str | None:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as exc:
        return f"ai-edge-litert's interpreter cannot be imported ({exc})"
    return None


def _interpreter(file: Path, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    _check_file(file)
    interp = Interpreter(model_path=str(file), num_threads=threads)  # AUTO resolver: XNNPACK applied by default
    interp.allocate_tensors()
    return interp


def load(file: Path, manifest: dict[str, Any], threads: int | None):
    """A callable: float32 batch in the artifact's layout -> logits. Batches larger than the file's run per image."""
    return runner(_interpreter(file, threads), file)


def runner(interp, file: Path):
    """The callable of an allocated interpreter. A file with integer input and output (full-integer int8, as
    ai-edge-quantizer and litert-torch's PT2E path write it) gets its input quantized and its output dequantized
    here with the tensors' own scale and zero point, as an app does; the caller feeds and gets float32."""
    import numpy as np

    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    q_in, q_out = _codec(inp), _codec(out)
    if inp["dtype"] != np.float32 and q_in is None:
        raise ToolkitError(f"{file} takes {np.dtype(inp['dtype']).name} input; this toolkit feeds float32")
    index_in, index_out = inp["index"], out["index"]
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor

    def infer(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != shape[1:]:
            raise ToolkitError(f"{file} takes input of shape {list(shape)}, got {list(x.shape)}")
        if x.shape[0] != shape[0]:
            return np.concatenate([infer(x[i:i + shape[0]]) for i in range(0, x.shape[0], shape[0])])
        set_tensor(index_in, q_in(x) if q_in else x)
        invoke()
        y = get_tensor(index_out)
        return q_out(y) if q_out else y

    infer.interpreter = interp  # keeps the interpreter alive with the callable; devices/ may read it
    return infer


def _codec(detail: dict[str, Any]):
    """float32 -> integer (an input) or integer -> float32 (an output) for a quantized I/O tensor, else None.
    Quantize rounds half away from zero, as TFLite's QUANTIZE kernel does."""
    import numpy as np

    scale, zero = detail.get("quantization") or (0.0, 0)
    if detail["dtype"] not in (np.int8, np.uint8) or not scale:
        return None
    info = np.iinfo(detail["dtype"])

    def convert(v):
        if v.dtype == np.float32:
            r = v / np.float32(scale)
            return np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5) + zero, info.min, info.max).astype(detail["dtype"])
        return ((v.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)

    return convert
