"""How a report and a sweep name things: a model with its overrides, a runtime, a resolution.

One home for the labels, so bench/report.py and bench/sweep/ (and the CLI) agree without importing each other.
"""

from __future__ import annotations

from export import FORMATS
from models import model_label

__all__ = ["model_label", "runtime_label", "res_label"]


def runtime_label(fmt: str, converter: str, precision: str, units: str | None = None) -> str:
    """e.g. "onnx", "tflite/onnx2tf", "onnx fp16", "onnx int8", "onnx/pt2e int8", "coreml CPU_AND_NE": the converter
    is named when the format has several float converters or it is one that makes int8 only, Core ML's compute units
    where a Mac or iPhone ran the cell."""
    spec = FORMATS.get(fmt)
    floats = [] if spec is None else [c.name for c in spec.converters if c.precisions]
    int8_only = [] if spec is None else [c.name for c in spec.converters if not c.precisions]
    label = fmt if spec is None or (len(floats) == 1 and converter not in int8_only) else f"{fmt}/{converter}"
    label = label if precision == "fp32" else f"{label} {precision}"
    return f"{label} {units}" if units else label


def res_label(h: int, w: int) -> str:
    """A resolution as the tables show it: one number when square, else HxW."""
    return str(h) if h == w else f"{h}x{w}"
