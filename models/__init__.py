"""Reference models behind one registry: Mobile-Former (our implementation, the subject), MobileNetV3, MobileNetV4
and MobileViT (timm, the baselines).

    models.list_models() -> list[str]
    models.create(name, *, checkpoint=None, **overrides) -> nn.Module   (eval mode)
    models.info(name, resolution=(224, 224), **overrides) -> ModelInfo
    models.family_info(family) -> FamilySpec   (display name, role in the comparison, profiler components)

A family is one file, `models/family_<name>.py`: its FAMILY and its table of variants (models/registry.py finds
it). MAdds follow the "core" convention of MODELS.md (models/madds.py); checkpoints load from local files only, with
``torch.load(weights_only=True)`` and strict key matching (models/checkpoint.py). This module only re-exports.
"""

from models.api import (
    check_overrides,
    check_resolution,
    create,
    families,
    family_info,
    info,
    list_models,
    seeded,
    spec,
)
from models.checkpoint import load_checkpoint, read_state_dict
from models.errors import ToolkitError
from models.madds import count_madds
from models.overrides import model_label, split_model_arg
from models.resolution import format_resolution, parse_resolution
from models.spec import IMAGENET_MEAN, IMAGENET_STD, MAX_RESOLUTION, FamilySpec, ModelInfo, ModelSpec

__all__ = ["ModelSpec", "ModelInfo", "FamilySpec", "ToolkitError", "list_models", "create", "info", "spec", "seeded",
           "families", "family_info", "check_overrides", "parse_resolution", "format_resolution", "check_resolution",
           "load_checkpoint", "read_state_dict", "count_madds", "model_label", "split_model_arg", "IMAGENET_MEAN",
           "IMAGENET_STD", "MAX_RESOLUTION"]
