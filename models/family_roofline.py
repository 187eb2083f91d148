"""The peak probe: not a model to compare but the instrument that measures what a runtime can do on a device.

`bench why` reports how far each model runs from the device's multiply-add peak. That peak is measured, not taken
from a data sheet: this "model" is a large fp32 GEMM (1x1 convolutions, 512 -> 512 channels over 48 x 48 = 2304
positions, 1.2 G multiply-adds; the 1000-way linear head at the end is 0.04 % of it), exported and timed like any
model, in the same rounds, through the same runtime (onnxruntime's MLAS, XNNPACK under LiteRT and ExecuTorch), so
the peak is the one the models could reach there.
Its input is cropped to 48 x 48 first, so its work is the same at every resolution of a sweep; the best of its
per-round medians over a run is the peak (bench/fit.py). Role "probe": never in a ratio, a pair or the default sweep.
"""

from __future__ import annotations

from functools import partial

from models.spec import IMAGENET_MEAN, IMAGENET_STD, FamilySpec, ModelSpec

FAMILY = FamilySpec(name="roofline", display="peak GEMM probe", role="probe",
                    paper="(instrument) a large single-input fp32 GEMM as 1x1 convolutions",
                    components={"GemmProbe": "GEMM"}, measures="peak")

# name -> (channels, side of the crop, GEMM layers)
VARIANTS: dict[str, tuple[int, int, int]] = {"roofline_gemm512": (512, 48, 2)}


def _build(width: int, side: int, layers: int):
    from torch import nn

    class GemmProbe(nn.Module):
        """crop to side x side -> 1x1 conv 3 -> width -> `layers` x (1x1 conv width -> width, ReLU) -> mean ->
        Linear(width -> 1000) (logits like every model, so parity and the harness treat it alike)."""

        def __init__(self):
            super().__init__()
            self.side = side
            self.expand = nn.Conv2d(3, width, 1, bias=False)
            self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.ReLU())
                                        for _ in range(layers)])
            self.fc = nn.Linear(width, 1000)

        def forward(self, x):
            x = x[:, :, : self.side, : self.side]
            return self.fc(self.body(self.expand(x)).mean((2, 3)))

    return GemmProbe()


def specs() -> list[ModelSpec]:
    return [ModelSpec(name=name, family=FAMILY.name, build=partial(_build, *cfg), default_resolution=(cfg[1],) * 2,
                      min_resolution=cfg[1], mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      source="models/family_roofline.py (a measuring instrument, no paper)")
            for name, cfg in VARIANTS.items()]
