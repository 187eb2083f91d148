"""ExecuTorch int8: PT2E with the XNNPACK quantizer -> the XNNPACK partitioner -> .pte; and what the file holds.

    convert(job)   export.quant.pt2e(job, "xnnpack") -> torch.export of the converted module -> the fp32 flow's
                   ATen rewrites, edge passes and lowering (export/executorch.py) -> .pte
    inspect(file)  the .pte's XNNPACK payloads decoded with ExecuTorch's own flatc and XNNPACK schema: per node
                   kind, how many compute on int8 values and how many on float ones; the XNNConvert nodes (each an
                   int8 <-> float conversion); the datatypes of the constant values (the weights); and the kernels
                   the program calls outside any delegate

The layer_norm and SDPA rewrites run on the converted program, after convert_pt2e (before it, the quantizer would
annotate the rewritten ops instead). What stays float is the quantizer's choice (it annotates conv, linear, add,
mul, cat and pooling; hardswish, hardsigmoid, softmax, batched matmul, layer norm and maximum are left float) and
XNNPACK's (a float op between two quantized ones costs a convert on each side): docs/int8.md lists them per family.
The quantized reference is the converted PT2E module in PyTorch, whose scales the .pte carries.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from export import quant
from export.spec import Converted, Job
from models.errors import ToolkitError

_FLOAT = {"xnn_datatype_fp32", "xnn_datatype_fp16", "xnn_datatype_bf16"}


def convert(job: Job) -> Converted:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import (
        get_xnnpack_edge_compile_config,
        get_xnnpack_executorch_backend_config,
    )
    from executorch.exir import to_edge_transform_and_lower

    from export import executorch as et

    q = quant.pt2e(job, "xnnpack")
    stages = {f"pt2e_{k}": v for k, v in q.seconds.items()}
    t = time.perf_counter()
    with torch.no_grad():
        program = et._aten_rewrites(torch.export.export(q.module, (job.example(),)))
    stages["capture_converted"] = time.perf_counter() - t
    t = time.perf_counter()
    with et._lean_lowering():
        edge = to_edge_transform_and_lower(program, transform_passes=et._passes("fp32"),
                                           partitioner=[XnnpackPartitioner()],
                                           compile_config=get_xnnpack_edge_compile_config())
    stages["to_edge_and_lower"] = time.perf_counter() - t
    delegation = et.delegation_summary(edge.exported_program().graph_module)
    t = time.perf_counter()
    buffer = edge.to_executorch(get_xnnpack_executorch_backend_config()).buffer
    path = job.out_dir / f"{job.stem}.pte"
    path.write_bytes(buffer)
    stages["to_executorch"] = time.perf_counter() - t
    et.check_file(path)
    record = inspect(path)
    quant.require_int8(record, "the XNNPACK quantizer")
    record.update({"scales_digest": q.scales_digest, "output_step": q.output_step})
    reference = quant.Reference(quant.torch_runner(q.module), "the converted PT2E model in PyTorch", q.output_step)
    return Converted(path, "NCHW", {"delegation": delegation, "pte_io_dtype": "float32", "backend": "XnnpackBackend",
                                    "stage_seconds": {k: round(v, 2) for k, v in stages.items()}, "int8": record},
                     reference=reference)


# --------------------------------------------------------------------------------------------- the file
def _graph_json(payload: bytes) -> dict[str, Any]:
    """One XNNPACK delegate payload (header, flatbuffer, constants) as the JSON of its XNNGraph."""
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as xs
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    header = xs.XNNHeader.from_bytes(payload[:xs.XNNHeader.EXPECTED_LENGTH])
    if not header.is_valid():
        raise ToolkitError("an XNNPACK payload of the .pte has no valid XNNPACK header (corrupt?)")
    flatbuffer = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory() as d:
        schema = os.path.join(d, "schema.fbs")
        Path(schema).write_bytes(xs._get_schema_bytes())
        Path(d, "graph.bin").write_bytes(flatbuffer)
        _flatc_decompile(d, schema, os.path.join(d, "graph.bin"))
        text = Path(d, "graph.json").read_text()
    return json.loads(re.sub(r"(-?)\binf\b", r"\g<1>1e39", text))  # flatc writes the clamp bounds as inf


def inspect(file: Path) -> dict[str, Any]:
    """What the .pte computes in int8 and in float, read from the file alone (see the module docstring)."""
    from executorch.exir._serialize._program import _extract_delegate_payload, deserialize_pte_binary

    data = Path(file).read_bytes()
    try:
        plan = deserialize_pte_binary(data).program.execution_plan[0]
        payloads = [p for i in range(len(plan.delegates))
                    if "xnnpack" in plan.delegates[i].id.lower()
                    and (p := _extract_delegate_payload(data, "Xnnpack", i)) is not None]
        graphs = [_graph_json(p) for p in payloads]
    except ToolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged program surfaces as many exception types
        raise ToolkitError(f"{file}: cannot read its XNNPACK delegates: {type(exc).__name__}: {exc}"[:300]) from None
    ops: dict[str, dict[str, int]] = {}
    weights: Counter[str] = Counter()
    conversions = 0
    for g in graphs:
        values = g["xvalues"]
        dtypes = [v["xvalue_union"].get("tensor_value", v["xvalue_union"])["datatype"] for v in values]
        for v in values:
            t = v["xvalue_union"].get("tensor_value", v["xvalue_union"])
            if t.get("constant_buffer_idx", 0):
                weights[t["datatype"].removeprefix("xnn_datatype_")] += 1
        for node in g["xnodes"]:
            kind, body = node["xnode_union_type"], node["xnode_union"]
            if kind == "XNNConvert":
                conversions += 1
                continue
            out = body.get("output_id", body.get("output1_id"))
            slot = ops.setdefault(kind, {"int8": 0, "float": 0})
            slot["float" if out is None or dtypes[out] in _FLOAT else "int8"] += 1
    outside: Counter[str] = Counter()
    for chain in plan.chains:
        for ins in chain.instructions:
            if type(ins.instr_args).__name__ == "KernelCall":
                outside[plan.operators[ins.instr_args.op_index].name] += 1
    for name, n in outside.items():
        if name.startswith("quantized_decomposed::"):
            conversions += n
        else:
            ops.setdefault(name, {"int8": 0, "float": 0})["float"] += n
    return quant.op_record(ops, conversions, where=f"nodes of the .pte's {len(graphs)} XNNPACK delegate(s) and the "
                           "kernels outside them", weights=dict(weights), delegates=len(graphs))
