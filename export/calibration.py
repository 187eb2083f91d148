"""Calibration data for int8, and realistic BatchNorm statistics for seeded weights.

    default_set(n, seed) / folder_set(path) -> Calibration   (validated; nothing is written)
    Calibration.batch(resolution, mean, std) -> (N, 3, H, W) float32, normalised like the parity inputs
    natural_batchnorm(model, mean, std, seed) -> the model with BatchNorm statistics measured on photographs

The default set is built from the photographs scikit-image ships *other than* the four the parity check uses
(export/parity.py IMAGES): ten photographs (a camera man, coins, the moon, the Hubble deep field, a tissue slide,
a motorcycle, a retina, brick, grass and gravel; grey ones repeated over three channels), from which N seeded
crops (30-100 % of the shorter side, the artifact's aspect ratio) with random horizontal flips are resized to the
artifact's resolution. A folder of the user's own JPEG / PNG files is used as it is: every image once, resized to
cover the resolution and centre-cropped (what an app's pre-processing does); every file in it must be a readable
JPEG or PNG (dotfiles are ignored), else one line names the file and nothing is written.

The digest identifies the set independently of the resolution: the recipe, N and seed, and the sha256 of every
source file. It is part of the cache key of an int8 artifact and of its manifest.

Why BatchNorm statistics: the toolkit's seeded weights measure BatchNorm statistics on uniform noise
(models.seeded). On photographs those statistics are far off (a baseline's logit spread differs 60x between two
photographs at 224, docs/int8.md), so a calibration on photographs would set activation ranges for a network
that sees nothing like its BatchNorm inputs. For int8 artifacts of seeded weights the statistics are measured
again on crops of the same pool (another seed, at 224, whatever the export resolution), so that the float model
that is quantized sees photographs the way a trained one does. It is applied to a copy, for int8 only: fp32 and
fp16 artifacts and the pinned fp32 logits are untouched, and a checkpoint's statistics are never changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ToolkitError

POOL = ("camera", "coins", "moon", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "retina",
        "brick", "grass", "gravel")
DEFAULT_N = 32
DEFAULT_SEED = 0
MAX_FILES = 1000
RECIPE = "calibration-v1"  # bump when the crop / resize recipe changes (it is part of the digest)
BN_RECIPE = {"images": 24, "batch": 8, "resolution": 224, "seed_offset": 7919}
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Calibration:
    """A validated calibration set: where it comes from, how many images, its digest."""

    source: str  # "scikit-image photographs" or the folder's resolved path
    names: tuple[str, ...]  # the source photographs or files
    n: int
    seed: int | None  # the crop seed (default set); None for a folder
    digest: str
    _loader: Any = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        out = {"source": self.source, "n": self.n, "digest": self.digest, "recipe": RECIPE,
               "sources": list(self.names)}
        if self.seed is not None:
            out["seed"] = self.seed
            out["crops"] = "seeded crops of 30-100% of the shorter side, random horizontal flips"
        else:
            out["crops"] = "each file once: resized to cover, centre crop"
        return out

    def batch(self, resolution: tuple[int, int], mean, std) -> np.ndarray:
        """(N, 3, H, W) float32 at `resolution`, normalised with the model's mean / std."""
        images = self._loader(tuple(resolution))
        m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((images - m) / s, dtype=np.float32)


# --------------------------------------------------------------------------------------------- the default set
@functools.cache
def _pool() -> tuple[np.ndarray, ...]:
    """The pool photographs as (H, W, 3) float32 in [0, 1]."""
    from skimage import data

    out = []
    for name in POOL:
        img = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append(img[..., :3].astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0))
    return tuple(out)


@functools.cache
def _pool_digest() -> str:
    h = hashlib.sha256()
    for img in _pool():
        h.update(hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest())
    return h.hexdigest()


def _resize(img: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(img, resolution, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def _crops(n: int, seed: int, resolution: tuple[int, int]) -> np.ndarray:
    """n seeded crops of the pool at `resolution`: (n, 3, H, W) in [0, 1]."""
    rng = np.random.default_rng(seed)
    pool = _pool()
    aspect = resolution[1] / resolution[0]
    out = []
    for i in range(n):
        img = pool[i % len(pool)]
        h, w = img.shape[:2]
        side = rng.uniform(0.3, 1.0) * min(h, w)
        ch, cw = int(min(h, side)), int(min(w, side * aspect))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(_resize(crop, resolution).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def default_set(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> Calibration:
    """N seeded crops of the scikit-image photographs the parity check does not use."""
    from export.parity import IMAGES

    assert not set(POOL) & set(IMAGES), "the calibration pool must be disjoint from the parity photographs"
    digest = hashlib.sha256(json.dumps({"recipe": RECIPE, "n": n, "seed": seed, "pool": list(POOL),
                                        "pixels": _pool_digest()}, sort_keys=True).encode()).hexdigest()
    return Calibration("scikit-image photographs", POOL, n, seed, digest,
                       functools.partial(_cached_crops, n, seed))


@functools.lru_cache(maxsize=4)
def _cached_crops(n: int, seed: int, resolution: tuple[int, int]) -> np.ndarray:
    return _crops(n, seed, resolution)


# --------------------------------------------------------------------------------------------- a folder
def folder_set(path: str | Path) -> Calibration:
    """The user's folder of JPEG / PNG images, every file checked now (one line naming a bad one)."""
    folder = Path(path)
    if not folder.exists():
        raise ToolkitError(f"--calibration {path}: no such folder")
    if not folder.is_dir():
        raise ToolkitError(f"--calibration {path}: not a folder (give a folder of JPEG or PNG images)")
    try:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise ToolkitError(f"--calibration {path}: cannot list the folder: {exc.strerror or exc}") from None
    if not files:
        raise ToolkitError(f"--calibration {path}: the folder holds no images (JPEG or PNG expected)")
    if len(files) > MAX_FILES:
        raise ToolkitError(f"--calibration {path}: {len(files)} files; use at most {MAX_FILES} images")
    h = hashlib.sha256(RECIPE.encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + _check_image(f).encode())
    return Calibration(str(folder.resolve()), tuple(f.name for f in files), len(files), None, h.hexdigest(),
                       functools.partial(_folder_images, tuple(files)))


def _check_image(f: Path) -> str:
    """The file's sha256 after proving it is a readable JPEG or PNG photograph."""
    if f.is_dir():
        raise ToolkitError(f"--calibration: {f} is a folder; the calibration folder must hold only images")
    try:
        data = f.read_bytes()
    except OSError as exc:
        raise ToolkitError(f"--calibration: cannot read {f}: {exc.strerror or exc}") from None
    if not data:
        raise ToolkitError(f"--calibration: {f} is empty (0 bytes)")
    if not (data.startswith(_JPEG) or data.startswith(_PNG)):
        raise ToolkitError(f"--calibration: {f} is not a JPEG or PNG image")
    _decode(f, data)
    return hashlib.sha256(data).hexdigest()


def _decode(f: Path, data: bytes) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; a truncated or odd file is one line."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format
            if kind not in ("JPEG", "PNG"):
                raise ToolkitError(f"--calibration: {f} is a {kind or 'unknown'} image, not JPEG or PNG")
            im.load()
            if min(im.size) < 8:
                raise ToolkitError(f"--calibration: {f} is {im.size[0]}x{im.size[1]} pixels; too small to "
                                   "calibrate with")
            rgb = im.convert("RGB")
    except ToolkitError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ToolkitError(f"--calibration: {f} cannot be decoded (truncated or corrupt?): "
                           f"{' '.join(str(exc).split())[:120]}") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=2)
def _folder_images(files: tuple[Path, ...], resolution: tuple[int, int]) -> np.ndarray:
    out = []
    for f in files:
        img = _decode(f, f.read_bytes())
        h, w = img.shape[:2]
        scale = max(resolution[0] / h, resolution[1] / w)
        ch, cw = min(h, round(resolution[0] / scale)), min(w, round(resolution[1] / scale))
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append(_resize(img[y:y + ch, x:x + cw], resolution).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def resolve(calibration: str | Path | Calibration | None) -> Calibration:
    """The calibration set an int8 export asks for: None = the default set, a path = that folder."""
    if isinstance(calibration, Calibration):
        return calibration
    return default_set() if calibration is None else folder_set(calibration)


# --------------------------------------------------------------------------------------------- BatchNorm
BN_WEIGHTS = "batchnorm statistics measured on photographs (export/calibration.py)"


def natural_batchnorm(model, mean, std, seed: int):
    """A copy of `model` whose BatchNorm statistics are measured on seeded crops of the pool at 224 (see the
    module docstring); the weights are unchanged."""
    import copy

    import torch

    model = copy.deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    r = BN_RECIPE
    x = _crops(r["images"], seed + r["seed_offset"], (r["resolution"], r["resolution"]))
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    saved = [(b, b.momentum) for b in bns]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for b in bns:
            b.reset_running_stats()
            b.momentum = None  # a cumulative average over the batches
        model.train()
        for i in range(0, len(x), r["batch"]):
            model((torch.from_numpy(x[i:i + r["batch"]]) - m) / s)
    for b, momentum in saved:
        b.momentum = momentum
    return model.eval()
