"""Checkpoints: local files only, read with ``torch.load(weights_only=True)`` after their declared sizes are checked,
and loaded with strict key and shape matching (a mismatch is one clear line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.errors import ToolkitError
from models.spec import ModelSpec

# A checkpoint archive may declare at most this much more than the model's own tensors (x4: an EMA copy and
# optimizer state fit) before it is read: a small file that inflates to gigabytes is refused from its table of
# contents.
CHECKPOINT_SLACK_BYTES = 64 << 20
MAX_CHECKPOINT_BYTES = 8 << 30  # when the model is not known


def _check_archive_sizes(p: Path, max_bytes: int) -> None:
    """Refuse a zip checkpoint whose members declare more bytes than `max_bytes`, before anything is inflated."""
    import zipfile

    if not zipfile.is_zipfile(p):
        if p.stat().st_size > max_bytes:
            raise ToolkitError(f"checkpoint {p} is {p.stat().st_size:,} bytes, more than the {max_bytes:,} the "
                               "model's weights can take; refused")
        return
    try:
        with zipfile.ZipFile(p) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ToolkitError(f"not a loadable weights-only checkpoint: {p} ({exc})") from None
    if declared > max_bytes:
        raise ToolkitError(f"checkpoint {p} declares {declared:,} bytes once unpacked, more than the {max_bytes:,} "
                           "the model's weights can take; refused before reading it")


def read_state_dict(path: str | Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """Read a checkpoint file safely (weights only); accept a bare state dict or one under 'state_dict'/'model'.

    The archive's declared sizes are checked against `max_bytes` first, so a small file that would inflate to
    gigabytes is refused without reading it.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ToolkitError(f"checkpoint not found: {p}")
    _check_archive_sizes(p, max_bytes)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ToolkitError(f"not a loadable weights-only checkpoint: {p} ({reason[:200]})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ToolkitError(f"not a state dict of tensors: {p}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _first(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_checkpoint(model: Any, path: str | Path, s: ModelSpec | None = None) -> None:
    """Load a local checkpoint into `model` with strict key and shape matching; mismatches are one clear line."""
    own_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state = read_state_dict(path, max_bytes=4 * own_bytes + CHECKPOINT_SLACK_BYTES)
    if s is not None and s.adapt_state_dict is not None:
        state = s.adapt_state_dict(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        raise ToolkitError(f"checkpoint {path} does not fit {getattr(s, 'name', 'the model')}: " + "; ".join(parts))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ToolkitError(f"checkpoint {path} has {len(wrong)} tensors of the wrong shape: {_first(wrong, 3)}")
    model.load_state_dict(state, strict=True)


