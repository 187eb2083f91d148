"""The toolkit's defaults that name models: the default sweep, the export coverage set and the profiled set. This is
the one file outside the family modules where model names appear; export/, devices/ and bench/ read them here."""

from __future__ import annotations

# `make bench` / `python -m bench run`: the subject at its mid size, and one baseline of each family at about its
# MAdds (MobileNetV3-L 217M, MobileNetV4-Conv-S 186M) or its accuracy (MobileViT-XS), so comparisons stay like for like
SWEEP_MODELS = ("mobileformer_294m", "mobilenetv3_large_100", "mobilenetv4_conv_small", "mobilevit_xs")
SWEEP_FORMATS = "all"
# Five sizes: the small-image regime the question is about (128, 160), the crossover region (192, 224) and one large
# size (384). Seven (adding 256 and 512) made a cold `make bench` ~38 min on this 2-core machine, exports being
# ~4 min per resolution (docs/bench.md, "Time"); `--res` takes any list.
SWEEP_RESOLUTIONS = "128,160,192,224,384"
SWEEP_ITERATIONS = 100
SWEEP_WARMUP = 10
SWEEP_THREADS = "1"

# `python -m export` without --model
EXPORT_MODEL = "mobileformer_294m"

# `python -m export.matrix`: the converter coverage table
COVERAGE_MODELS = ("mobileformer_26m", "mobileformer_52m", "mobileformer_294m", "mobilenetv3_large_100",
                   "mobilenetv3_small_100", "mobilenetv4_conv_small", "mobilevit_xxs", "mobilevit_xs")

# `python -m bench.profile`: where the time goes
PROFILE_MODELS = SWEEP_MODELS

# `make why` / `python -m bench why`: the subject and the baselines of the default sweep (bench why adds the subject's
# ablations and the peak probe), at the small, middle and large end of the sweep (a fit needs two or more)
WHY_MODELS = SWEEP_MODELS
WHY_RESOLUTIONS = "128,224,512"
