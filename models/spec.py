"""The records every model family fills in: a model's spec, its measured info, and the family's own facts.

A family module (`models/family_*.py`) declares one `FAMILY` (a FamilySpec) and a table of variants turned into
ModelSpecs by its `specs()`. What the rest of the toolkit needs to know about a family lives here, so bench/ and
export/ never name a family: its role in the comparison (the subject, Mobile-Former, or a baseline), its display
name, and how profiler nodes map to its components.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_RESOLUTION = 2048
DEFAULT_INT_BOUNDS = (1, 1024)  # every integer override is bounded; a family declares tighter bounds
ROLES = ("subject", "baseline", "probe")  # probe: a measuring instrument (the peak GEMM), never compared


@dataclass(frozen=True)
class Difference:
    """One component measured by difference (bench why): latency(with) - latency(without), two override sets of
    the same model timed in the same rounds. `profile` names the profiler components (of `components` below) that
    measure the same work in the `with` cell, for the check of the two methods against each other; `accuracy` is the
    paper's top-1 gain of the component (points) and `paper` says where it comes from."""

    component: str
    with_overrides: Mapping[str, Any]
    without_overrides: Mapping[str, Any]
    profile: tuple[str, ...] = ()
    accuracy: float | None = None
    paper: str = ""


@dataclass(frozen=True)
class Ablations:
    """How bench why decomposes a family by difference: its differences, a per-unit sweep (an integer override and
    the paper's top-1 at some of its values; the model's own value comes from ModelSpec.override_defaults) and a
    what-if override that changes one dependency of the graph without changing its size."""

    differences: tuple[Difference, ...] = ()
    unit_override: str = ""
    unit_values: tuple[int, ...] = ()
    unit_accuracy: Mapping[int, float] = field(default_factory=dict)
    what_if: tuple[str, str] | None = None  # (override, value)
    what_if_text: str = ""
    source: str = ""


@dataclass(frozen=True)
class FamilySpec:
    """What the toolkit knows about a family beyond its rows.

    role: "subject" (the model whose slowdown the report explains), "baseline" (what it is compared with) or
        "probe" (not a model to compare: an instrument, e.g. the peak-throughput GEMM of bench why; never in a
        ratio, a pair or the default sweep).
    components: module class name (as the ONNX exporter records it) -> the component its kernels count towards;
        the deepest matching class of a node decides.
    block_rest: for a block class, the component of work done in the block itself (no deeper class matched).
    export_form, measures: see the fields.
    """

    name: str
    display: str
    role: str
    paper: str = ""
    components: Mapping[str, str] = field(default_factory=dict)
    block_rest: Mapping[str, str] = field(default_factory=dict)
    ablations: Ablations | None = None  # how bench why decomposes the family by difference (None: profile only)
    # `export --optimize`: (eval model, format) -> a module computing the same function with fewer, larger ops
    # (None: the family has no rewrite of its own; its optimized artifacts get the graph tools only)
    export_form: Callable[[Any, str], Any] | None = None
    # a probe's instrument: "peak" (the multiply-add peak) or "per_node" (a runtime's cost per graph node)
    measures: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"family {self.name}: role must be one of {ROLES}, not {self.role!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what it expects as input."""

    name: str
    family: str
    build: Callable[..., Any]  # build(**overrides) -> nn.Module (training mode, fresh weights)
    default_resolution: tuple[int, int]
    min_resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    overrides: Mapping[str, type] = field(default_factory=dict)  # allowed override -> its type
    override_bounds: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # int override -> [lo, hi]
    override_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # str override -> its values
    override_defaults: Mapping[str, Any] = field(default_factory=dict)  # override -> its value when not given
    reported_params_m: float = 0.0
    reported_madds_m: float = 0.0
    adapt_state_dict: Callable[[Any, dict], dict] | None = None  # (model, state dict) -> state dict

    @property
    def resolution_rule(self) -> str:
        return f"any H and W from {self.min_resolution} to {MAX_RESOLUTION} pixels"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    resolution: tuple[int, int]
    params: int
    madds: int
    default_resolution: tuple[int, int]
    min_resolution: int
    resolution_rule: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    overrides: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
