"""Which cells `bench why` times, and how a cell's runtime mode reaches the runtime. Pure of timing; no torch.

The why sweep is one ordinary sweep (bench/sweep/) whose model list holds the subject's ablations beside the full
model, so every cell that is differenced sits in the same interleaved group as the cells it is differenced with
(group_key: device, runtime, precision, threads, resolution). Its plan ("why:<threads>") keeps of the product:
  * every model at the asked thread count(s), in each runtime's default mode (the ablations, baselines, the probe);
  * the feedback-path experiment at every thread count of the sweep and in every mode a format declares
    (onnxruntime's "parallel"): the subject as the authors built it and with `dyrelu_token=input`, and the peak
    probe in the default mode (the peak with that many threads).

A mode is set through the artifact, not through the device: the cell's artifact directory is a sibling holding a
hard link to the same file and a copy of its manifest whose `details.session` names the mode (export/onnx.py reads
it in load()). Every device kind that loads artifacts with export.load honours it with no code of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import models

WHY = "why"


def why_plan(threads: tuple[int, ...]) -> str:
    return f"{WHY}:{','.join(str(t) for t in sorted(threads))}"


def plan_threads(plan: str) -> set[int]:
    """The thread counts of the ablation cells named by a why plan."""
    return {int(t) for t in plan.partition(":")[2].split(",") if t}


def role_of(model: str) -> str:
    return models.family_info(models.spec(model).family).role


def ablations_of(model: str):
    """The family's Ablations (models/spec.py), or None."""
    return models.family_info(models.spec(model).family).ablations


def ablation_models(model: str) -> list[dict[str, Any]]:
    """The override sets bench why times beside `model` (itself first): every difference's two cells, the per-unit
    sweep and the what-if, from the family's Ablations; [{}] for a family without any."""
    ab = ablations_of(model)
    out: list[dict[str, Any]] = [{}]
    if ab is None:
        return out
    sets = [dict(d.with_overrides) for d in ab.differences] + [dict(d.without_overrides) for d in ab.differences]
    sets += [{ab.unit_override: v} for v in ab.unit_values] if ab.unit_override else []
    sets += [{ab.what_if[0]: ab.what_if[1]}] if ab.what_if else []
    for o in sets:
        if o not in out:
            out.append(o)
    return out


def is_feedback_cell(model: str, overrides: dict[str, Any]) -> bool:
    """The subject as built or with only its what-if override, or the probe: the cells timed at every thread
    count (and mode)."""
    if role_of(model) == "probe":
        return True
    ab = ablations_of(model)
    return ab is not None and ab.what_if is not None and set(overrides) <= {ab.what_if[0]}


def keep(plan: str, cell: Any, threads: tuple[int, ...]) -> bool:
    """Whether a cell of the sweep's product belongs to its plan ("" keeps everything)."""
    if not plan:
        return True
    base = plan_threads(plan)
    if cell.threads in base and not cell.mode:
        return True
    ov = dict(cell.overrides)
    if not is_feedback_cell(cell.model, ov):
        return False
    return not (cell.mode and role_of(cell.model) == "probe")


def mode_artifact(path: str, mode: str) -> str:
    """The artifact directory to hand the device for a cell in `mode` ("" = the artifact itself): a sibling
    `.<name>@<mode>` with a hard link (or a copy) of the file and the manifest with details.session set."""
    if not mode:
        return path
    src = Path(path)
    manifest = json.loads((src / "manifest.json").read_text())
    dst = src.parent / f".{src.name}@{mode}"
    want = {**manifest, "details": {**(manifest.get("details") or {}), "session": {"execution_mode": mode}}}
    if dst.is_dir() and (dst / "manifest.json").exists():
        try:
            if json.loads((dst / "manifest.json").read_text()) == want and \
                    (dst / manifest["file"]).stat().st_ino == (src / manifest["file"]).stat().st_ino:
                return str(dst)
        except (OSError, ValueError):
            pass
    tmp = src.parent / f".{src.name}@{mode}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        os.link(src / manifest["file"], tmp / manifest["file"])
    except OSError:
        shutil.copy2(src / manifest["file"], tmp / manifest["file"])
    (tmp / "manifest.json").write_text(json.dumps(want, indent=2))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return str(dst)
