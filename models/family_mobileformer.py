"""Mobile-Former (Chen et al., CVPR 2022): the subject of the comparison. Its rows are `mobileformer_cfg.VARIANTS`
(the authors' registry functions); models/mobileformer.py builds any row."""

from __future__ import annotations

from functools import partial

from models.mobileformer_cfg import DYRELU_TOKENS, VARIANTS, MobileFormerCfg
from models.spec import IMAGENET_MEAN, IMAGENET_STD, Ablations, Difference, FamilySpec, ModelSpec

FAMILY = FamilySpec(
    name="mobileformer", display="Mobile-Former", role="subject",
    paper="Mobile-Former: Bridging MobileNet and Transformer (Chen et al., CVPR 2022)",
    # the classes of models/mobileformer.py, as the ONNX exporter records them in each node's module path
    components={"Local2Global": "bridge Mobile->Former", "Global2Local": "bridge Mobile<-Former",
                "GlobalBlock": "Former", "HyperFunc": "DyReLU hyper-MLPs", "MergeClassifier": "head"},
    block_rest={"MobileFormerBlock": "Mobile element-wise (DyReLU, residual)", "LiteBlock": "conv"},
    # the paper's ablations (Tables 7 and 8, as ../shared/seeds reports them: Mobile-Former-294M, ImageNet top-1)
    ablations=Ablations(
        differences=(
            Difference("dyrelu", {}, {"dyrelu": False}, ("DyReLU hyper-MLPs",), 1.0,
                       "dynamic ReLU in the Mobile sub-block: +1.0 point top-1"),
            Difference("former_bridges", {"dyrelu": False}, {"bridge": False},
                       ("bridge Mobile->Former", "bridge Mobile<-Former", "Former"), 2.6,
                       "Former + bridges on top of the Mobile network: +2.6 points top-1 for +12 % MAdds"),
        ),
        unit_override="tokens", unit_values=(1, 3), unit_accuracy={1: 77.1, 3: 77.6, 6: 77.8},
        what_if=("dyrelu_token", "input"),
        what_if_text="dynamic-ReLU coefficients from the block's input tokens instead of the tokens after its "
                     "Former (not in the paper, never trained: its accuracy is unknown)",
        source="Chen et al., CVPR 2022, ablation tables (Mobile-Former-294M), as summarised in ../shared/seeds"),
    export_form=lambda model, fmt: _export_form(model, fmt),
)


def _export_form(model, fmt: str):
    from models.mobileformer_fast import export_form

    return export_form(model, fmt)


def _build(cfg: MobileFormerCfg, **overrides):
    from models.mobileformer import MobileFormer

    return MobileFormer(cfg, **overrides)


def specs() -> list[ModelSpec]:
    """One registry entry per row of VARIANTS (names mobileformer_<variant>)."""
    return [ModelSpec(name=f"mobileformer_{key}", family=FAMILY.name, build=partial(_build, cfg),
                      default_resolution=(224, 224), min_resolution=32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      source="models/mobileformer.py (authors' architecture, AAboys/MobileFormer)",
                      overrides={"tokens": int, "dyrelu": bool, "bridge": bool, "dyrelu_token": str},
                      override_bounds={"tokens": (1, 64)},
                      override_choices={"dyrelu_token": DYRELU_TOKENS},
                      override_defaults={"tokens": cfg.tokens, "dyrelu": True, "bridge": True,
                                         "dyrelu_token": DYRELU_TOKENS[0]},
                      reported_params_m=cfg.params_reported, reported_madds_m=cfg.madds_reported)
            for key, cfg in VARIANTS.items()]
