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
ROLES = ("subject", "baseline")


@dataclass(frozen=True)
class FamilySpec:
    """What the toolkit knows about a family beyond its rows.

    role: "subject" (the model whose slowdown the report explains) or "baseline" (what it is compared with).
    components: module class name (as the ONNX exporter records it) -> the component its kernels count towards;
        the deepest matching class of a node decides.
    block_rest: for a block class, the component of work done in the block itself (no deeper class matched).
    """

    name: str
    display: str
    role: str
    paper: str = ""
    components: Mapping[str, str] = field(default_factory=dict)
    block_rest: Mapping[str, str] = field(default_factory=dict)

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
