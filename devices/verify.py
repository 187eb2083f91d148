"""Parity on a device: an artifact's outputs computed where it runs (a Mac's Core ML, a board's runtimes), compared
with the PyTorch reference computed on this computer by the same check export uses (export/parity.py), and the
verdict written into the artifact's manifest with the device that produced it.

Why: on Linux a Core ML package cannot execute, so export records its parity as "not run: needs macOS"; the first
Mac that runs it settles the question. On a board of another architecture (an aarch64 board, emulated or real) the
artifact already passed here; what is new is what that machine's kernels compute (NEON, native FP16 arithmetic).
An int8 artifact is gated against the same file run here, in its output steps (`_int8_reference`).

What the manifest gets: `device_parity[<device name>]`, always: the device's record (figures on the random inputs
and the photographs against PyTorch, verdict, thresholds), the device (name, kind, machine, CPU features, whether it
is emulated and with which CPU model), and, when this computer runs the format too, the same inputs through this
computer's runtime (`host`: its figures against PyTorch) and the device's outputs against this computer's
(`vs_host`: max error, cosine, top-1 agreement), so x86 and ARM are compared on identical inputs. The manifest's own
`parity` is replaced only where it was "not run" here (Core ML): an artifact that passed here keeps that verdict,
and a device that disagrees says so in its own entry and in the exit status of `python -m devices parity`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from models.errors import ToolkitError

DEVICE_KEYS = ("machine", "cpu_model", "hwcaps", "qemu_cpu", "emulated", "runner", "os")


def check_on_device(dev: Any, artifact: str | Path, *, units: str | None = None, threads: int = 1) -> dict[str, Any]:
    """Run export's parity check with the device's outputs (and, on the same inputs, this computer's); update the
    manifest; return the device's parity record (with `host` and `vs_host` when this computer ran it too)."""
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
    on_device: list[Any] = []

    def runner(x):
        y = dev.outputs(art, x, threads=threads, units=units)
        on_device.append(y)
        return y

    record = parity.check(m, net, lambda: runner, None, quantized=_int8_reference(art, m, threads))
    record["device"] = {"name": dev.name, "kind": dev.kind, **({"compute_units": units} if units else {}),
                        **_about(dev, art)}
    record["checked"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if dev.kind != "host" and export.runs_here(m["format"]) is None:
        _beside_this_computer(record, art, m, net, on_device, threads)
    path = Path(art.dir) / "manifest.json"
    m = json.loads(path.read_text())  # as written (the validated form keeps only export's own keys)
    m["device_parity"] = {**(m.get("device_parity") or {}), dev.name: dict(record)}
    if str((art.manifest.get("parity") or {}).get("verdict", "")).startswith("not run"):
        m["parity"] = {k: v for k, v in record.items() if k not in ("host", "vs_host")}
        if m.get("status") in ("ok", "failed"):
            m["status"] = "failed" if record["verdict"] == "failed" else "ok"
    tmp = path.with_name(f".manifest.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return record


def _int8_reference(art: Any, m: dict[str, Any], threads: int) -> Any:
    """int8: what a device's outputs are gated against. The file passed against its quantized reference (a PT2E
    model in PyTorch, or a reference kernel) when it was exported here; rebuilding that reference on every device
    check would repeat the calibration, so the device is held to the same file run by this computer's runtime, in
    the file's output steps and with the same int8 thresholds (integer kernels of two architectures may round a
    requantization differently: about a step per layer). None when this computer cannot run the format (the check
    then says there is no reference), or for fp32/fp16 artifacts."""
    if m.get("precision") != "int8":
        return None
    import numpy as np

    import export
    from export import quant

    if export.runs_here(m["format"]) is not None:
        return None
    fn = export.load(art, threads=threads)
    step = ((m.get("details") or {}).get("int8") or {}).get("output_step")
    return quant.Reference(lambda x: np.asarray(fn(x), dtype=np.float32).reshape(len(x), -1),
                           f"the same file on this computer ({platform.machine()})", step)


def figure_sets(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The input sets' figures of a parity record (random, images, ...), not its thresholds."""
    return {k: v for k, v in record.items() if isinstance(v, dict) and "max_rel" in v and "n" in v}


def _about(dev: Any, art: Any) -> dict[str, Any]:
    """What the device says about itself that decides its numerics (machine, CPU features, emulation, runner)."""
    try:
        d = dev.describe()
    except ToolkitError:
        return {}
    out = {k: d[k] for k in DEVICE_KEYS if d.get(k) is not None}
    if hasattr(dev, "runners"):
        out["runner"] = dev.runners([art])[0]
    fmt = art.manifest.get("format")
    versions = (d.get("runtimes") or {}).get(fmt) or {}
    out["runtime"] = {k: v for k, v in versions.items() if v}
    return out


def _beside_this_computer(record: dict[str, Any], art: Any, m: dict[str, Any], net: Any, on_device: list[Any],
                          threads: int) -> None:
    """The same inputs through this computer's runtime (export/parity.py keeps one reference per model and
    resolution, so the second check sees the very inputs the device saw); add `host` and `vs_host`."""
    import numpy as np

    import export
    from export import parity

    fn = export.load(art, threads=threads)
    here: list[Any] = []

    def runner(x):
        y = np.asarray(fn(x), dtype=np.float32).reshape(len(x), -1)
        here.append(y)
        return y

    host = parity.check(m, net, lambda: runner, None)
    if host.get("random_seed") != record.get("random_seed"):
        return  # not the same inputs (cannot happen while the reference is shared): no comparison is better
    record["host"] = {"machine": platform.machine(), "verdict": host["verdict"], **figure_sets(host)}
    dev_out, host_out = np.concatenate(on_device), np.concatenate(here)
    if dev_out.shape != host_out.shape:
        return
    record["vs_host"], start = {}, 0
    for key in figure_sets(host):
        n = int(host[key]["n"])
        record["vs_host"][key] = parity.compare(host_out[start:start + n], dev_out[start:start + n])
        start += n
