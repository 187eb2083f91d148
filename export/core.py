"""The export pipeline shared by every format: job, cache key, atomic artifact directory, manifest, parity.

    export(model, fmt, resolution, **options) -> Artifact
      1. resolve the options against the format's row in FORMATS (unknown options are errors, not warnings)
      2. cache key over model, overrides, weights, resolution, format, converter + version, precision and the
         toolkit's own code; a manifest with the same key and a file on disk is returned at once
      3. build the model (checkpoint or fixed seed), capture it once with torch.export (shared across formats)
      4. the format module converts into a temporary directory next to the final one
      5. parity against PyTorch (export/parity.py) on random inputs and real photographs
      6. manifest.json written, the directory renamed into place (an interrupted export never looks complete)

A failed parity check keeps the artifact, marks its manifest "failed" and raises ExportFailed (non-zero exit).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import models
from export.formats import FORMATS, format_spec
from export.manifest import Manifest, ManifestError, Parity
from export.spec import PRECISIONS, Converted, FormatSpec, Job
from models.common import ROOT, file_digest, git_commit, os_error_line, replace_dir, tree_size
from models.errors import ToolkitError

DEFAULT_OUT = Path(os.environ.get("TOOLKIT_ARTIFACTS", ROOT / "artifacts"))
DEFAULT_SEED = 0


class ExportFailed(ToolkitError):
    """The artifact was written but does not compute what PyTorch computes (its manifest says how)."""

    def __init__(self, message: str, artifact: Artifact):
        super().__init__(message)
        self.artifact = artifact


@functools.cache
def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(packages: tuple[str, ...], what: str) -> dict[str, str]:
    versions = {p: package_version(p) for p in packages}
    missing = [p for p, v in versions.items() if v is None]
    if missing:
        raise ToolkitError(f"{what} needs {', '.join(missing)}, which is not installed (run `make setup`)")
    return versions  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- records
@dataclass
class Artifact:
    """An exported model on disk: its directory, its main file and its manifest."""

    dir: Path
    file: Path
    manifest: dict[str, Any]
    cached: bool = False

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def record(self) -> Manifest:
        """The manifest as a typed record."""
        return Manifest.from_json(self.manifest, self.dir / "manifest.json")

    @property
    def ok(self) -> bool:
        return self.manifest["status"] == "ok"

    def verdict(self) -> str:
        p = self.manifest.get("parity", {})
        return p.get("verdict", "unknown")


# --------------------------------------------------------------------------------------------- weights and capture
def file_sha256(path: Path) -> str:
    return file_digest(path)


@functools.cache
def code_hash(*modules: str) -> str:
    """A hash of the model code and of the converter's module(s): changing either invalidates cached artifacts.

    Edits elsewhere in export/ (the pipeline, parity, other formats) leave existing artifacts valid.
    """
    h = hashlib.sha256()
    files = sorted((ROOT / "models").glob("*.py")) + [ROOT / "export" / f"{m}.py" for m in modules]
    for p in files:
        if p.name != "__main__.py" and p.exists():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


_MODELS: dict[tuple, Any] = {}
_CAPTURES: dict[tuple, Any] = {}


def build_model(name: str, overrides: dict[str, Any], weights: dict[str, Any]):
    key = (name, tuple(sorted(overrides.items())), json.dumps(weights, sort_keys=True))
    if key not in _MODELS:
        if "checkpoint" in weights:
            _MODELS.clear()
            _MODELS[key] = models.create(name, checkpoint=weights["checkpoint"], **overrides)
        else:
            _MODELS.clear()
            _MODELS[key] = models.seeded(name, seed=weights["seed"], **overrides)
    return _MODELS[key]


def capture(model_key: tuple, model: Any, resolution: tuple[int, int]):
    key = (*model_key, resolution)
    if key not in _CAPTURES:
        import torch

        _CAPTURES.clear()  # keep one: captures hold a copy of the weights
        with torch.no_grad():
            _CAPTURES[key] = torch.export.export(model, (torch.zeros(1, 3, *resolution),))
    return _CAPTURES[key]


# --------------------------------------------------------------------------------------------- paths and cache
def artifact_dir(out: Path, name: str, overrides: dict[str, Any], resolution: tuple[int, int], fmt: FormatSpec,
                 converter: str, precision: str, dynamic: bool = False) -> Path:
    model_dir = name + "".join(f"-{k}{str(v).lower()}" for k, v in sorted(overrides.items()))
    leaf = fmt.name + ("" if converter == fmt.default_converter else f"-{converter}") + f"-{precision}"
    leaf += "-dynamic" if dynamic else ""
    return Path(out) / model_dir / models.format_resolution(resolution) / leaf


def read_manifest(directory: Path, *, strict: bool = False) -> dict[str, Any] | None:
    """The artifact directory's manifest, validated; None when there is none.

    An unreadable or malformed manifest is a ManifestError when `strict`, else None (callers that only look for a
    cache hit treat it as "not ours", and never delete what they do not understand).
    """
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return None
    try:
        return validate_manifest(json.loads(path.read_text()), path)
    except (OSError, ValueError, ManifestError) as exc:
        if not strict:
            return None
        if isinstance(exc, ManifestError):
            raise
        what = "not valid JSON" if isinstance(exc, ValueError) else (exc.strerror or str(exc))
        raise ManifestError(f"invalid manifest {path}: {what}") from None


def validate_manifest(m: Any, path: Path) -> dict[str, Any]:
    """The manifest typed and checked (export/manifest.py), back as its JSON form: `file` must be a plain name
    inside the directory; an older manifest's converter figures are moved under `details`."""
    return Manifest.from_json(m, path, FORMATS).to_json()


def verify_file(directory: Path, manifest: dict[str, Any]) -> Path:
    """The artifact's file, proven to lie in its own directory and to match the recorded size and sha256.

    This is the one integrity rule: every cache hit and every load goes through it. A manifest from before file
    hashes were recorded fails it (re-export the artifact).
    """
    d = Path(directory).resolve()
    f = (d / manifest["file"]).resolve()
    if f.parent != d:
        raise ToolkitError(f"artifact {directory}: its file {manifest['file']!r} resolves to {f}, outside the "
                           "artifact directory; refused")
    if not f.exists():
        raise ToolkitError(f"artifact file missing: {f}")
    size = tree_size(f)
    if "file_bytes" in manifest and size != manifest["file_bytes"]:
        raise ToolkitError(f"artifact file {f} is {size} bytes, its manifest says {manifest['file_bytes']}: "
                           "corrupt or replaced; re-export it")
    recorded = manifest.get("file_sha256")
    if not recorded:
        raise ToolkitError(f"artifact {directory} has no file hash in its manifest (written by an older toolkit); "
                           "re-export it")
    if file_digest(f) != recorded:
        raise ToolkitError(f"artifact file {f} does not match the sha256 in its manifest: corrupt or replaced; "
                           "re-export it")
    return f


def is_ours(directory: Path) -> bool:
    """A real directory with a valid manifest and nothing but the manifest and its file (safe to replace)."""
    d = Path(directory)
    if d.is_symlink() or not d.is_dir():
        return False
    m = read_manifest(d)
    if m is None:
        return False
    return all(p.name in ("manifest.json", m["file"]) for p in d.iterdir())


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary directory into place; only an artifact directory of our own is ever replaced."""
    if (final.exists() or final.is_symlink()) and not is_ours(final):
        raise ToolkitError(f"{final} holds files the toolkit did not write (or no valid manifest.json); left "
                           "untouched: move it away or pass another --out")
    replace_dir(tmp, final)


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ToolkitError(f"cannot write to output directory {out}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------- the pipeline
def export(model: str, fmt: str, resolution: Any = 224, *, precision: str = "fp32", converter: str | None = None,
           checkpoint: str | Path | None = None, overrides: dict[str, Any] | None = None, out: str | Path | None = None,
           seed: int = DEFAULT_SEED, parity: bool = True, force: bool = False, dynamic: bool = False,
           optimize: bool = False) -> Artifact:
    """Export a registered model to one format at one static resolution, verify it, and write its manifest.

    Args:
        model: a name from models.list_models().
        fmt: onnx, tflite, executorch or coreml.
        resolution: N or (H, W) or "HxW".
        precision: fp32 or fp16.
        converter: the format's converter (default: its first, e.g. litert-torch for tflite; or onnx2tf).
        checkpoint: a local weights file; without one the weights come from `seed` (same command, same artifact).
        overrides: model overrides (e.g. {"tokens": 3} for Mobile-Former).
        out: the artifacts root (default: ./artifacts).
        parity: run the parity check (always on for the CLI; tests may switch it off to save time).
        force: re-export even when a cached artifact matches.
        dynamic: symbolic H and W (formats with FormatSpec.dynamic only); parity is then also checked at a
            second resolution, because a graph can silently bake in shape-dependent choices (a baseline does).
        optimize: the optimized artifact beside the plain one (export/optimize.py): the family's export form and
            the format's graph tools, checked against PyTorch and against the plain artifact (exported first).
    """
    spec = format_spec(fmt)
    conv = spec.converter(converter)
    if precision not in PRECISIONS:
        raise ToolkitError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    res = models.check_resolution(model, resolution)
    ov = models.check_overrides(model, overrides or {})
    if dynamic and not spec.dynamic:
        supported = ", ".join(f.name for f in FORMATS.values() if f.dynamic)
        raise ToolkitError(f"{fmt} artifacts have a static input shape here; --dynamic is supported by: {supported}")
    versions = require(conv.packages, f"{fmt} export with {conv.name}")
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise ToolkitError(f"checkpoint not found: {ckpt}")
        weights = {"checkpoint": str(ckpt.resolve()), "sha256": file_sha256(ckpt)}
    else:
        weights = {"seed": int(seed)}
    out_root = Path(out) if out is not None else DEFAULT_OUT
    final = artifact_dir(out_root, model, ov, res, spec, conv.name, precision, dynamic)
    if optimize:
        from export import optimize as opt

        final = final.with_name(final.name + opt.SUFFIX)
    key_fields = {"model": model, "overrides": ov, "weights": {k: v for k, v in weights.items() if k != "checkpoint"},
                  "resolution": list(res), "format": fmt, "converter": conv.name, "converter_versions": versions,
                  "precision": precision, "parity": parity, "dynamic": dynamic,
                  "code": code_hash(*sorted({conv.module, spec.module, *conv.depends}))}
    if optimize:  # only then, so the keys of plain artifacts stay what they were
        key_fields.update(optimize=opt.VERSION, code_optimize=code_hash("optimize"))
    cache_key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]

    if final.exists() or final.is_symlink():
        if not is_ours(final):  # never delete what the toolkit did not write
            raise ToolkitError(f"{final} exists but is not an artifact the toolkit wrote (no valid manifest.json, "
                               "or files it did not write); left untouched: move it away or pass another --out")
        cached = read_manifest(final)
        if not force and cached.get("cache_key") == cache_key:
            try:
                verify_file(final, cached)
            except ToolkitError as exc:
                _say(f"export: cached artifact does not verify ({exc}); re-exporting")
            else:
                return _raise_if_failed(Artifact(final, final / cached["file"], cached, cached=True))

    _prepare_out(out_root)
    plain_art = None
    if optimize:  # the reference it is checked against, exported (or found cached) first
        plain_art = export(model, fmt, res, precision=precision, converter=converter, checkpoint=checkpoint,
                           overrides=ov, out=out_root, seed=seed, parity=parity, dynamic=dynamic)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(os_error_line(exc, final.parent, "create the artifact folder")) from None
    from export.hostlock import exporting

    lock = exporting()
    lock.__enter__()  # shared use of this machine's cores: waits while a device here is timing
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.perf_counter()
        net = build_model(model, ov, weights)
        model_key = (model, tuple(sorted(ov.items())), json.dumps(weights, sort_keys=True))
        stem = f"{model}_{models.format_resolution(res)}_{fmt}" + (
            "" if conv.name == spec.default_converter else f"_{conv.name.replace('-', '_')}") + f"_{precision}"
        form, steps = (opt.model_form(model, net, fmt) if optimize else (net, []))
        form_key = (*model_key, "optimized", fmt) if form is not net else model_key
        job = Job(model, form, res, precision, conv.name, tmp, stem, {"optimize": True} if optimize else {},
                  functools.partial(capture, form_key, form, res), dynamic=dynamic)
        module = importlib.import_module(f"export.{conv.module}")
        try:
            converted: Converted = module.convert(job)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a converter crash is reported as one line
            msg = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ToolkitError(f"{conv.name} failed to convert {model} at {models.format_resolution(res)} "
                               f"to {fmt}: {type(exc).__name__}: {msg}") from None
        if optimize:
            steps += opt.post_convert(fmt, converted)
        export_seconds = time.perf_counter() - t0
        info = models.info(model, res, **ov)
        hw = (f"height {info.min_resolution}..{models.MAX_RESOLUTION}", f"width {info.min_resolution}.."
              f"{models.MAX_RESOLUTION}") if dynamic else res
        record = Manifest(
            model=model, family=info.family, overrides=ov, weights=weights, resolution=list(res),
            input={"layout": converted.layout, "shape": [1, *((3, *hw) if converted.layout == "NCHW" else (*hw, 3))],
                   "dtype": "float32", "mean": list(info.mean), "std": list(info.std)},
            dynamic=dynamic, params=info.params, madds=info.madds, format=fmt, converter=conv.name,
            converter_versions=versions, precision=precision, file=converted.file.name,
            file_bytes=tree_size(converted.file), file_sha256=file_digest(converted.file),
            export_seconds=round(export_seconds, 3), cache_key=cache_key,
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), toolkit_commit=git_commit(),
            host=platform.platform(), details=converted.details)
        record.graph = _graph_counts(fmt, converted)
        if optimize:
            record.optimized = True
            record.optimization = {"steps": steps, "plain": opt.counts_of(plain_art.manifest),
                                   "plain_artifact": str(plain_art.dir)}
        art = Artifact(tmp, tmp / converted.file.name, record.to_json())
        if parity:
            from export import parity as parity_mod

            reason = importlib.import_module(f"export.{spec.module}").runs_here()
            record.parity = Parity.from_json(parity_mod.check(art.manifest, net, lambda: load(art, threads=None),
                                                              reason))
            if optimize and record.parity.verdict == "passed":
                _check_vs_plain(record, art, net, plain_art)
        else:
            record.parity = Parity("not run: parity switched off")
        record.status = "failed" if record.parity.verdict == "failed" else "ok"
        manifest = record.to_json()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _replace_dir(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolkitError(os_error_line(exc, tmp.parent, f"write the {fmt} artifact")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.__exit__(None, None, None)
    return _raise_if_failed(Artifact(final, final / converted.file.name, manifest))


def _graph_counts(fmt: str, converted: Converted) -> dict[str, Any]:
    from export.optimize import graph_counts

    return graph_counts(fmt, converted.file, converted.details, tree_size(converted.file))


def _check_vs_plain(record: Manifest, art: Artifact, net: Any, plain_art: Artifact) -> None:
    """An optimized artifact must compute what the plain one computes (export/optimize.py, VS_PLAIN_MAX_REL)."""
    from export.optimize import versus_plain

    vs = versus_plain(art.manifest, net, plain_art.manifest, lambda: load(plain_art, threads=None),
                      lambda: load(art, threads=None))
    record.parity.vs_plain = vs
    if vs["verdict"] == "failed":
        record.parity.verdict = "failed"
        record.parity.reason = vs["reason"]


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _raise_if_failed(art: Artifact) -> Artifact:
    if art.manifest.get("status") == "failed":
        p = art.manifest.get("parity", {})
        raise ExportFailed(f"{art.file} does not match PyTorch: {p.get('reason', 'parity failed')}", art)
    return art


# --------------------------------------------------------------------------------------------- loading
def resolve(path_or_artifact: Artifact | str | Path, *, verify: bool = True) -> Artifact:
    """An Artifact from an artifact directory, its main file, or an Artifact.

    With a manifest, the file it names must lie in the artifact's own directory and match the recorded size and
    sha256 (`verify_file`); a bare model file without a manifest is taken as it is.
    """
    if isinstance(path_or_artifact, Artifact):
        return path_or_artifact
    p = Path(path_or_artifact)
    if not p.exists():
        raise ToolkitError(f"not an artifact: {p} does not exist")
    directory = p if p.is_dir() and not p.name.endswith(".mlpackage") else p.parent
    manifest = read_manifest(directory, strict=True)
    if manifest is None:
        fmt = next((f for f in FORMATS.values() if p.name.endswith(f.suffix)), None)
        if fmt is None or p.is_dir() and not p.name.endswith(".mlpackage"):
            raise ToolkitError(f"not an artifact: {p} (no manifest.json and no known model file)")
        manifest = {"format": fmt.name, "file": p.name, "input": {"layout": "NCHW"}, "status": "unknown"}
        return Artifact(p.parent, p, manifest)
    if p != directory and p.resolve() != (directory / manifest["file"]).resolve():
        raise ToolkitError(f"{p} is not the file its directory's manifest describes ({manifest['file']})")
    file = verify_file(directory, manifest) if verify else directory / manifest["file"]
    return Artifact(directory, file, manifest)


def load(path_or_artifact: Artifact | str | Path, *, threads: int | None = None):
    """A callable running the artifact in its runtime: NCHW float32 batch (numpy) -> logits (numpy).

    Layout is the artifact's business: an NHWC artifact gets its input transposed here. A corrupt or truncated
    file, or a runtime this host lacks, is a ToolkitError naming the file.
    """
    art = resolve(path_or_artifact)
    spec = format_spec(art.manifest["format"])
    if not art.file.exists():
        raise ToolkitError(f"artifact file missing: {art.file}")
    require(spec.runtime_packages, f"running {spec.name}")
    module = importlib.import_module(f"export.{spec.module}")
    reason = module.runs_here()
    if reason:
        raise ToolkitError(f"cannot run {art.file} here: {reason}")
    try:
        runner = module.load(art.file, art.manifest, threads)
    except ToolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files surface as many exception types
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ToolkitError(f"cannot load {art.file} (corrupt or truncated?): {msg}") from None
    if art.manifest.get("input", {}).get("layout") == "NHWC":
        return _nhwc(runner)
    return runner


def _nhwc(runner):
    import numpy as np

    def run(x):
        return runner(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))

    return run
