"""Resolutions: `N` or `HxW` (height x width), at most six digits each, within a model's range."""

from __future__ import annotations

import re
from typing import Any

from models.errors import ToolkitError
from models.spec import MAX_RESOLUTION, ModelSpec


def parse_resolution(text: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """'224' -> (224, 224); '192x256' -> (192, 256) (height x width); ints and pairs pass through."""
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)) and len(text) == 2 and all(type(v) is int for v in text):
        return (int(text[0]), int(text[1]))
    text = str(text)
    m = re.fullmatch(r"\s*(\d{1,6})\s*(?:[xX]\s*(\d{1,6}))?\s*", text)
    if not m:
        shown = text if len(text) <= 40 else text[:40] + f"... ({len(text)} characters)"
        raise ToolkitError(f"bad resolution {shown!r}: expected N or HxW with at most 6 digits each, e.g. 224 or "
                           "192x256")
    h = int(m.group(1))
    return (h, int(m.group(2)) if m.group(2) else h)


def format_resolution(res: tuple[int, int]) -> str:
    return f"{res[0]}x{res[1]}"


def check_resolution_for(s: ModelSpec, resolution: Any) -> tuple[int, int]:
    """Parse and validate a resolution for a model; a resolution it can't take is a ToolkitError."""
    h, w = parse_resolution(resolution)
    if not (s.min_resolution <= h <= MAX_RESOLUTION and s.min_resolution <= w <= MAX_RESOLUTION):
        raise ToolkitError(f"{s.name} cannot take {h}x{w}: valid resolutions are {s.resolution_rule}")
    return (h, w)
