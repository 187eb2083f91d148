"""export/tflite.py and export/tflite_onnx2tf.py: both converters, parity, manifests, NHWC loading, corrupt files.

Real conversions on the smallest variants at small resolutions. Mobile-Former 26m through onnx2tf runs at 128x128
on purpose: its last 4x4 feature maps meet grouped convolutions with groups = 4, the case onnx2tf's automatic
transposes get wrong without our parameter replacements.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import export
import models
from export import parity
from models.errors import ToolkitError

pytestmark = pytest.mark.export

TFLITE_KEYS = {"ops", "operators", "custom_ops", "flex_op_count", "custom_op_count", "subgraphs", "weight_tensors",
               "delegation"}
CASES = [("litert-torch", "mobileformer_26m", "96x128"), ("litert-torch", "mobilenetv3_small_100", 128),
         ("onnx2tf", "mobileformer_26m", 128), ("onnx2tf", "mobilenetv3_small_100", 128)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return root, {}


def _export(artifacts, converter, model, res):
    root, done = artifacts
    key = (converter, model, str(res))
    if key not in done:
        done[key] = export.export(model, "tflite", res, converter=converter, out=root)
    return done[key]


@pytest.mark.parametrize("converter,model,res", CASES, ids=[f"{c}-{m}-{r}" for c, m, r in CASES])
def test_export_parity_and_manifest(artifacts, converter, model, res):
    art = _export(artifacts, converter, model, res)
    m = art.manifest
    assert m["status"] == "ok" and m["parity"]["verdict"] == "passed", m["parity"]
    for key in ("random", "images"):
        assert m["parity"][key]["max_rel"] <= 1e-3 and m["parity"][key]["cosine"] >= 0.99999
    assert TFLITE_KEYS <= set(m) and m["converter"] == converter
    assert m["converter_versions"][converter] and m["subgraphs"] == 1
    assert m["flex_op_count"] == 0 and m["custom_op_count"] == 0 and m["custom_ops"] == {}
    assert sum(m["ops"].values()) == m["operators"] > 0 and "CONV_2D" in m["ops"]
    deleg = m["delegation"]
    assert deleg["nodes"] == m["operators"] and 0 < deleg["delegated_nodes"] <= deleg["nodes"]
    assert deleg["partitions"] >= 1 and deleg["summary"].startswith("XNNPACK")
    assert m["file_bytes"] == art.file.stat().st_size and art.file.suffix == ".tflite"
    h, w = models.check_resolution(model, res)
    if converter == "onnx2tf":
        assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [1, h, w, 3]
        assert m["onnx2tf_check"]["ok"] and m["onnx2tf_mode"]
        assert {"onnx", "onnx2tf_fast"} <= set(m["stage_seconds"])
        assert not any(p.name == "onnx2tf-work" for p in art.dir.iterdir())  # intermediates removed
    else:
        assert m["input"]["layout"] == "NCHW" and m["input"]["shape"] == [1, 3, h, w]
    if model == "mobileformer_26m" and converter == "onnx2tf":
        assert m["param_replacements"]  # channel shuffles and bridge outputs forced to NHWC
        assert m["delegation"]["not_delegated"] == {"GATHER": m["ops"]["GATHER"]}  # token 0 selections


def test_nhwc_artifact_takes_nchw_through_load(artifacts):
    """Callers feed NCHW to every artifact: load transposes for onnx2tf's NHWC file (and gives torch's logits)."""
    art = _export(artifacts, "onnx2tf", "mobilenetv3_small_100", 128)
    info = models.info("mobilenetv3_small_100", (128, 128))
    x = parity.photographs((128, 128), info.mean, info.std)[:2]
    run = export.load(art.dir, threads=1)
    got = run(x)  # a batch of 2 on a batch-1 file: run image by image
    net = models.seeded("mobilenetv3_small_100", seed=0)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    figures = parity.compare(ref, got)
    assert got.shape == (2, 1000) and figures["max_rel"] <= 1e-3 and figures["cosine"] >= 0.99999
    with pytest.raises(ToolkitError, match="takes input of shape"):
        run(np.zeros((1, 3, 96, 96), np.float32))


def test_no_tensorflow_in_process(artifacts):
    """TensorFlow before torch._dynamo kills the process: neither converter may import it here (--format all)."""
    _export(artifacts, "litert-torch", "mobilenetv3_small_100", 128)
    _export(artifacts, "onnx2tf", "mobilenetv3_small_100", 128)
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("damage", ["truncated", "header", "empty", "garbage"])
def test_corrupt_file_is_a_clear_error(artifacts, tmp_path, damage):
    art = _export(artifacts, "litert-torch", "mobilenetv3_small_100", 128)
    data = art.file.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "header": data[:4] + b"XXXX" + data[8:], "empty": b"",
           "garbage": bytes(range(256)) * 64}[damage]
    target = tmp_path / "copy"
    target.mkdir()
    (target / "manifest.json").write_text((art.dir / "manifest.json").read_text())
    (target / art.file.name).write_bytes(bad)
    with pytest.raises(ToolkitError, match=art.file.name):
        export.load(target)


def test_truncated_tail_never_reaches_the_interpreter(artifacts, tmp_path):
    """Truncation at several points: always a ToolkitError (the interpreter never crashes the process)."""
    art = _export(artifacts, "litert-torch", "mobilenetv3_small_100", 128)
    data = art.file.read_bytes()
    for cut in (16, 1000, len(data) // 3, len(data) - 64, len(data) - 1):
        f = tmp_path / f"cut{cut}.tflite"
        f.write_bytes(data[:cut])
        with pytest.raises(ToolkitError, match=f.name):
            export.load(f)
