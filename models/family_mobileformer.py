"""Mobile-Former (Chen et al., CVPR 2022): the subject of the comparison. Its rows are `mobileformer_cfg.VARIANTS`
(the authors' registry functions); models/mobileformer.py builds any row."""

from __future__ import annotations

from functools import partial

from models.mobileformer_cfg import VARIANTS, MobileFormerCfg
from models.spec import IMAGENET_MEAN, IMAGENET_STD, FamilySpec, ModelSpec

FAMILY = FamilySpec(
    name="mobileformer", display="Mobile-Former", role="subject",
    paper="Mobile-Former: Bridging MobileNet and Transformer (Chen et al., CVPR 2022)",
    # the classes of models/mobileformer.py, as the ONNX exporter records them in each node's module path
    components={"Local2Global": "bridge Mobile->Former", "Global2Local": "bridge Mobile<-Former",
                "GlobalBlock": "Former", "HyperFunc": "DyReLU hyper-MLPs", "MergeClassifier": "head"},
    block_rest={"MobileFormerBlock": "Mobile element-wise (DyReLU, residual)", "LiteBlock": "conv"},
)


def _build(cfg: MobileFormerCfg, **overrides):
    from models.mobileformer import MobileFormer

    return MobileFormer(cfg, **overrides)


def specs() -> list[ModelSpec]:
    """One registry entry per row of VARIANTS (names mobileformer_<variant>)."""
    return [ModelSpec(name=f"mobileformer_{key}", family=FAMILY.name, build=partial(_build, cfg),
                      default_resolution=(224, 224), min_resolution=32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      source="models/mobileformer.py (authors' architecture, AAboys/MobileFormer)",
                      overrides={"tokens": int, "dyrelu": bool, "bridge": bool},
                      override_bounds={"tokens": (1, 64)},
                      reported_params_m=cfg.params_reported, reported_madds_m=cfg.madds_reported)
            for key, cfg in VARIANTS.items()]
