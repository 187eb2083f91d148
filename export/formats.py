"""The formats registry: every module of export/ that declares `FORMAT = FormatSpec(...)` is one format, found here.
Adding a format is adding one file (its FORMAT, convert(job), runs_here(), load(file, manifest, threads)).

    FORMATS: name -> FormatSpec, in their listing order (rank)
    format_spec(name) -> FormatSpec (unknown names list the valid ones)
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from export.spec import FormatSpec
from models.errors import ToolkitError

# the pipeline's own modules (they declare no format, and some import this one)
_NOT_FORMATS = {"__init__", "__main__", "core", "formats", "hostlock", "manifest", "matrix", "parity", "spec",
                "optimize"}


def _discover() -> dict[str, FormatSpec]:
    found: list[FormatSpec] = []
    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if info.name in _NOT_FORMATS or info.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"export.{info.name}"), "FORMAT", None)
        if spec is not None:
            if spec.module != info.name:
                raise ValueError(f"export/{info.name}.py declares a format whose module is {spec.module!r}")
            if any(f.name == spec.name for f in found):
                raise ValueError(f"format {spec.name!r} declared twice")
            found.append(spec)
    return {f.name: f for f in sorted(found, key=lambda f: (f.rank, f.name))}


FORMATS: dict[str, FormatSpec] = _discover()


def format_spec(name: str) -> FormatSpec:
    if name not in FORMATS:
        raise ToolkitError(f"unknown format {name!r}; valid: {', '.join(FORMATS)}, all")
    return FORMATS[name]
