"""Export registered models to ONNX, Core ML, TFLite/LiteRT and ExecuTorch, and prove each artifact right.

    export.export(model, fmt, resolution, **options) -> Artifact   (cached, verified, with manifest.json)
    export.load(path_or_artifact, threads=None) -> callable(NCHW float32 numpy batch) -> logits

See export/core.py for the pipeline, export/parity.py for the parity proof and docs/export.md for the converters.
"""

from export.core import FORMATS, PRECISIONS, Artifact, ExportFailed, export, format_spec, load, resolve

__all__ = ["FORMATS", "PRECISIONS", "Artifact", "ExportFailed", "export", "format_spec", "load", "resolve",
           "runs_here"]


def runs_here(fmt: str) -> str | None:
    """None when this host can run artifacts of `fmt`, else the reason (e.g. "needs macOS")."""
    import importlib

    spec = format_spec(fmt)
    return importlib.import_module(f"export.{spec.module}").runs_here()
