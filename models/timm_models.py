"""MobileNetV3 (Howard et al., ICCV 2019) and MobileViT v1 (Mehta & Rastegari, ICLR 2022), built by timm.

The models are timm's (``timm.create_model(name, pretrained=False)``): nothing is fetched from a hub. Weights come
from a local file through ``models.create(name, checkpoint=...)``. A timm state dict loads as is; a torchvision
MobileNetV3 state dict (``torchvision.models.mobilenet_v3_large/small``) is translated to timm's names, because the
two are the same network with different module names (the tensors line up one to one, in order, and torchvision's
classifier Linear is timm's 1x1 ``conv_head``). torchvision's BatchNorm eps is 1e-3 (timm's is 1e-5), so loading a
torchvision checkpoint also sets eps = 1e-3, which makes the logits those of the torchvision model.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ToolkitError


@dataclass(frozen=True)
class TimmCfg:
    family: str
    default_res: int
    min_res: int
    imagenet_norm: bool  # MobileNetV3: ImageNet mean/std; MobileViT (cvnets): mean 0, std 1
    params_m: float  # reported in the papers (MODELS.md 2.2 / 3.2)
    madds_m: float
    torchvision: str | None = None  # the torchvision builder with the same architecture, if any


# MODELS.md 2.2 (MobileNetV3 at 224) and 3.2 (MobileViT at 256)
VARIANTS: dict[str, TimmCfg] = {
    "mobilenetv3_large_100": TimmCfg("mobilenetv3", 224, 32, True, 5.4, 217, "mobilenet_v3_large"),
    "mobilenetv3_large_075": TimmCfg("mobilenetv3", 224, 32, True, 4.0, 155),
    "mobilenetv3_small_100": TimmCfg("mobilenetv3", 224, 32, True, 2.5, 56, "mobilenet_v3_small"),
    "mobilenetv3_small_075": TimmCfg("mobilenetv3", 224, 32, True, 2.0, 44),
    "mobilevit_xxs": TimmCfg("mobilevit", 256, 32, False, 1.3, 407),
    "mobilevit_xs": TimmCfg("mobilevit", 256, 32, False, 2.3, 1026),
    "mobilevit_s": TimmCfg("mobilevit", 256, 32, False, 5.6, 2001),
}


def _build(name: str):
    import timm

    return timm.create_model(name, pretrained=False)


def _from_torchvision(model, state: dict, name: str) -> dict:
    """Translate a torchvision MobileNetV3 state dict to timm names, matching tensors in order by shape."""
    own = model.state_dict()
    if set(state) == set(own) or not any(k.startswith("features.") for k in state):
        return state  # a timm checkpoint (or something else: strict loading will say what is wrong)
    src, dst = list(state.items()), list(own.items())
    if len(src) != len(dst):
        raise ToolkitError(f"torchvision checkpoint has {len(src)} tensors, {name} needs {len(dst)}: "
                           "not the same architecture")
    out = {}
    for (skey, sval), (dkey, dval) in zip(src, dst):
        if sval.numel() != dval.numel() or (sval.dim() != dval.dim() and not dkey.startswith("conv_head")):
            raise ToolkitError(f"torchvision tensor {skey} {tuple(sval.shape)} does not fit {name}'s "
                               f"{dkey} {tuple(dval.shape)}: not the same architecture")
        out[dkey] = sval.reshape(dval.shape)
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3  # torchvision's MobileNetV3 BatchNorm eps
    return out


def specs():
    from functools import partial

    from models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

    out = []
    for name, cfg in VARIANTS.items():
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.imagenet_norm else ((0.0,) * 3, (1.0,) * 3)
        adapt = partial(_torchvision_or_timm, name=name) if cfg.torchvision else None
        out.append(ModelSpec(name=name, family=cfg.family, build=partial(_build, name),
                             default_resolution=(cfg.default_res, cfg.default_res), min_resolution=cfg.min_res,
                             mean=mean, std=std, source=f"timm {name} (pretrained=False)",
                             reported_params_m=cfg.params_m, reported_madds_m=cfg.madds_m, adapt_state_dict=adapt))
    return out


def _torchvision_or_timm(model, state: dict, *, name: str) -> dict:
    return _from_torchvision(model, state, name)
