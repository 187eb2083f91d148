"""ExecuTorch: torch.export capture -> edge dialect -> XNNPACK partitioner -> .pte -> executorch.runtime.

The flow is ExecuTorch's recommended one for CPU (`to_edge_transform_and_lower` with `XnnpackPartitioner`, then
`to_executorch`), fed with the capture shared across formats (Job.exported_program()).

Export-friendly lowering (converter-level; the model code is untouched): XNNPACK's partitioner claims an op only if
it has a config for it, and every op it does not claim cuts the graph into another delegate and leaves that op to
the slower portable kernels. The cuts are ops XNNPACK can compute but not in the form they arrive in, rewritten:
  * expand_copy that does not change the shape -> removed (ExecuTorch's RemoveNoopExpandCopyPass);
  * select_copy (a token picked out of a sequence, `z[:, 0]`) -> slice_copy of width 1 + view_copy;
  * mean over H, W without keepdim (classifier pooling) -> mean with keepdim + view_copy;
  * unsqueeze_copy / squeeze_copy on a non-trailing dim -> view_copy (shapes are static);
  * layer_norm over the last dim (no XNNPACK config) -> the textbook formula on a (N, 1, 1, D) view;
  * mask-free scaled dot-product attention (timm's fused path): torch's decomposition guards the softmax against
    fully masked rows with ops XNNPACK lacks; with no mask, SDPA is written out as matmul, scale, softmax, matmul.
The first four run on the edge graph (`_xnnpack_friendly_pass`), the last two on the ATen program before `to_edge`
(`_aten_rewrites`). Result: every model of the coverage set lowers to ONE delegate with no portable op in fp32.

fp16: the fp32 edge program is retyped to float16 as a whole (`_to_half_pass`; exporting a `.half()` model leaves
casts XNNPACK does not take); long fp16 batched matmuls are split into chunks added pairwise, because XNNPACK's fp16
GEMMs accumulate in fp16 (`chunked_bmm`, `_fp16_chunks`). load() converts float32 in and out.

Threads: one process-wide XNNPACK threadpool; load(threads=N) resizes it with `_unsafe_reset_threadpool` while
loading only. Corrupt files: the flatbuffer identifier and the extended header are checked before the native loader
sees the file. The measurements behind each rule (pieces, ms, export seconds, MB, per model) are in docs/export.md.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from export.spec import Converted, Converter, FormatSpec, Job
from models.errors import ToolkitError

FORMAT = FormatSpec("executorch", ".pte", (Converter("xnnpack", ("executorch", "torch"), "executorch"),),
                    "executorch.runtime", ("executorch",), "executorch", rank=3)


FILE_IDENTIFIER = b"ET12"  # bytes 4..8 of a .pte (flatbuffer file identifier)
HEADER_MAGIC = b"eh00"  # ExecuTorch extended header at byte 8
_SCALAR_TYPES = {5: "float16", 6: "float32"}  # ExecuTorch ScalarType codes used here


# --------------------------------------------------------------------------------------------- convert
def convert(job: Job) -> Converted:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import (
        get_xnnpack_edge_compile_config,
        get_xnnpack_executorch_backend_config,
    )
    from executorch.exir import to_edge_transform_and_lower

    stages: dict[str, float] = {}
    t = time.perf_counter()
    program = job.exported_program()
    stages["capture"] = time.perf_counter() - t

    t = time.perf_counter()
    program = _aten_rewrites(program)
    stages["aten_rewrites"] = time.perf_counter() - t

    t = time.perf_counter()
    with _lean_lowering():
        edge = to_edge_transform_and_lower(program, transform_passes=_passes(job.precision),
                                           partitioner=[XnnpackPartitioner()],
                                           compile_config=get_xnnpack_edge_compile_config())
    stages["to_edge_and_lower"] = time.perf_counter() - t
    delegation = delegation_summary(edge.exported_program().graph_module)

    t = time.perf_counter()
    et_program = edge.to_executorch(get_xnnpack_executorch_backend_config())
    stages["to_executorch"] = time.perf_counter() - t

    t = time.perf_counter()
    path = job.out_dir / f"{job.stem}.pte"
    path.write_bytes(et_program.buffer)
    stages["serialize"] = time.perf_counter() - t
    check_file(path)
    io_dtype = "float16" if job.precision == "fp16" else "float32"
    return Converted(path, "NCHW", {"delegation": delegation, "pte_io_dtype": io_dtype, "backend": "XnnpackBackend",
                                    "stage_seconds": {k: round(v, 2) for k, v in stages.items()}})


def delegation_summary(graph_module) -> dict[str, Any]:
    """Delegate partitions, ops inside them (before XNNPACK fusions), and ops left to the portable kernels."""
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    partitions = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            partitions += 1
            for inner in getattr(graph_module, node.target).original_module.graph.nodes:
                if inner.op == "call_function" and _op_name(inner) != "getitem":
                    inside[_op_name(inner)] += 1
        elif node.op == "call_function" and _op_name(node) not in ("getitem", "executorch_call_delegate"):
            outside[_op_name(node)] += 1
    delegated, portable = sum(inside.values()), sum(outside.values())
    kinds = dict(sorted(outside.items(), key=lambda kv: (-kv[1], kv[0])))
    summary = f"{partitions} XNNPACK partition{'s' * (partitions != 1)}, {delegated}/{delegated + portable} ops"
    if kinds:
        summary += "; portable: " + ", ".join(f"{k} x{v}" for k, v in kinds.items())
    return {"partitions": partitions, "delegated_ops": delegated, "portable_ops": portable,
            "delegated_share": round(delegated / (delegated + portable), 4) if delegated + portable else 0.0,
            "portable_op_kinds": kinds, "summary": summary}


def _op_name(node) -> str:
    name = getattr(node.target, "__name__", str(node.target))
    for prefix in ("aten.", "dim_order_ops."):
        name = name.removeprefix(prefix)
    return name.removesuffix(".default")


# --------------------------------------------------------------------------------------------- lowering cost
@contextlib.contextmanager
def _lean_lowering():
    """Skip work in ExecuTorch's lowering that cannot change the program, for the duration of one lowering.

    Two kinds (measured in docs/export.md, "Where export time goes"):
      * XNNPACK passes whose pattern is absent from the graph still re-trace the whole graph with fake tensors at
        the end of their `call` (about 1 s each for ~1,800 nodes). The upsample and SDPA pattern passes, the q/dq
        metadata pass, the conv1d pass and the PReLU pass are skipped when the graph holds nothing they rewrite:
        the same test they apply first (their pattern matcher, a q/dq node, a convolution with a rank-3 weight, a
        `_prelu_kernel`), so a graph that has one still goes through the unmodified pass;
      * ExportedProgramPassManager.check (a full graph recompile, lint and ExportedProgram verifier, run before
        every one of ~25 pass-manager calls) keeps the recompile and drops the lint and verifier: the passes
        produce the graph the ExportedProgram constructor verifies anyway.
    The patches are class attributes restored on exit; the .pte bytes are unchanged by them (checked by sha256).
    An ExecuTorch whose internals moved (another version than the pinned one) gets the plain lowering: the patches
    are an optimisation, never a requirement.
    """
    try:
        patches = _lean_patches()
    except (ImportError, AttributeError, KeyError):
        patches = None
    if patches is None:
        yield
        return
    applies, check = patches
    saved = {cls: cls.__dict__["call"] for cls in applies}
    from executorch.exir.pass_manager import ExportedProgramPassManager

    saved_check = ExportedProgramPassManager.__dict__["check"]

    def guarded(call, test):
        def run(self, graph_module):
            if not test(graph_module):
                from torch.fx.passes.infra.pass_base import PassResult

                return PassResult(graph_module, False)
            return call(self, graph_module)
        return run

    try:
        for cls, test in applies.items():
            cls.call = guarded(saved[cls], test)
        ExportedProgramPassManager.check = check
        yield
    finally:
        for cls, call in saved.items():
            cls.call = call
        ExportedProgramPassManager.check = saved_check


def _lean_patches():
    """The passes to guard with the test each applies first, and the lighter pass-manager check."""
    from executorch.backends.xnnpack._passes.conv1d_unsqueeze_pass import Conv1dUnsqueezePass
    from executorch.backends.xnnpack._passes.convert_to_sdpa import ConvertToSDPAPass
    from executorch.backends.xnnpack._passes.convert_to_upsample_bilinear2d import ConvertToUpsampleBilinear2d
    from executorch.backends.xnnpack._passes.prelu_reshape_pass import PReLUReshapePass
    from executorch.backends.xnnpack._passes.propagate_custom_meta_pass import PropagateCustomMetaPass
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa
    from executorch.backends.xnnpack.utils.quant_utils import is_dequant, is_quant
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_manager import ExportedProgramPassManager
    from torch.fx.passes.utils.matcher_utils import SubgraphMatcher

    def matches(patterns):
        return lambda gm: any(SubgraphMatcher(p.graph, ignore_literals=True).match(gm.graph) for p in patterns)

    def calls(gm):
        return (n for n in gm.graph.nodes if n.op == "call_function")

    def conv1d(gm):
        return any(getattr(n.target, "__name__", "") == "aten.convolution.default"
                   and len(getattr(n.meta.get("val"), "shape", ())) == 3 for n in calls(gm))

    applies = {
        ConvertToUpsampleBilinear2d: matches(bilinear_2d.get_graphs_dict()),
        ConvertToSDPAPass: matches(sdpa.get_graphs()),
        PropagateCustomMetaPass: lambda gm: any(is_quant(n) or is_dequant(n) for n in calls(gm)),
        Conv1dUnsqueezePass: conv1d,
        PReLUReshapePass: lambda gm: any(n.target == exir_ops.edge.aten._prelu_kernel.default for n in calls(gm)),
    }

    def check(self, exported_program):
        exported_program.graph_module.recompile()

    for cls in (*applies, ExportedProgramPassManager):
        cls.__dict__["call" if cls is not ExportedProgramPassManager else "check"]  # KeyError: internals moved
    return applies, check


# --------------------------------------------------------------------------------------------- graph rewrites
def _aten_rewrites(program):
    """LayerNorm and mask-free SDPA written out in ops XNNPACK takes (see the module docstring).

    Done on the ATen program, before `to_edge`, because the rewrites need scalar constants (eps, the attention
    scale) that `to_edge` then lifts the way XNNPACK expects. Returns a new program; the shared capture is not
    modified. Nodes we cannot prove equivalent (a norm over several dims, an attention mask) are left alone.
    """
    import torch

    aten = torch.ops.aten
    calls = [n for n in program.graph.nodes if n.op == "call_function"]
    norms = [n for n in calls if n.target == aten.layer_norm.default]
    sdpas = [n for n in calls if n.target == aten.scaled_dot_product_attention.default]
    table = {}
    if norms and all(len(n.args[1]) == 1 for n in norms):
        table[aten.layer_norm.default] = _layer_norm
    if sdpas and all(_plain_sdpa(n) for n in sdpas):
        table[aten.scaled_dot_product_attention.default] = _sdpa
    if not table:
        return program
    program = program.run_decompositions(table)
    _drop_provenance(program.graph_module)
    return program


def _drop_provenance(graph_module) -> None:
    """Drop torch.fx's `from_node` provenance chains: each retrace deep-copies them, and they grow by one level
    per pass, so over ExecuTorch's ~30 passes they cost a third of the lowering time. Only etrecord reads them."""
    for node in graph_module.graph.nodes:
        node.meta.pop("from_node", None)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """LayerNorm over the last dim on a (N, 1, 1, D) view, so both means are global average pools."""
    import torch

    shape = x.shape
    x4 = x.reshape(-1, 1, 1, shape[-1])
    centred = x4 - x4.mean((2, 3), keepdim=True)
    y = centred * torch.rsqrt((centred * centred).mean((2, 3), keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.reshape(shape)


def _plain_sdpa(node) -> bool:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    args = dict(zip(names, node.args)) | dict(node.kwargs)
    return (args.get("attn_mask") is None and not args.get("is_causal") and not args.get("dropout_p")
            and not args.get("enable_gqa"))


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    import torch

    s = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax((q @ k.transpose(-2, -1)) * s, dim=-1) @ v


def _passes(precision: str) -> list:
    from executorch.backends.xnnpack._passes.remove_noop_expand_copy_pass import RemoveNoopExpandCopyPass

    passes = [RemoveNoopExpandCopyPass(), _xnnpack_friendly_pass(), _fold_constant_casts_pass()]
    return ([_to_half_pass()] if precision == "fp16" else []) + passes


def _to_half_pass():
    """fp16: retype the decomposed fp32 edge program to float16 (weights, constants, input, every op).

    Exporting a `.half()` model instead gives a graph full of casts: torch's decompositions of hardswish,
    hardsigmoid, batch norm and friends compute half inputs in float32 ("opmath") and cast back, and XNNPACK
    takes no casts (docs/export.md has the pieces it made). Converting after decomposition leaves none. The
    program's input and output become float16 (load() converts); stored tensors are converted into new dicts, so
    the fp32 capture shared with the other formats is untouched.
    """
    import torch
    from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult, ExportPass
    from torch.export import ExportedProgram

    def half(value):
        if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
            return torch.nn.Parameter(value.detach().half(), requires_grad=False) \
                if isinstance(value, torch.nn.Parameter) else value.half()
        return value

    class ToHalf(ExportedProgramPassBase):
        def call(self, program) -> ExportedProgramPassResult:
            graph_module = program.graph_module
            for node in graph_module.graph.nodes:
                if node.op == "placeholder":
                    node.meta["val"] = half(node.meta["val"])
                elif node.op == "call_function" and node.kwargs.get("dtype") == torch.float32:
                    node.kwargs = {**node.kwargs, "dtype": torch.float16}
            graph_module = ExportPass()(graph_module).graph_module  # re-derives every node's dtype
            _drop_provenance(graph_module)
            new = ExportedProgram(
                root=graph_module, graph=graph_module.graph, graph_signature=program.graph_signature,
                state_dict={k: half(v) for k, v in program.state_dict.items()},
                range_constraints=program.range_constraints, module_call_graph=program.module_call_graph,
                example_inputs=None, constants={k: half(v) for k, v in program.constants.items()},
                verifiers=program.verifiers)
            return ExportedProgramPassResult(new, True)

    return ToHalf()


def _fold_constant_casts_pass():
    """Fold dtype casts of constants (fp16: `to_edge` lifts Python scalars such as h-sigmoid's 3.0 as float32
    tensors and casts them to half at run time; XNNPACK takes no casts, so each one cut the graph)."""
    from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    class FoldConstantCasts(ExportedProgramPassBase):
        def call(self, program) -> ExportedProgramPassResult:
            sig = program.graph_signature  # to_edge lifts scalars as buffers
            constants = {*sig.inputs_to_lifted_tensor_constants, *sig.inputs_to_parameters, *sig.inputs_to_buffers}
            casts = [n for n in program.graph.nodes if n.op == "call_function"
                     and _op_name(n) in ("_to_dim_order_copy", "_to_copy")
                     and getattr(n.args[0], "op", None) == "placeholder" and n.args[0].name in constants]
            if not casts:
                return ExportedProgramPassResult(program, False)
            return ExportedProgramPassResult(constant_prop_pass(program), True)

    return FoldConstantCasts()


def _xnnpack_friendly_pass():
    """An edge-dialect pass rewriting ops the XNNPACK partitioner rejects into equivalent ones it accepts."""
    import torch
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass, PassResult

    edge = exir_ops.edge.aten

    def shape(node) -> list[int]:
        return list(node.meta["val"].shape)

    handled = {edge.select_copy.int, edge.unsqueeze_copy.default, edge.squeeze_copy.dim, edge.squeeze_copy.dims,
               edge.mean.dim, edge.bmm.default}

    class XnnpackFriendly(ExportPass):
        def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
            graph = graph_module.graph
            changed = False
            for node in list(graph.nodes):
                if node.op != "call_function":
                    continue
                with graph.inserting_before(node):
                    new = self.rewrite(graph, node)
                if new is not None:
                    new.meta["val"] = node.meta["val"]  # later rewrites read shapes
                    node.replace_all_uses_with(new)
                    graph.erase_node(node)
                    changed = True
            _drop_provenance(graph_module)
            if not changed:
                return PassResult(graph_module, True)
            graph.eliminate_dead_code()
            graph.lint()
            graph_module.recompile()
            return PassResult(super().call(graph_module).graph_module, True)

        def rewrite(self, graph, node):
            target, args = node.target, node.args
            if target not in handled:
                return None
            out = shape(node)
            if target == edge.bmm.default:
                return self.chunked_bmm(graph, node)
            if target == edge.select_copy.int:
                x, dim, index = args
                size = shape(x)[dim]
                index = index % size
                part = graph.call_function(edge.slice_copy.Tensor, (x, dim, index, index + 1, 1))
                return graph.call_function(edge.view_copy.default, (part, out))
            if target in (edge.unsqueeze_copy.default, edge.squeeze_copy.dim, edge.squeeze_copy.dims):
                return graph.call_function(edge.view_copy.default, (args[0], out))
            if target == edge.mean.dim:
                x = args[0]
                rank = len(shape(x))
                dims = sorted(d % rank for d in args[1]) if len(args) > 1 and args[1] else []
                keepdim = bool(args[2]) if len(args) > 2 else bool(node.kwargs.get("keepdim", False))
                if rank == 4 and dims == [2, 3] and not keepdim and node.kwargs.get("dtype") is None:
                    mean = graph.call_function(edge.mean.dim, (x, [2, 3], True))
                    return graph.call_function(edge.view_copy.default, (mean, out))
                return None
            return None

        def chunked_bmm(self, graph, node):
            """fp16 only: a batched matmul summing over K > FP16_MAX_SUM terms, computed as C chunks of K/C terms
            whose partial products are added pairwise (see FP16_MAX_SUM)."""
            a, b = node.args
            if node.meta["val"].dtype != torch.float16:
                return None
            n, m, k = shape(a)
            d = shape(b)[2]
            chunks = _fp16_chunks(k)
            if chunks is None:
                return None
            length = k // chunks
            call = graph.call_function
            a3 = call(edge.view_copy.default, (a, [n, m, chunks, length]))
            a3 = call(edge.permute_copy.default, (a3, [0, 2, 1, 3]))
            a3 = call(edge.view_copy.default, (a3, [n * chunks, m, length]))
            b3 = call(edge.view_copy.default, (b, [n * chunks, length, d]))
            part = call(edge.view_copy.default, (call(edge.bmm.default, (a3, b3)), [n, chunks, m * d]))
            while chunks > 1:  # pairwise: each partial sum meets one of its own size
                chunks //= 2
                low = call(edge.slice_copy.Tensor, (part, 1, 0, chunks, 1))
                high = call(edge.slice_copy.Tensor, (part, 1, chunks, 2 * chunks, 1))
                part = call(edge.add.Tensor, (low, high))
            return call(edge.view_copy.default, (part, [n, m, d]))

    return XnnpackFriendly()


FP16_MAX_SUM = 512  # longest dot product left to one fp16 accumulator (see _fp16_chunks)


def _fp16_chunks(k: int) -> int | None:
    """How many chunks to split a K-term fp16 dot product into (a power of two, chunks of 32-128 terms).

    XNNPACK's fp16 GEMMs accumulate in fp16. An attention that sums over every pixel (the Mobile->Former bridge)
    (K = H*W, 12,544 at 224 for the 294M's first stage) with weights that add up to one: once the running sum is
    ~1000x a term, further terms fall below half an ulp and vanish. Measured on that layer: 17% error in fp16 against
    0.08% for PyTorch's half model; the whole network's logits fell to cosine 0.63. Chunks of <= 128 terms added
    pairwise keep every accumulation short. Same sum; only the rounding order differs.
    """
    if k <= FP16_MAX_SUM:
        return None
    chunks = 1
    while k % (chunks * 2) == 0 and k // (chunks * 2) >= 32:
        chunks *= 2
        if k // chunks <= 128:
            return chunks
    return chunks if chunks > 1 else None


# --------------------------------------------------------------------------------------------- runtime
def runs_here() -> str | None:
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:  # the wheel ships the runtime; a broken install lacks _C
        return f"executorch runtime unavailable ({exc})"
    if not Runtime.get().backend_registry.is_available("XnnpackBackend"):
        return "executorch runtime built without the XNNPACK backend"
    return None


def check_file(path: Path) -> None:
    """Reject files the native loader should never see: wrong identifier, bad header, truncated segments."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ToolkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(head) < 40 or head[4:8] != FILE_IDENTIFIER:
        raise ToolkitError(f"{path} is not an ExecuTorch program (no {FILE_IDENTIFIER.decode()} identifier)")
    if head[8:12] != HEADER_MAGIC:
        raise ToolkitError(f"{path} has no ExecuTorch extended header (corrupt?)")
    length, program_size, segment_base, segment_size = struct.unpack_from("<IQQQ", head, 12)
    end = max(program_size, segment_base + segment_size if segment_base else 0)
    if length < 24 or program_size == 0 or end > size:
        raise ToolkitError(f"{path} is truncated or corrupt: header says {end} bytes, file has {size}")


def load(file: Path, manifest: dict[str, Any], threads: int | None):
    import numpy as np
    import torch

    check_file(file)
    try:
        method, _ = _quiet(_load_method, Path(file), threads)
    except _NativeError as exc:
        raise ToolkitError(f"cannot load {file} (corrupt or truncated?): {exc}") from None
    if method is None:
        raise ToolkitError(f"{file} has no forward method")
    dtype_code = method.metadata.input_tensor_meta(0).dtype()
    if dtype_code not in _SCALAR_TYPES:
        raise ToolkitError(f"{file}: unexpected input dtype code {dtype_code}")
    in_dtype = torch.float16 if _SCALAR_TYPES[dtype_code] == "float16" else torch.float32
    execute = method.execute

    def infer(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        out = execute([t.to(in_dtype) if in_dtype != torch.float32 else t])[0]
        return out.float().numpy()

    return infer


def _load_method(file: Path, threads: int | None):
    from executorch.runtime import Runtime, Verification

    runtime = Runtime.get()
    if threads:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(int(threads))
    program = runtime.load_program(file, verification=Verification.InternalConsistency)
    return program.load_method("forward")


class _NativeError(Exception):
    pass


def _quiet(fn, *args):
    """Run fn with file descriptor 2 captured: the runtime's C++ logging (cpuinfo probing, threadpool resets)
    goes to stderr on every first load. The capture is dropped on success and quoted in the error otherwise."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            return fn(*args), None
        except Exception as exc:  # noqa: BLE001 - the native loader raises RuntimeError/ValueError/...
            sys.stderr.flush()
            sink.seek(0)
            lines = [ln for ln in sink.read().decode(errors="replace").splitlines() if ln.strip()]
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise _NativeError(detail + ("; runtime log: " + " | ".join(lines[-3:]) if lines else "")) from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
