"""MobileViT v1 (Mehta & Rastegari, ICLR 2022), built by timm: the hybrid CNN-Transformer baseline."""

from __future__ import annotations

from models.spec import FamilySpec, ModelSpec
from models.timm_common import TimmCfg, specs_from

FAMILY = FamilySpec(name="mobilevit", display="MobileViT", role="baseline",
                    paper="MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer "
                          "(Mehta & Rastegari, ICLR 2022)",
                    components={"Attention": "attention", "Mlp": "MLP", "MobileVitBlock": "unfold/fold/resize"})

# MODELS.md 3.2 (at 256); cvnets normalises to [0, 1] only (mean 0, std 1)
VARIANTS: dict[str, TimmCfg] = {
    "mobilevit_xxs": TimmCfg(256, 32, False, 1.3, 407),
    "mobilevit_xs": TimmCfg(256, 32, False, 2.3, 1026),
    "mobilevit_s": TimmCfg(256, 32, False, 5.6, 2001),
}


def specs() -> list[ModelSpec]:
    return specs_from(FAMILY.name, VARIANTS)
