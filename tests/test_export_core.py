"""export/: the shared pipeline (through ONNX): parity, manifest, cache, atomic directories, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import export
from export import parity
from models.errors import ToolkitError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_KEYS = {"model", "overrides", "weights", "resolution", "input", "format", "converter", "converter_versions",
                 "precision", "file", "file_bytes", "export_seconds", "parity", "status", "cache_key", "params",
                 "madds"}

pytestmark = pytest.mark.export


@pytest.mark.parametrize("model,res", [("mobileformer_26m", "96x128"), ("mobilenetv3_small_075", 64),
                                       ("mobilevit_xxs", 64)])
def test_onnx_export_parity_and_manifest(tmp_path, model, res):
    art = export.export(model, "onnx", res, out=tmp_path)
    m = json.loads((art.dir / "manifest.json").read_text())
    assert MANIFEST_KEYS <= set(m)
    assert m["status"] == "ok" and m["parity"]["verdict"] == "passed"
    for key in ("random", "images"):
        figures = m["parity"][key]
        assert figures["max_rel"] <= 1e-3 and figures["cosine"] >= 0.99999
        assert set(figures) >= {"max_abs", "max_rel", "cosine", "top1", "top5"}
    assert m["parity"]["images"]["n"] == len(parity.IMAGES) and m["parity"]["random"]["n"] == parity.N_RANDOM
    assert m["file_bytes"] == art.file.stat().st_size and m["details"]["opset"] >= 17  # converter figures: own key
    assert m["file_sha256"] == export.core.file_sha256(art.file)
    assert not [p for p in art.dir.parent.iterdir() if p.name.startswith(".")]  # no temporary directories left
    run = export.load(art, threads=1)
    h, w = m["resolution"]
    assert run(np.zeros((1, 3, h, w), np.float32)).shape == (1, 1000)


def test_cache_hit_is_a_no_op(tmp_path, monkeypatch):
    import export.onnx

    first = export.export("mobilenetv3_small_075", "onnx", 64, out=tmp_path)
    mtime = first.file.stat().st_mtime_ns
    with monkeypatch.context() as mp:  # a cache hit must not convert (nor build the model) again
        mp.setattr(export.onnx, "convert", lambda job: pytest.fail("a cache hit converted again"))
        mp.setattr(export.core, "build_model", lambda *a: pytest.fail("a cache hit built the model again"))
        again = export.export("mobilenetv3_small_075", "onnx", 64, out=tmp_path)
    assert again.cached and again.file == first.file and again.file.stat().st_mtime_ns == mtime
    other = export.export("mobilenetv3_small_075", "onnx", 64, out=tmp_path, seed=1)  # other weights: new key
    assert not other.cached and other.manifest["cache_key"] != first.manifest["cache_key"]


def test_fp16_and_checkpoint(tmp_path):
    import torch

    import models

    ckpt = tmp_path / "w.pth"
    torch.save(models.seeded("mobilenetv3_small_075", seed=5).state_dict(), ckpt)
    art = export.export("mobilenetv3_small_075", "onnx", 64, precision="fp16", checkpoint=ckpt, out=tmp_path)
    assert art.manifest["weights"]["sha256"] and art.manifest["precision"] == "fp16"
    assert art.manifest["parity"]["verdict"] == "passed"
    assert art.dir.name == "onnx-fp16"


def test_corrupt_and_truncated_artifacts(tmp_path):
    art = export.export("mobilenetv3_small_075", "onnx", 64, out=tmp_path)
    data = art.file.read_bytes()
    art.file.write_bytes(data[: len(data) // 3])
    with pytest.raises(ToolkitError, match=str(art.file)):
        export.load(art.dir)
    art.file.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ToolkitError, match="corrupt or replaced"):  # the manifest's size and hash catch it first
        export.load(art.file)
    with pytest.raises(ToolkitError, match="corrupt or truncated"):  # the runtime catches it without a manifest
        export.load(export.resolve(art.dir, verify=False))
    with pytest.raises(ToolkitError, match="not an artifact"):
        export.load(tmp_path / "nothing.bin")


def test_bad_options(tmp_path):
    with pytest.raises(ToolkitError, match="unknown format 'tflight'"):
        export.export("mobileformer_26m", "tflight", 64, out=tmp_path)
    with pytest.raises(ToolkitError, match="no converter 'tf2onnx'; valid: litert-torch, onnx2tf"):
        export.export("mobileformer_26m", "tflite", 64, converter="tf2onnx", out=tmp_path)
    with pytest.raises(ToolkitError, match="unknown precision"):
        export.export("mobileformer_26m", "onnx", 64, precision="int3", out=tmp_path)
    with pytest.raises(ToolkitError, match="cannot take 16x16"):
        export.export("mobileformer_26m", "onnx", 16, out=tmp_path)
    with pytest.raises(ToolkitError, match="unknown model"):
        export.export("mobileformer_27m", "onnx", 64, out=tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
        locked = tmp_path / "a_file"
        locked.write_text("")
    with pytest.raises(ToolkitError, match="cannot write to output directory"):
        export.export("mobileformer_26m", "onnx", 64, out=locked / "sub")


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--model", "nope", "--format", "onnx"], "unknown model 'nope'"),
    (["--model", "mobileformer_26m", "--format", "tfjs"], "unknown format 'tfjs'"),
    (["--model", "mobileformer_26m", "--format", "onnx", "--res", "8"], "cannot take 8x8"),
    (["--model", "mobileformer_26m", "--format", "onnx", "--res", "12by12"], "bad resolution"),
    (["--model", "mobileformer_26m", "--format", "onnx", "--checkpoint", "/nonexistent.pth"], "checkpoint not found"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    out = _cli(*args, "--out", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_cli_prints_path_and_verdict(tmp_path):
    out = _cli("--model", "mobilenetv3_small_075", "--format", "onnx", "--res", "64", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "passed: max_rel" in out.stdout and str(tmp_path) in out.stdout


def test_interrupted_export_leaves_nothing_that_looks_complete(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "export", "--model", "mobileformer_52m", "--format", "onnx",
                             "--res", "96", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    leaf = tmp_path / "mobileformer_52m" / "96x96"
    deadline = time.time() + 120
    while time.time() < deadline and not (leaf.exists() and any(leaf.iterdir())):
        time.sleep(0.05)  # wait until the temporary directory exists, i.e. conversion is under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (leaf / "onnx-fp32").exists()
    with pytest.raises(ToolkitError):
        export.load(leaf / "onnx-fp32")
    art = export.export("mobileformer_52m", "onnx", 96, out=tmp_path, parity=False)  # a rerun completes
    assert art.file.exists() and not art.cached


def test_dynamic_onnx_is_checked_at_two_sizes(tmp_path):
    art = export.export("mobilenetv3_small_075", "onnx", 64, out=tmp_path, dynamic=True)
    assert art.dir.name == "onnx-fp32-dynamic" and art.manifest["dynamic"]
    assert art.manifest["parity"]["alt_resolution"] == [96, 128] and art.manifest["parity"]["verdict"] == "passed"
    run = export.load(art)
    assert run(np.zeros((1, 3, 100, 140), np.float32)).shape == (1, 1000)
    with pytest.raises(ToolkitError, match="static input shape here; --dynamic is supported by: onnx"):
        export.export("mobilenetv3_small_075", "executorch", 64, out=tmp_path, dynamic=True)
