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
