"""MAdds: multiply-adds of one forward pass at batch 1, counted by running the model under
``torch.utils.flop_counter`` (conv + linear + matmul, attention included: the "core" convention of MODELS.md).

timm's attention layers take a fused scaled-dot-product path that the counter cannot see into (MobileViT's
Attention, MobileNetV4's Mobile MQA); every module with a `fused_attn` switch is put on its explicit matmul path
while counting, so those matmuls are counted like any other.
"""

from __future__ import annotations

from typing import Any


def count_madds(model: Any, resolution: tuple[int, int]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]
    for m in fused:
        m.fused_attn = False
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *resolution))
    finally:
        for m in fused:
            m.fused_attn = True
    return int(counter.get_total_flops() // 2)
