"""The models registry's public functions: look-up, creation, info, seeded weights."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.checkpoint import load_checkpoint
from models.madds import count_madds
from models.overrides import check_overrides_for
from models.registry import FAMILIES, MODELS
from models.resolution import check_resolution_for
from models.spec import FamilySpec, ModelInfo, ModelSpec


def list_models() -> list[str]:
    return MODELS.names()


def spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def families() -> list[FamilySpec]:
    return [FAMILIES.get(n) for n in FAMILIES.names()]


def family_info(name: str) -> FamilySpec:
    """A family's display name, role (subject or baseline) and profiler components; unknown names list the known."""
    return FAMILIES.get(name)


def check_resolution(name: str, resolution: Any) -> tuple[int, int]:
    return check_resolution_for(spec(name), resolution)


def check_overrides(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and type-convert overrides for a model (unknown keys, bad types and values out of bounds are a
    ToolkitError)."""
    return check_overrides_for(spec(name), overrides)


def create(name: str, *, checkpoint: str | Path | None = None, **overrides: Any):
    """Build a registered model in eval mode, with fresh weights or those of a local checkpoint."""
    s = spec(name)
    model = s.build(**check_overrides_for(s, overrides))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, s)
    return model.eval()


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
    res = check_resolution_for(s, resolution)
    return _info(name, res, tuple(sorted(check_overrides_for(s, overrides).items())))


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
