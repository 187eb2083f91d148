"""Parity: does the exported artifact, run in its own runtime, compute what the PyTorch model computes?

Two input sets, both at the artifact's resolution and normalised with the model's mean/std:
  * random: 8 fresh random images (uniform pixels in [0, 1]); the seed is drawn anew for each (model,
    resolution) in a process (the formats of one group share it and the PyTorch reference) and recorded;
  * images: the photographs scikit-image ships (astronaut, coffee, chelsea, rocket), resized to H x W.
Random inputs alone can hide errors that real images expose (rf-detr's ExecuTorch model passed on random input and
failed on photographs), hence both.

Figures per set: max_abs (largest |artifact - torch| over all logits), max_rel (max_abs / largest |torch logit|),
cosine (the smallest cosine similarity of a sample's logit vectors), top1 (share of samples whose argmax agrees),
top5 (mean overlap of the two top-5 sets).

Thresholds (THRESHOLDS below): fp32 must reach max_rel <= 1e-3 and cosine >= 0.99999 on both sets. fp16 must reach
max_rel <= 1e-1 and cosine >= 0.995, set from measurement at 224 on the coverage models (docs/export.md): weight-only
fp16 (ONNX, both TFLite converters, computed in fp32 here) stays within 2.0e-2 / 0.9997; ExecuTorch's XNNPACK
computes in fp16 and reaches 5.1e-2 / 0.9968 on Mobile-Former-294M, where PyTorch's own half-precision model gives
3.8e-2 / 0.9986. A broken conversion lands far outside (onnx2tf's wrong NHWC guess on a baseline: cosine 0.66;
fp16 accumulation over 12,544 pixels before chunking: cosine 0.63).
Top-1/top-5 are reported, not gated: with random weights two logits can be closer than any float error.

int8 is gated against its quantized reference (export/quant.py says which, per converter), in output steps (the
logits' quantization scale), because integer kernels never match fake-quant arithmetic exactly (about one step
per layer): the median logit within 10 steps and the smallest per-sample cosine at least 0.85, on both sets
(0.98 where the output is not quantized). Measured at 224 on every family and converter (docs/int8.md): healthy
files reach medians of 0-6 steps and cosines of 0.93-1.0; onnxruntime's fused kernels on an attention graph that
disagreed with their own QDQ arithmetic reached a median of 15-19 steps and cosines of 0.61-0.75. The cosine is a
weak gate alone: a photograph whose logits span a few output steps has a poor cosine even for a correct file.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

import numpy as np

THRESHOLDS = {"fp32": {"max_rel": 1e-3, "cosine": 0.99999}, "fp16": {"max_rel": 1e-1, "cosine": 0.995},
              # int8: against the quantized reference, on both sets (docs/int8.md has the measurements)
              "int8": {"median_steps": 10.0, "cosine": 0.85, "cosine_no_step": 0.98}}
N_RANDOM = 8
IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def photographs(resolution: tuple[int, int], mean, std) -> np.ndarray:
    """The scikit-image photographs resized to H x W and normalised: (N, 3, H, W) float32."""
    from skimage.transform import resize

    out = []
    for name in IMAGES:
        img = _photo(name)[..., :3].astype(np.float32) / 255.0
        img = resize(img, resolution, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
        out.append(img.transpose(2, 0, 1))
    return _normalise(np.stack(out), mean, std)


def random_images(resolution: tuple[int, int], mean, std, seed: int, n: int = N_RANDOM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _normalise(rng.random((n, 3, *resolution), dtype=np.float32), mean, std)


def _normalise(x: np.ndarray, mean, std) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


def compare(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Parity figures between reference logits and artifact logits, both (N, classes)."""
    ref = ref.astype(np.float64).reshape(len(ref), -1)
    got = got.astype(np.float64).reshape(len(got), -1)
    diff = np.abs(ref - got)
    max_abs = float(diff.max())
    scale = float(np.abs(ref).max()) or 1.0
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-30)
    top5_ref = np.argsort(-ref, axis=1)[:, :5]
    top5_got = np.argsort(-got, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_got)]
    return {"max_abs": max_abs, "max_rel": max_abs / scale, "max_logit": scale, "cosine": float(cos.min()),
            "top1": float((ref.argmax(1) == got.argmax(1)).mean()), "top5": float(np.mean(overlap)),
            "n": int(len(ref))}


def _run(fn, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i:i + 1]), dtype=np.float32).reshape(1, -1) for i in range(len(x))])


def check(manifest: dict[str, Any], model, load, cannot_run: str | None, quantized=None) -> dict[str, Any]:
    """Run the artifact (`load()` gives its runner) and the PyTorch model on both input sets; return the manifest's
    "parity" record. `cannot_run` is the reason this host cannot run the format (the check is then "not run").

    The inputs and the PyTorch logits depend on the model and the resolution only, not on the format, so they are
    computed once per (model, resolution) in a process and shared by the formats exported next (`_reference`):
    the formats of one group are checked on the same random images (one recorded seed) against one reference.

    int8 (`quantized`: an export.quant.Reference): the figures against PyTorch are recorded, not gated (with seeded
    weights they measure quantization drift, not accuracy); the gate is the agreement with the quantized reference
    on both sets, in output steps (THRESHOLDS["int8"])."""
    m = manifest
    res = tuple(m["resolution"])
    mean, std = m["input"]["mean"], m["input"]["std"]
    thresholds = THRESHOLDS[m["precision"]]
    if cannot_run:
        record: dict[str, Any] = {"thresholds": thresholds, "random_seed": secrets.randbelow(2**31),
                                  "photos": list(IMAGES), "verdict": f"not run: {cannot_run}"}
        return record
    ref = _reference(model, res, mean, std, bool(m.get("dynamic")))
    record = {"thresholds": thresholds, "random_seed": ref["seed"], "photos": list(IMAGES)}
    if "alt_resolution" in ref:
        record["alt_resolution"] = ref["alt_resolution"]
    runner = load()
    failures = []
    for key, (x, expected) in ref["sets"].items():
        try:
            got = _run(runner, x)
        except Exception as exc:  # noqa: BLE001 - the runtime refusing the input is a failed check
            msg = " ".join(str(exc).split())[:200]
            failures.append(f"{key}: the runtime failed at {x.shape[2]}x{x.shape[3]}: {type(exc).__name__}: {msg}")
            continue
        figures = compare(expected, got)
        record[key] = figures
        if m["precision"] == "int8":
            failures += _against_quantized(record, key, x, got, quantized, thresholds)
            continue
        if not figures["max_rel"] <= thresholds["max_rel"]:
            failures.append(f"{key}: max_rel {figures['max_rel']:.2e} > {thresholds['max_rel']:g}")
        if not figures["cosine"] >= thresholds["cosine"]:
            failures.append(f"{key}: cosine {figures['cosine']:.6f} < {thresholds['cosine']:g}")
    record["verdict"] = "failed" if failures else "passed"
    if failures:
        record["reason"] = "; ".join(failures)
    return record


def _against_quantized(record: dict[str, Any], key: str, x: np.ndarray, got: np.ndarray, quantized,
                       thresholds: dict[str, float]) -> list[str]:
    """int8: the artifact against its quantized reference on one input set; the failures (empty when it agrees)."""
    if quantized is None:
        return [f"{key}: no quantized reference to compare with"]
    q = record.setdefault("quantized", {"reference": quantized.what, "step": quantized.step})
    try:
        expected = _run(quantized.run, x)
    except Exception as exc:  # noqa: BLE001 - a reference that cannot run is a failed check, said so
        return [f"{key}: the quantized reference failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"]
    figures = q[key] = step_figures(expected, got, quantized.step)
    failures = []
    if "p50_steps" in figures and not figures["p50_steps"] <= thresholds["median_steps"]:
        failures.append(f"{key}: the median logit is {figures['p50_steps']:.0f} output steps from the quantized "
                        f"reference > {thresholds['median_steps']:g}")
    floor = thresholds["cosine"] if "p50_steps" in figures else thresholds["cosine_no_step"]
    if not figures["cosine"] >= floor:
        failures.append(f"{key}: cosine {figures['cosine']:.4f} against the quantized reference < {floor:g}")
    return failures


def cross_check(manifest: dict[str, Any], model, runner, twin, other) -> dict[str, Any]:
    """int8: this artifact against its twin (another runtime, the same scales: export.quant.TWINS) on the parity
    inputs, in output steps. `twin` is the twin's Artifact and `other` its runner; the figures are recorded, not
    gated."""
    res = tuple(manifest["resolution"])
    ref = _reference(model, res, manifest["input"]["mean"], manifest["input"]["std"], False)
    step = (twin.manifest.get("details") or {}).get("int8", {}).get("output_step")
    out: dict[str, Any] = {"twin": f"{twin.manifest['format']}/{twin.manifest['converter']}",
                           "twin_file_sha256": twin.manifest.get("file_sha256")}
    for key, (x, _) in ref["sets"].items():
        out[key] = step_figures(_run(other, x), _run(runner, x), step)
    return out


def step_figures(ref: np.ndarray, got: np.ndarray, step: float | None) -> dict[str, Any]:
    """Agreement with the quantized reference: in output steps (where the output is quantized), cosine, top-1."""
    figures = compare(ref, got)
    out = {k: figures[k] for k in ("max_abs", "max_rel", "cosine", "top1", "top5", "n")}
    if step:
        steps = np.abs(ref.astype(np.float64) - got.astype(np.float64)).reshape(-1) / step
        p50, p90, p99 = (float(v) for v in np.percentile(steps, [50, 90, 99]))
        out.update({"step": step, "max_steps": float(steps.max()), "mean_steps": float(steps.mean()),
                    "p50_steps": p50, "p90_steps": p90, "p99_steps": p99,
                    "within_one_step": float((steps <= 1.0 + 1e-6).mean()),
                    "exact": float((steps <= 1e-6).mean())})
    return out


_REFERENCE: dict[str, Any] = {}  # the last (model, resolution)'s inputs and PyTorch logits (one kept)


def _state(model) -> tuple:
    """Identity and in-place version of every weight: a model changed in place gets a new reference."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _reference(model, res: tuple[int, int], mean, std, dynamic: bool) -> dict[str, Any]:
    """Input sets (random with a fresh seed, photographs, and for dynamic artifacts photographs at a second size)
    with the PyTorch logits for each, computed once per (model object and weights, resolution, normalisation)."""
    import weakref

    import torch

    key = (res, tuple(mean), tuple(std), dynamic)
    entry = _REFERENCE.get("last")
    if entry is not None and entry["model"]() is model and entry["key"] == key and entry["state"] == _state(model):
        return entry
    seed = secrets.randbelow(2**31)
    inputs = {"random": random_images(res, mean, std, seed), "images": photographs(res, mean, std)}
    entry = {"model": weakref.ref(model), "key": key, "seed": seed}
    if dynamic:  # a second size: a dynamic graph must not have baked in the export size
        alt = (min(res[0] + 32, 2048), min(res[1] + 64, 2048))
        inputs["images_alt"] = photographs(alt, mean, std)
        entry["alt_resolution"] = list(alt)
    with torch.no_grad():
        entry["sets"] = {k: (x, model(torch.from_numpy(x)).numpy()) for k, x in inputs.items()}
    entry["state"] = _state(model)
    _REFERENCE["last"] = entry
    return entry


def worst(parity: dict[str, Any] | None) -> dict[str, float | None]:
    """The worst figures over every input set (random, photographs, a second size); see Parity.worst."""
    from export.manifest import Parity

    return Parity.from_json(parity or {}).worst()


def summary(parity: dict[str, Any]) -> str:
    """One line: verdict and the worst figures."""
    v = parity.get("verdict", "unknown")
    if "random" not in parity or "images" not in parity:
        return v + (f" ({parity['reason']})" if parity.get("reason") else "")
    r, i = parity["random"], parity["images"]
    if isinstance(parity.get("quantized"), dict) and "images" in parity["quantized"]:
        q = parity["quantized"]
        qi, qr = q["images"], q.get("random", {})
        steps = (f"{min(qi['within_one_step'], qr.get('within_one_step', 1)):.0%} of logits within one step, at most "
                 f"{max(qi['max_steps'], qr.get('max_steps', 0)):.0f} steps, " if "within_one_step" in qi else "")
        line = (f"{v}: quantized reference: {steps}top-1 {qi['top1']:.0%}; fp32 on the photos: cosine "
                f"{i['cosine']:.4f}, top-1 {i['top1']:.0%}, top-5 {i['top5']:.0%}")
        return line + (f"; {parity['reason'][:160]}" if parity.get("reason") else "")
    w = worst(parity)
    line = (f"{v}: max_rel {w['max_rel']:.1e}, cosine {w['cosine']:.6f}, "
            f"top-1 {w['top1']:.0%} (random {r['n']} + {i['n']} photos)")
    return line + (f"; {parity['reason'][:160]}" if parity.get("reason") else "")
