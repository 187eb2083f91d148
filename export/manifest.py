"""The typed records of an artifact: `Manifest` (manifest.json) and `Parity` (the proof inside it).

On disk a manifest is JSON; `Manifest.from_json` validates what the toolkit relies on (one line naming the field for
anything else) and `to_json` writes it back. A converter's own details (delegation, op histograms, opset, ...) live
under their own key, `details`, so no converter can overwrite a field of the pipeline (`status`, `file`, ...).

Backward compatibility: manifests written before `details` existed kept those figures at the top level; reading one
moves every key the pipeline does not own under `details`, so they still load (and a cache hit on one re-exports it,
since those manifests also lack the file hash: see export.core.verify_file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ToolkitError

SETS = ("random", "images", "images_alt")  # the input sets parity is checked on (images_alt: a second size)


class ManifestError(ToolkitError):
    """manifest.json exists but is not one the toolkit wrote (invalid JSON, wrong shape, a file outside its dir)."""


@dataclass
class Parity:
    """The artifact against PyTorch on fresh random inputs and on photographs (figures from parity.compare)."""

    verdict: str  # passed | failed | not run: <reason>
    thresholds: dict[str, float] | None = None
    random_seed: int | None = None
    photos: list[str] | None = None
    random: dict[str, float] | None = None
    images: dict[str, float] | None = None
    images_alt: dict[str, float] | None = None
    alt_resolution: list[int] | None = None
    reason: str | None = None
    vs_plain: dict[str, Any] | None = None  # an optimized artifact against the plain one (export/optimize.py)

    def worst(self) -> dict[str, float | None]:
        """The worst figures over every input set checked: the one place they are combined."""
        sets = [s for s in (self.random, self.images, self.images_alt) if isinstance(s, dict)]
        return {"max_rel": max((s["max_rel"] for s in sets), default=None),
                "cosine": min((s["cosine"] for s in sets), default=None),
                "top1": min((s["top1"] for s in sets), default=None)}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: Any) -> Parity:
        if not isinstance(obj, dict):
            return cls(verdict="unknown")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known}) if "verdict" in obj else cls(
            verdict="unknown", **{k: v for k, v in obj.items() if k in known and k != "verdict"})


@dataclass
class Manifest:
    """manifest.json of an artifact directory."""

    model: str
    format: str
    file: str
    resolution: list[int] | None = None
    family: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    dynamic: bool = False
    params: int | None = None
    madds: int | None = None
    converter: str | None = None
    converter_versions: dict[str, str | None] = field(default_factory=dict)
    precision: str = "fp32"
    file_bytes: int | None = None
    file_sha256: str | None = None
    export_seconds: float | None = None
    cache_key: str | None = None
    created: str | None = None
    toolkit_commit: str | None = None
    host: str | None = None
    parity: Parity = field(default_factory=lambda: Parity("unknown"))
    status: str = "unknown"
    details: dict[str, Any] = field(default_factory=dict)  # the converter's own figures
    graph: dict[str, Any] = field(default_factory=dict)  # node counts, delegated ops, bytes (export/optimize.py)
    optimized: bool = False  # `--optimize`: the export form and graph tools (export/optimize.py)
    optimization: dict[str, Any] = field(default_factory=dict)  # its steps, and the plain artifact's graph

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["parity"] = self.parity.to_json()
        return out

    @classmethod
    def from_json(cls, m: Any, path: Path, formats: Any = None) -> Manifest:
        """Validate and type a manifest read from `path`; `formats` (names) restricts the format field."""
        if not isinstance(m, dict):
            raise ManifestError(f"invalid manifest {path}: a JSON object expected, not {type(m).__name__}")
        f = m.get("file")
        if not isinstance(f, str) or not f or f in (".", "..") or "/" in f or "\\" in f or "\0" in f:
            raise ManifestError(f"invalid manifest {path}: 'file' must name a file inside {path.parent}, not {f!r}")
        if not isinstance(m.get("format"), str) or (formats is not None and m["format"] not in formats):
            raise ManifestError(f"invalid manifest {path}: unknown format {m.get('format')!r}")
        res = m.get("resolution")
        if res is not None and not (isinstance(res, list) and len(res) == 2 and all(type(v) is int for v in res)):
            raise ManifestError(f"invalid manifest {path}: 'resolution' must be [height, width], not {res!r}")
        for key, typ in (("model", str), ("file_bytes", int), ("file_sha256", str), ("status", str),
                         ("cache_key", str), ("input", dict), ("parity", dict), ("details", dict),
                         ("overrides", dict), ("weights", dict)):
            if key in m and m[key] is not None and not isinstance(m[key], typ):
                raise ManifestError(f"invalid manifest {path}: {key!r} must be a {typ.__name__}, not {m[key]!r}")
        own = {fl.name for fl in dataclasses.fields(cls)}
        kw = {k: v for k, v in m.items() if k in own and k not in ("parity", "details")}
        kw.setdefault("model", "")
        details = dict(m.get("details") or {})
        details.update({k: v for k, v in m.items() if k not in own})  # an older manifest's top-level figures
        return cls(**kw, parity=Parity.from_json(m.get("parity")), details=details)
