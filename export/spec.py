"""The records a format module declares and fills in: its FormatSpec (with its converters), and the Job it is
handed and the Converted it hands back. Nothing here imports the pipeline, so format modules depend on this file
only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ToolkitError

PRECISIONS = ("fp32", "fp16", "int8")  # int8: export/quant.py says which converter quantizes how


@dataclass(frozen=True)
class Converter:
    name: str
    packages: tuple[str, ...]  # distributions whose versions identify the converter (first = the converter)
    module: str  # export.<module> providing convert(job) -> Converted
    depends: tuple[str, ...] = ()  # other export modules whose code its artifacts depend on (onnx2tf: onnx)
    precisions: tuple[str, ...] = ("fp32", "fp16")  # the float precisions it makes (int8: export/quant.py)


@dataclass(frozen=True)
class FormatSpec:
    """A format, declared by its own module as `FORMAT = FormatSpec(...)` (export/formats.py finds it)."""

    name: str
    suffix: str
    converters: tuple[Converter, ...]  # the first is the default
    runtime: str  # the in-process runtime used by load()/parity on this host
    runtime_packages: tuple[str, ...]
    module: str  # export.<module> providing load(file, manifest, threads) and runs_here()
    dynamic: bool = False  # can its artifacts take a range of input sizes (--dynamic)?
    rank: int = 100  # where it is listed among the formats (help texts, `all`)
    modes: tuple[str, ...] = ()  # runtime execution modes besides the default, set through the manifest's "session"

    @property
    def default_converter(self) -> str:
        return self.converters[0].name

    def converter(self, name: str | None) -> Converter:
        if name is None:
            return self.converters[0]
        for c in self.converters:
            if c.name == name:
                return c
        valid = ", ".join(c.name for c in self.converters)
        raise ToolkitError(f"format {self.name} has no converter {name!r}; valid: {valid}")


@dataclass
class Converted:
    """What a format module's convert() hands back."""

    file: Path
    layout: str = "NCHW"  # input layout of the artifact
    details: dict[str, Any] = field(default_factory=dict)  # opset, delegation, op histogram, ...
    reference: Any = None  # int8: the quantized reference (export.quant.Reference) parity compares with


@dataclass
class Job:
    """Everything a converter needs; the capture is shared by every format of one (model, resolution)."""

    name: str
    model: Any  # torch.nn.Module in eval mode
    resolution: tuple[int, int]
    precision: str
    converter: str
    out_dir: Path  # a temporary directory, renamed into place when everything succeeded
    stem: str
    options: dict[str, Any]
    _capture: Callable[[], Any]
    dynamic: bool = False  # H and W symbolic (32..MAX_RESOLUTION) instead of fixed at `resolution`
    calibration: Any = None  # int8: the calibration set (export.calibration.Calibration)

    def example(self):
        import torch

        return torch.zeros(1, 3, *self.resolution)

    def exported_program(self):
        """torch.export.export(model, example) at this resolution, captured once per process."""
        return self._capture()

    def source(self, convert: Callable[[Job], Converted], folder: str, **changes: Any) -> tuple[Converted, Path,
                                                                                                 float]:
        """An fp32 file another converter starts from, made by `convert` in a fresh work folder `folder` of this
        job's output directory (fields of this job replaced by `changes`): the file, the folder, the seconds."""
        import dataclasses
        import time

        work = self.out_dir / folder
        work.mkdir()
        t = time.perf_counter()
        src = convert(dataclasses.replace(self, out_dir=work, precision="fp32", **changes))
        return src, work, time.perf_counter() - t
