"""What the timm-built families share: a variant row, the builder (``timm.create_model(name, pretrained=False)``:
nothing is fetched from a hub; weights come from a local file through ``models.create(name, checkpoint=...)``) and
the turning of a table of rows into registry entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec


@dataclass(frozen=True)
class TimmCfg:
    default_res: int
    min_res: int
    imagenet_norm: bool  # ImageNet mean/std; False: mean 0, std 1 (MobileViT, from cvnets)
    params_m: float  # as published (MODELS.md)
    madds_m: float
    torchvision: str | None = None  # the torchvision builder with the same architecture, if any


def build(name: str):
    import timm

    return timm.create_model(name, pretrained=False)


def specs_from(family: str, variants: dict[str, TimmCfg],
               adapt: Callable[..., dict] | None = None) -> list[ModelSpec]:
    out = []
    for name, cfg in variants.items():
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.imagenet_norm else ((0.0,) * 3, (1.0,) * 3)
        out.append(ModelSpec(name=name, family=family, build=partial(build, name),
                             default_resolution=(cfg.default_res, cfg.default_res), min_resolution=cfg.min_res,
                             mean=mean, std=std, source=f"timm {name} (pretrained=False)",
                             reported_params_m=cfg.params_m, reported_madds_m=cfg.madds_m,
                             adapt_state_dict=partial(adapt, name=name) if adapt and cfg.torchvision else None))
    return out
