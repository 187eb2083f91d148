"""The report's int8 section: the slowdown at int8 beside fp32, the int8 speed-up, what stayed float, parity.

    section(a, table) -> Markdown lines ([] for a run without int8 cells); `table` is bench/writers.py's md_table
    answer_items(a, strong) -> the answer's int8 sentences (also printed by `bench run` / `bench report`)

Pure functions of the stored rows: an int8 cell's `quant` column holds its artifact's op-kind record (how many
ops of each kind ran in int8 and how many stayed float, the int8 <-> float conversions) and its parity figures
(bench/sweep/rows.py `_quant`). The int8 runtime of a format is compared with the same format's fp32 runtime (for a
converter that makes int8 only, the format's default fp32 converter). fp32 and int8 cells are timed in different
group sessions, so a speed-up's interval resamples the rounds of each side independently (method "unpaired").
The family sentence explains a difference in speed-up from the op histograms: the float op kinds and conversions
of each family on that runtime, with what an op kind is in the models where it is known (KNOWN below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import stats
from bench.analysis import Analysis, Pair, crossover_text, markdown_strong, point_data
from bench.labels import runtime_label

# What an op kind left float is, in the registered models (runtimes name ops their own way)
KNOWN = {"maximum": "dynamic ReLU's max", "XNNMaximum": "dynamic ReLU's max", "MAXIMUM": "dynamic ReLU's max",
         "Max": "dynamic ReLU's max", "XNNHardswish": "h-swish", "HardSwish": "h-swish", "HARD_SWISH": "h-swish",
         "hardswish": "h-swish", "HardSigmoid": "h-sigmoid", "hardsigmoid": "h-sigmoid",
         "sigmoid_hard": "h-sigmoid", "XNNSoftmax": "attention softmax", "Softmax": "attention softmax",
         "SOFTMAX": "attention softmax", "softmax": "attention softmax", "XNNBatchMatrixMultiply": "attention matmul",
         "MatMul": "attention matmul", "BATCH_MATMUL": "attention matmul", "bmm": "attention matmul",
         "LayerNormalization": "LayerNorm", "layer_norm": "LayerNorm", "XNNDiv": "division (h-sigmoid, LayerNorm)",
         "XNNClamp": "clamp (h-sigmoid)", "ReduceMean": "mean (SE pooling, LayerNorm)",
         "XNNGlobalAvgPooling2d": "mean (SE pooling, LayerNorm)", "XNNSigmoid": "sigmoid", "XNNGelu": "GELU"}


@dataclass
class Speedup:
    model: str
    runtime: str  # the int8 runtime's label
    base: str  # the fp32 runtime's label
    labels: list[str]
    curve: stats.RatioCurve  # fp32 median / int8 median: > 1 = int8 is faster


def _ok(a: Analysis) -> list[dict[str, Any]]:
    return [r for r in a.rows if r["status"] == "ok"]


def base_runtime(r: dict[str, Any]) -> str:
    """The fp32 runtime an int8 cell is compared with."""
    from export import FORMATS

    conv = r["converter"]
    spec = FORMATS.get(r["format"])
    if spec is not None and not any(c.name == conv and c.precisions for c in spec.converters):
        conv = spec.default_converter  # a converter that makes int8 only: the format's own fp32 export
    label = runtime_label(r["format"], conv, "fp32", r.get("units"))
    return label + r["runtime"][len(runtime_label(r["format"], r["converter"], "int8", r.get("units"))):]


def speedups(a: Analysis) -> list[Speedup]:
    out = []
    fp32 = {(r["runtime"], r["model_label"], r["height"], r["width"]): r for r in _ok(a) if r["precision"] == "fp32"}
    by: dict[tuple[str, str, str], list[tuple[dict, dict]]] = {}
    for r in sorted(_ok(a), key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"], r["height"])):
        if r["precision"] != "int8":
            continue
        base = base_runtime(r)
        other = fp32.get((base, r["model_label"], r["height"], r["width"]))
        if other is not None:
            by.setdefault((r["model_label"], r["runtime"], base), []).append((other, r))
    for (model, rt, base), pairs in sorted(by.items()):
        curve = stats.ratio_curve([x["res_equiv"] for x, _ in pairs], points=[point_data(x, y) for x, y in pairs])
        out.append(Speedup(model, rt, base, [y["res_label"] for _, y in pairs], curve))
    return out


def _quant(a: Analysis, runtime: str, model: str) -> dict[str, Any] | None:
    rows = [r for r in _ok(a) if r["runtime"] == runtime and r["model_label"] == model and r.get("quant")]
    return max(rows, key=lambda r: r["res_equiv"])["quant"] if rows else None


def _kinds(q: dict[str, Any], n: int = 3) -> str:
    kinds = list((q.get("float_op_kinds") or {}).items())[:n]
    return ", ".join(f"{k} x{v}" + (f" ({KNOWN[k]})" if k in KNOWN else "") for k, v in kinds) or "none"


def family_sentence(a: Analysis, p: Pair, ups: dict[tuple[str, str], Speedup],
                    strong: Callable[[str], str] = markdown_strong) -> str | None:
    """Why int8 helps one family more than the other on an int8 runtime, from the two op histograms."""
    qs, qb = _quant(a, p.runtime, p.numer), _quant(a, p.runtime, p.denom)
    if not qs or not qb:
        return None

    def part(model: str, q: dict[str, Any]) -> str:
        up = ups.get((model, p.runtime))
        speed = ""
        if up is not None:
            pt, lbl = up.curve.points[-1], up.labels[-1]
            speed = f"int8 runs it {pt.ratio:.2f}x as fast as fp32 at {lbl}; "
        total = q["int8_ops"] + q["float_ops"]
        return (f"{model}: {speed}{q['float_ops']} of {total} compute ops stay float ({_kinds(q)}), "
                f"{q['conversions']} int8<->float conversions")

    return f"On {strong(p.runtime)}, {part(p.numer, qs)}; {part(p.denom, qb)}."


def answer_items(a: Analysis, strong: Callable[[str], str] = markdown_strong) -> list[str]:
    """The int8 sentences of the answer: one per (int8 runtime, pair), explaining the families' difference."""
    ups = {(u.model, u.runtime): u for u in speedups(a)}
    out = []
    for p in a.pairs:
        if " int8" not in p.runtime:
            continue
        s = family_sentence(a, p, ups, strong)
        if s:
            out.append(s)
    return out


def _ratio_cells(p: Pair | None, labels: list[str]) -> list[str]:
    if p is None:
        return [""] * len(labels)
    by = dict(zip(p.labels, p.curve.points))
    return [f"{by[lbl].ratio:.2f}" + ("~" if by[lbl].wide else "") if lbl in by else "" for lbl in labels]


def section(a: Analysis, table: Callable[[list[str], list[list[Any]]], list[str]]) -> list[str]:
    """The report's int8 section (Markdown lines); [] when the run has no int8 cell."""
    int8 = [r for r in _ok(a) if r["precision"] == "int8"]
    if not int8:
        return []
    lines = ["## int8", ""]
    seeded = not any((r.get("quant") or {}).get("checkpoint") for r in int8)
    lines += ["Static post-training int8, each format's own toolchain (docs/int8.md), calibrated on "
              + ", ".join(sorted({f"{c.get('source')} (N={c.get('n')})" for r in int8
                                  if (c := (r.get("quant") or {}).get("calibration"))})) + "."
              + (" The weights are the toolkit's seeded random weights (BatchNorm statistics measured on "
                 "photographs): agreement with fp32 is quantization drift, **not an accuracy figure**."
                 if seeded else ""), ""]
    # ---- slowdown at fp32 and int8, side by side
    pairs = {(p.runtime, p.numer, p.denom): p for p in a.pairs}
    rows, labels = [], sorted({lbl for p in a.pairs for lbl in p.labels}, key=lambda s: _res_key(a, s))
    for p in a.pairs:
        if " int8" not in p.runtime:
            continue
        r = next(r for r in int8 if r["runtime"] == p.runtime)
        base = pairs.get((base_runtime(r), p.numer, p.denom))
        rows.append([f"{p.numer} / {p.denom}", base_runtime(r), *_ratio_cells(base, labels),
                     crossover_text(base) if base else "not measured"])
        rows.append(["", p.runtime, *_ratio_cells(p, labels), crossover_text(p)])
    if rows:
        lines += [f"### Slowdown ratio at fp32 and at int8 ({a.subject} median / baseline median)", ""]
        lines += table(["pair", "runtime", *labels, "crossover"], rows)
    # ---- speed-ups
    ups = speedups(a)
    if ups:
        lines += ["### int8 speed-up over fp32 (fp32 median / int8 median; > 1: int8 is faster)", ""]
        labels = sorted({lbl for u in ups for lbl in u.labels}, key=lambda s: _res_key(a, s))
        body = []
        for u in ups:
            by = dict(zip(u.labels, u.curve.points))
            body.append([u.model, u.runtime, u.base,
                         *[f"{by[lbl].ratio:.2f} ({by[lbl].low:.2f}-{by[lbl].high:.2f})" if lbl in by else ""
                           for lbl in labels]])
        lines += table(["model", "int8 runtime", "against", *labels], body)
        lines += ["fp32 and int8 cells are timed in separate sessions; the intervals (95%) resample each side's "
                  "rounds independently.", ""]
    # ---- op histograms
    lines += ["### What ran in int8 (per artifact, at the largest resolution measured)", ""]
    body = []
    for rt in sorted({r["runtime"] for r in int8}):
        for model in sorted({r["model_label"] for r in int8 if r["runtime"] == rt}):
            q = _quant(a, rt, model)
            if q:
                body.append([model, rt, f"{q['int8_ops']}/{q['int8_ops'] + q['float_ops']}", q["conversions"],
                             _kinds(q, 5)])
    lines += table(["model", "int8 runtime", "compute ops in int8", "int8<->float conversions",
                    "stayed float (op kind x count)"], body)
    lines += ["Counted from each artifact file (the .pte's XNNPACK graph, the .tflite's operators, the kernels "
              "onnxruntime runs after its optimisations, the Core ML program); the manifest has every op kind.", ""]
    # ---- parity
    body = []
    for r in sorted(int8, key=lambda r: (r["runtime"], r["model_label"], r["res_equiv"])):
        q = r.get("quant") or {}
        qi, fp = (q.get("quantized") or {}).get("images") or {}, q.get("fp32") or {}
        cc = q.get("cross_check") or {}
        cross = f"{_num((cc.get('images') or {}).get('max_steps'), '{:.0f}')} steps vs {cc['twin']}" if cc else ""
        body.append([r["model_label"], r["runtime"], r["res_label"],
                     _pct(qi.get("within_one_step")), _num(qi.get("max_steps"), "{:.0f}"), _num(qi.get("cosine")),
                     _num(fp.get("cosine")), _pct(fp.get("top1")), _pct(fp.get("top5")), cross])
    lines += ["### int8 parity (photographs)", ""]
    lines += table(["model", "runtime", "resolution", "within 1 step of quantized ref", "max steps", "cosine vs ref",
                    "cosine vs fp32", "top-1 vs fp32", "top-5 vs fp32", "cross-check"], body)
    return lines


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.0%}"


def _num(v: float | None, fmt: str = "{:.4f}") -> str:
    return "" if v is None else fmt.format(v)


def _res_key(a: Analysis, label: str) -> float:
    return next((r["res_equiv"] for r in a.rows if r["res_label"] == label), 0.0)
