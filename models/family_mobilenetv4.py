"""MobileNetV4 (Qin et al., ECCV 2024), built by timm: the modern baseline. The review in shared/seeds/ notes that
MobileNetV3 is an old baseline; MobileNetV4's hybrid adds Mobile MQA attention, the modern hybrid to compare with.

MAdds count the Mobile MQA matmuls (models/madds.py puts timm's fused attention on its explicit path while counting).
"""

from __future__ import annotations

from models.spec import FamilySpec, ModelSpec
from models.timm_common import TimmCfg, specs_from

FAMILY = FamilySpec(name="mobilenetv4", display="MobileNetV4", role="baseline",
                    paper="MobileNetV4: Universal Models for the Mobile Ecosystem (Qin et al., ECCV 2024)",
                    components={"MultiQueryAttention2d": "attention", "ClassifierHead": "head"})

# published params (M) and MACs (M) at the default resolution: the paper's Table 6 (MODELS.md 7; timm's builds have
# 3.77M, 9.72M and 11.07M parameters, which the registry counts exactly)
VARIANTS: dict[str, TimmCfg] = {
    "mobilenetv4_conv_small": TimmCfg(224, 32, True, 3.8, 200),
    "mobilenetv4_conv_medium": TimmCfg(256, 32, True, 9.2, 1000),
    "mobilenetv4_hybrid_medium": TimmCfg(256, 32, True, 10.5, 1200),
}


def specs() -> list[ModelSpec]:
    return specs_from(FAMILY.name, VARIANTS)
