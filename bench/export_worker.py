"""The sweep's export process (`python -m bench.export_worker`): export.export() behind a pipe with a deadline.

Converters are the least predictable code a sweep runs (TensorFlow's import-order crash, converters that hang on
a network call, native aborts), so the sweep driver does not export in its own process: a converter that dies
costs one cell, and the next cell gets a fresh exporter. The process stays up between cells, so export/'s
in-process caches (the built model, the shared torch.export capture) still serve several formats in a row.
torch's compiler stack is imported before any converter that may import TensorFlow runs (TOOLCHAIN.md); ONNX
requests skip that (4 s) since its converter never imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

from devices.subproc import one_line, serve


def handle(req: dict[str, Any]) -> dict[str, Any]:
    if req.get("format", "onnx") != "onnx":  # converters that may import TensorFlow: torch's compiler first
        import torch._dynamo  # noqa: F401

    import export
    import models

    try:
        if req["op"] == "info":
            info = models.info(req["model"], tuple(req["res"]), **req["overrides"])
            return {"ok": True, "params": info.params, "madds": info.madds}
        if req["op"] != "export":
            return {"ok": False, "stage": "export", "error": f"unknown request {req['op']!r}"}
        art = export.export(req["model"], req["format"], tuple(req["res"]), precision=req["precision"],
                            converter=req["converter"], overrides=req["overrides"], out=req["out"],
                            optimize=bool(req.get("optimize")))
        return {"ok": True, "artifact": str(art.dir), "manifest": art.manifest, "cached": art.cached}
    except export.ExportFailed as exc:
        return {"ok": False, "stage": "parity", "error": one_line(exc), "artifact": str(exc.artifact.dir),
                "manifest": exc.artifact.manifest}
    except Exception as exc:  # noqa: BLE001 - every failure becomes the cell's error line
        return {"ok": False, "stage": "export", "error": one_line(exc)}


if __name__ == "__main__":
    serve(handle)
