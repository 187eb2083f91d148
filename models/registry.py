"""A small name -> entry registry shared by models, export formats and devices.

Registering a name twice is a bug and raises; looking up an unknown name raises a ToolkitError that lists the valid
names. Names are never fuzzy-matched or auto-corrected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from models.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# --------------------------------------------------------------------------------------------- the model registry
def _discover() -> tuple[Registry, Registry]:
    """Every `models/family_*.py` is one family: its FAMILY and its `specs()` rows. Adding a family is adding a file."""
    import importlib
    import pkgutil
    from pathlib import Path

    families: Registry = Registry("family")
    model_specs: Registry = Registry("model")
    here = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name):
        if not info.name.startswith("family_"):
            continue
        mod = importlib.import_module(f"models.{info.name}")
        fam = mod.FAMILY
        families.register(fam.name, fam)
        for s in mod.specs():
            if s.family != fam.name:
                raise ValueError(f"models/{info.name}.py: {s.name} says family {s.family!r}, not {fam.name!r}")
            model_specs.register(s.name, s)
    return families, model_specs


FAMILIES, MODELS = _discover()
