"""Parity on a device: an artifact's outputs computed where it runs (a Mac's Core ML, a board's runtimes), compared
with the PyTorch reference computed on this computer by the same check export uses (export/parity.py), and the
verdict written into the artifact's manifest with the device that produced it.

Why: on Linux a Core ML package cannot execute, so export records its parity as "not run: needs macOS"; the first
Mac that runs it settles the question.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from models.errors import ToolkitError


def check_on_device(dev: Any, artifact: str | Path, *, units: str | None = None, threads: int = 1) -> dict[str, Any]:
    """Run export's parity check with the device's outputs; update the manifest; return the parity record."""
    import export
    from export import parity
    from export.core import build_model

    art = export.resolve(artifact)
    m = art.manifest
    if not hasattr(dev, "outputs"):
        raise ToolkitError(f"device {dev.name} ({dev.kind}) cannot compute outputs for a parity check")
    why = dev.can_run(m["format"])
    if why:
        raise ToolkitError(f"device {dev.name} cannot run {m['format']}: {why}")
    net = build_model(m["model"], m.get("overrides") or {}, m.get("weights") or {"seed": 0})

    def runner(x):
        return dev.outputs(art, x, threads=threads, units=units)

    record = parity.check(m, net, lambda: runner, None)
    record["device"] = {"name": dev.name, "kind": dev.kind, **({"compute_units": units} if units else {})}
    m = dict(m, parity=record)
    if m.get("status") in ("ok", "failed"):
        m["status"] = "failed" if record["verdict"] == "failed" else "ok"
    path = Path(art.dir) / "manifest.json"
    tmp = path.with_name(f".manifest.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return record
