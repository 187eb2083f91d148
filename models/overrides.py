"""Model overrides: one syntax everywhere, `name:key=value[:key=value...]` (e.g. mobileformer_294m:tokens=3), typed
and bounded by the model's spec."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from models.errors import ToolkitError
from models.spec import DEFAULT_INT_BOUNDS, ModelSpec


def split_model_arg(item: str) -> tuple[str, dict[str, str]]:
    """'mobileformer_294m:tokens=3:dyrelu=false' -> ('mobileformer_294m', {'tokens': '3', 'dyrelu': 'false'})."""
    name, *pairs = str(item).strip().split(":")
    out: dict[str, str] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k.strip():
            raise ToolkitError(f"bad model override {pair!r} in {item!r}: expected name:key=value, "
                               "e.g. mobileformer_294m:tokens=3")
        out[k.strip()] = v.strip()
    return name.strip(), out


def model_label(model: str, overrides: Mapping[str, Any]) -> str:
    """The inverse of split_model_arg: 'mobileformer_294m:tokens=3'."""
    return model + "".join(f":{k}={str(v).lower()}" for k, v in sorted(overrides.items()))


def check_overrides_for(s: ModelSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in overrides.items():
        if key not in s.overrides:
            valid = ", ".join(s.overrides) or "none"
            raise ToolkitError(f"{s.name} has no override {key!r}; valid overrides: {valid}")
        typ = s.overrides[key]
        if typ is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ToolkitError(f"override {key} takes true or false, not {value!r}")
            value = value.lower() in ("true", "1")
        if typ is int and isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            raise ToolkitError(f"override {key} takes a whole number, not {value[:40]!r}")
        try:
            value = typ(value)
        except (TypeError, ValueError, OverflowError):
            raise ToolkitError(f"override {key} takes a {typ.__name__}, not {str(value)[:40]!r}") from None
        if typ is str:
            choices = s.override_choices.get(key, ())
            if value not in choices:
                raise ToolkitError(f"override {key} of {s.name} takes {' or '.join(choices)}, not {value[:40]!r}")
        if typ is int:
            lo, hi = s.override_bounds.get(key, DEFAULT_INT_BOUNDS)
            if not lo <= value <= hi:
                raise ToolkitError(f"override {key} of {s.name} takes {lo} to {hi}, not {value}")
        out[key] = value
    return out
