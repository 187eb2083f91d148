"""Core ML on a Mac (and the names shared with the iPhone kind): compute units, and a loader that times with Core
ML's own clocks beside the wall clock.

Only a Mac can run this (coremltools' `predict` is macOS-only); everywhere else the macos kind refuses in one line
before anything is measured. It is imported by the worker on the Mac, never on Linux, and it is not a device kind.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from models.common import brief
from models.errors import ToolkitError

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
INPUT_NAME, OUTPUT_NAME = "input", "logits"  # what export/coreml.py names them


def check_units(units: Sequence[str], where: str) -> list[str]:
    out = []
    for u in units:
        if u not in COMPUTE_UNITS:
            raise ToolkitError(f"{where}: unknown Core ML compute units {brief(u)}; valid: {', '.join(COMPUTE_UNITS)}")
        out.append(u)
    if not out:
        raise ToolkitError(f"{where}: compute_units is empty; valid: {', '.join(COMPUTE_UNITS)}")
    return out


def refuse_off_macos(device: str) -> str | None:
    """None on macOS, else the one line the macos kind says."""
    if sys.platform == "darwin":
        return None
    return (f"device {device} runs Core ML, which needs macOS; this computer runs {sys.platform} (give the profile "
            "a `host` to reach a Mac over ssh)")


class CoreMLTimed:
    """A loaded .mlpackage: calling it predicts once; after each call `last_predict_ms` is Core ML's own figure
    (MLModel.last_predict_duration_in_nano_seconds) and `load_ms` Core ML's load time."""

    def __init__(self, file: Path, units: str):
        import coremltools as ct

        self.model = ct.models.MLModel(str(file), compute_units=getattr(ct.ComputeUnit, units))
        self.units = units
        self.load_ms = _ns_ms(getattr(self.model, "load_duration_in_nano_seconds", None))
        self.samples: list[float] = []
        self._predict: Callable[[dict[str, Any]], Any] = self.model.predict

    def __call__(self, x: Any) -> Any:
        import numpy as np

        out = self._predict({INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
        last = _ns_ms(getattr(self.model, "last_predict_duration_in_nano_seconds", None))
        if last is not None:
            self.samples.append(last)
        return np.asarray(out[OUTPUT_NAME])


def _ns_ms(v: Any) -> float | None:
    try:
        return None if v is None else float(v) / 1e6
    except (TypeError, ValueError):
        return None
