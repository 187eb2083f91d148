"""Reference models: Mobile-Former (our implementation), MobileNetV3 and MobileViT (timm), behind one registry.

    models.list_models() -> list[str]
    models.create(name, *, checkpoint=None, **overrides) -> nn.Module   (eval mode)
    models.info(name, resolution=(224, 224), **overrides) -> ModelInfo

MAdds follow the "core" convention of MODELS.md: multiply-adds of convolutions, linear layers and attention
matmuls at batch 1, counted by running the model under ``torch.utils.flop_counter`` (so no hand-kept numbers).
Checkpoints load from local files only, with ``torch.load(weights_only=True)`` and strict key matching.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ToolkitError
from models.registry import Registry

__all__ = ["ModelSpec", "ModelInfo", "ToolkitError", "list_models", "create", "info", "spec", "seeded",
           "check_overrides", "parse_resolution", "format_resolution", "check_resolution", "load_checkpoint",
           "count_madds"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_RESOLUTION = 2048
DEFAULT_INT_BOUNDS = (1, 1024)  # every integer override is bounded; a family declares tighter bounds
# A checkpoint archive may declare at most this much more than the model's own tensors (plus the slack below)
# before it is read: a small file that inflates to gigabytes is refused from its table of contents.
CHECKPOINT_SLACK_BYTES = 64 << 20
MAX_CHECKPOINT_BYTES = 8 << 30  # when the model is not known


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
        from dataclasses import asdict

        return asdict(self)


MODELS: Registry[ModelSpec] = Registry("model")


def _register_all() -> None:
    from models import mobileformer_cfg, timm_models

    for s in (*mobileformer_cfg.specs(), *timm_models.specs()):
        MODELS.register(s.name, s)


_register_all()


# --------------------------------------------------------------------------------------------- resolutions
def parse_resolution(text: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """'224' -> (224, 224); '192x256' -> (192, 256) (height x width); ints and pairs pass through."""
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)) and len(text) == 2 and all(type(v) is int for v in text):
        return (int(text[0]), int(text[1]))
    text = str(text)
    m = re.fullmatch(r"\s*(\d{1,6})\s*(?:[xX]\s*(\d{1,6}))?\s*", text)
    if not m:
        shown = text if len(text) <= 40 else text[:40] + f"... ({len(text)} characters)"
        raise ToolkitError(f"bad resolution {shown!r}: expected N or HxW with at most 6 digits each, e.g. 224 or "
                           "192x256")
    h = int(m.group(1))
    return (h, int(m.group(2)) if m.group(2) else h)


def format_resolution(res: tuple[int, int]) -> str:
    return f"{res[0]}x{res[1]}"


def spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def check_resolution(name: str, resolution: Any) -> tuple[int, int]:
    """Parse and validate a resolution for a model; a resolution it can't take is a ToolkitError."""
    s = spec(name)
    h, w = parse_resolution(resolution)
    if not (s.min_resolution <= h <= MAX_RESOLUTION and s.min_resolution <= w <= MAX_RESOLUTION):
        raise ToolkitError(f"{name} cannot take {h}x{w}: valid resolutions are {s.resolution_rule}")
    return (h, w)


def _check_overrides(s: ModelSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in overrides.items():
        if key not in s.overrides:
            valid = ", ".join(s.overrides) or "none"
            raise ToolkitError(f"{s.name} has no override {key!r}; valid overrides: {valid}")
        typ = s.overrides[key]
        if typ is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ToolkitError(f"override {key} takes true or false, not {value!r}")
            value = value.lower() in ("true", "1")
        if typ is int and isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            raise ToolkitError(f"override {key} takes a whole number, not {value[:40]!r}")
        try:
            value = typ(value)
        except (TypeError, ValueError, OverflowError):
            raise ToolkitError(f"override {key} takes a {typ.__name__}, not {str(value)[:40]!r}") from None
        if typ is int:
            lo, hi = s.override_bounds.get(key, DEFAULT_INT_BOUNDS)
            if not lo <= value <= hi:
                raise ToolkitError(f"override {key} of {s.name} takes {lo} to {hi}, not {value}")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------- public API
def list_models() -> list[str]:
    return MODELS.names()


def create(name: str, *, checkpoint: str | Path | None = None, **overrides: Any):
    """Build a registered model in eval mode, with fresh weights or those of a local checkpoint."""
    s = spec(name)
    model = s.build(**_check_overrides(s, overrides))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, s)
    return model.eval()


def count_madds(model: Any, resolution: tuple[int, int]) -> int:
    """Multiply-adds of one forward pass at batch 1: conv + linear + matmul (incl. attention), via flop_counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]
    for m in fused:  # timm's fused SDPA path: count the same matmuls explicitly
        m.fused_attn = False
    try:
        with FlopCounterMode(display=False) as counter:  # (no no_grad: its module tracker needs grad_fns)
            model(torch.zeros(1, 3, *resolution))
    finally:
        for m in fused:
            m.fused_attn = True
    return int(counter.get_total_flops() // 2)


@functools.lru_cache(maxsize=256)
def _info(name: str, resolution: tuple[int, int], frozen: tuple[tuple[str, Any], ...]) -> ModelInfo:
    s = spec(name)
    model = create(name, **dict(frozen))
    return ModelInfo(name=name, family=s.family, resolution=resolution,
                     params=sum(p.numel() for p in model.parameters()), madds=count_madds(model, resolution),
                     default_resolution=s.default_resolution, min_resolution=s.min_resolution,
                     resolution_rule=s.resolution_rule, mean=s.mean, std=s.std, source=s.source,
                     overrides=dict(frozen))


def info(name: str, resolution: Any = (224, 224), **overrides: Any) -> ModelInfo:
    """Parameters, MAdds at `resolution`, input spec and valid-resolution rule of a model (with overrides)."""
    s = spec(name)
    res = check_resolution(name, resolution)
    return _info(name, res, tuple(sorted(_check_overrides(s, overrides).items())))


# --------------------------------------------------------------------------------------------- checkpoints
def _check_archive_sizes(p: Path, max_bytes: int) -> None:
    """Refuse a zip checkpoint whose members declare more bytes than `max_bytes`, before anything is inflated."""
    import zipfile

    if not zipfile.is_zipfile(p):
        if p.stat().st_size > max_bytes:
            raise ToolkitError(f"checkpoint {p} is {p.stat().st_size:,} bytes, more than the {max_bytes:,} the "
                               "model's weights can take; refused")
        return
    try:
        with zipfile.ZipFile(p) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ToolkitError(f"not a loadable weights-only checkpoint: {p} ({exc})") from None
    if declared > max_bytes:
        raise ToolkitError(f"checkpoint {p} declares {declared:,} bytes once unpacked, more than the {max_bytes:,} "
                           "the model's weights can take; refused before reading it")


def read_state_dict(path: str | Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """Read a checkpoint file safely (weights only); accept a bare state dict or one under 'state_dict'/'model'.

    The archive's declared sizes are checked against `max_bytes` first, so a small file that would inflate to
    gigabytes is refused without reading it.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ToolkitError(f"checkpoint not found: {p}")
    _check_archive_sizes(p, max_bytes)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ToolkitError(f"not a loadable weights-only checkpoint: {p} ({reason[:200]})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ToolkitError(f"not a state dict of tensors: {p}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _first(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_checkpoint(model: Any, path: str | Path, s: ModelSpec | None = None) -> None:
    """Load a local checkpoint into `model` with strict key and shape matching; mismatches are one clear line."""
    own_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state = read_state_dict(path, max_bytes=4 * own_bytes + CHECKPOINT_SLACK_BYTES)
    if s is not None and s.adapt_state_dict is not None:
        state = s.adapt_state_dict(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        raise ToolkitError(f"checkpoint {path} does not fit {getattr(s, 'name', 'the model')}: " + "; ".join(parts))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ToolkitError(f"checkpoint {path} has {len(wrong)} tensors of the wrong shape: {_first(wrong, 3)}")
    model.load_state_dict(state, strict=True)


def check_overrides(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and type-convert overrides for a model (unknown keys are a ToolkitError)."""
    return _check_overrides(spec(name), overrides)


def seeded(name: str, seed: int = 0, **overrides: Any):
    """A model with deterministic random weights that exercise every layer (exports without a checkpoint).

    The authors' init leaves Mobile-Former's hyper networks and gates at their identity (Linear ~ N(0, 0.01)) and
    untrained BatchNorm statistics make activations drift, so logits come out nearly flat: a weak parity test. Here
    every Linear gets N(0, 1/fan_in) and the BatchNorm statistics are measured on a few seeded random images at
    224x224. The same (name, seed, overrides) always gives the same weights, whatever the export resolution.
    """
    import torch

    s = spec(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create(name, **overrides)
        gen = torch.Generator().manual_seed(seed)
        bns = []
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
                    if m.bias is not None:
                        m.bias.normal_(0.0, 0.02, generator=gen)
                elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    bns.append((m, m.momentum))
                    m.momentum = None  # cumulative average over the calibration batches
            model.train()
            mean = torch.tensor(s.mean).view(1, 3, 1, 1)
            std = torch.tensor(s.std).view(1, 3, 1, 1)
            for _ in range(3):
                model((torch.rand(4, 3, 224, 224, generator=gen) - mean) / std)
        for m, momentum in bns:
            m.momentum = momentum
    return model.eval()
