"""The Mobile-Former variant table (MODELS.md 1.4, the authors' registry functions), kept free of torch.

Each variant is one row of `VARIANTS`; models/mobileformer.py builds any row with the same shared blocks. This file
imports nothing heavy, so the registry (and cache look-ups of exported artifacts) stay instant.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where each block's dynamic ReLU takes its coefficients from (override dyrelu_token): "after" = the first token after
# this block's Former (the authors' model: the Mobile work waits for Mobile->Former and the Former); "input" = the
# first token entering the block (a what-if: no wait, same MAdds and parameters, accuracy unknown: never trained).
DYRELU_TOKENS = ("after", "input")


@dataclass(frozen=True)
class Block:
    """One row of the architecture table (MODELS.md 1.4).

    kind: "lite" (stage-1 lite bottleneck), "down" (Mobile-Former downsample block, dw-pw-dw-pw) or
    "mf" (stride-1 Mobile-Former block, pw-dw-pw). e1 multiplies the block's input channels (first expansion),
    e2 multiplies its output channels (second depthwise of "down" blocks only).
    """

    kind: str
    e1: int
    c_out: int
    stride: int = 1
    e2: int = 0


def _lite(e1: int, c_out: int, stride: int = 1) -> Block:
    return Block("lite", e1, c_out, stride)


def _down(c_out: int) -> Block:
    return Block("down", 6, c_out, 2, 4)  # e1 = 6, e2 = 4 in every variant


def _mf(e1: int, c_out: int) -> Block:
    return Block("mf", e1, c_out)


@dataclass(frozen=True)
class MobileFormerCfg:
    stem: int
    tokens: int
    dim: int
    head_hidden: int
    blocks: tuple[Block, ...]
    groups: int = 1
    dropout: float = 0.0
    madds_reported: int = 0  # the paper's MAdds (millions), fvcore-total convention
    params_reported: float = 0.0  # the paper's params (millions)


_PLAN_52 = (_lite(3, 12, 2), _mf(3, 12), _down(24), _mf(3, 24), _down(48), _mf(4, 48), _mf(6, 64), _down(96),
            _mf(6, 96))

# MODELS.md 1.4 (official registry functions); reported MAdds / params from the authors' README.
VARIANTS: dict[str, MobileFormerCfg] = {
    "508m": MobileFormerCfg(24, 6, 192, 1920, (
        _lite(2, 24), _down(40), _mf(3, 40), _down(72), _mf(3, 72), _down(128), _mf(4, 128), _mf(6, 176),
        _mf(6, 176), _down(240), _mf(6, 240), _mf(6, 240)), dropout=0.3, madds_reported=508, params_reported=14.0),
    "294m": MobileFormerCfg(16, 6, 192, 1920, (
        _lite(2, 16), _down(24), _mf(4, 24), _down(48), _mf(4, 48), _down(96), _mf(4, 96), _mf(6, 128),
        _mf(6, 128), _down(192), _mf(6, 192), _mf(6, 192)), dropout=0.3, madds_reported=294, params_reported=11.4),
    "214m": MobileFormerCfg(12, 6, 192, 1600, (
        _lite(2, 12), _down(20), _mf(3, 20), _down(40), _mf(4, 40), _down(80), _mf(4, 80), _mf(6, 112),
        _mf(6, 112), _down(160), _mf(6, 160), _mf(6, 160)), dropout=0.2, madds_reported=214, params_reported=9.4),
    "151m": MobileFormerCfg(12, 6, 192, 1280, (
        _lite(2, 12), _down(16), _mf(3, 16), _down(32), _mf(3, 32), _down(64), _mf(4, 64), _mf(6, 88),
        _mf(6, 88), _down(128), _mf(6, 128), _mf(6, 128)), dropout=0.2, madds_reported=151, params_reported=7.6),
    "96m": MobileFormerCfg(12, 4, 128, 1280, (
        _lite(2, 12), _down(16), _down(32), _mf(3, 32), _down(64), _mf(4, 64), _mf(6, 88), _down(128),
        _mf(6, 128)), dropout=0.2, madds_reported=96, params_reported=4.6),
    "52m": MobileFormerCfg(8, 3, 128, 1024, _PLAN_52, dropout=0.2, madds_reported=52, params_reported=3.5),
    "26m": MobileFormerCfg(8, 3, 128, 1024, _PLAN_52, groups=4, dropout=0.1, madds_reported=26,
                           params_reported=3.2),
}
