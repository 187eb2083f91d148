"""MobileNetV3 (Howard et al., ICCV 2019), built by timm: the classic baseline.

A timm state dict loads as is; a torchvision MobileNetV3 state dict (``torchvision.models.mobilenet_v3_large/small``)
is translated to timm's names, because the two are the same network with different module names (the tensors line up
one to one, in order, and torchvision's classifier Linear is timm's 1x1 ``conv_head``). torchvision's BatchNorm eps is
1e-3 (timm's is 1e-5), so loading a torchvision checkpoint also sets eps = 1e-3, which makes the logits those of the
torchvision model.
"""

from __future__ import annotations

from models.errors import ToolkitError
from models.spec import FamilySpec, ModelSpec
from models.timm_common import TimmCfg, specs_from

FAMILY = FamilySpec(name="mobilenetv3", display="MobileNetV3", role="baseline",
                    paper="Searching for MobileNetV3 (Howard et al., ICCV 2019)",
                    components={"SqueezeExcite": "SE", "ClassifierHead": "head"})

# MODELS.md 2.2 (at 224)
VARIANTS: dict[str, TimmCfg] = {
    "mobilenetv3_large_100": TimmCfg(224, 32, True, 5.4, 217, "mobilenet_v3_large"),
    "mobilenetv3_large_075": TimmCfg(224, 32, True, 4.0, 155),
    "mobilenetv3_small_100": TimmCfg(224, 32, True, 2.5, 56, "mobilenet_v3_small"),
    "mobilenetv3_small_075": TimmCfg(224, 32, True, 2.0, 44),
}


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


def _adapt(model, state: dict, *, name: str) -> dict:
    return _from_torchvision(model, state, name)


def specs() -> list[ModelSpec]:
    return specs_from(FAMILY.name, VARIANTS, _adapt)
