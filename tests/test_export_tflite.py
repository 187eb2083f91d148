"""export/tflite.py and export/tflite_onnx2tf.py: both converters, parity, manifests, NHWC loading, corrupt files.

Real conversions on the smallest variants at small resolutions. Mobile-Former 26m through onnx2tf runs at 96x64
(H x W) on purpose: its 4x4 feature maps meet grouped convolutions with groups = 4, the case onnx2tf's automatic
transposes get wrong without our parameter replacements. Measured without them (fast mode): 128x128, 64x64 and
96x64 die in onnx2tf ("tf.math.add" at a Conv); 64x96 happens to convert. 96x64 is non-square, so a swapped H/W
would show as well. Resolution barely changes onnx2tf's time (per-op Keras overhead, see export/tflite_onnx2tf.py):
this case costs ~56 s of CPU (ONNX 9 s, onnx2tf 43 s), against 65 s for 128x128 through onnx2tf's command line.
fp16 through onnx2tf must mean what litert-torch's fp16 means (weight-only float16 by litert-torch's recipe):
checked on MobileNetV3-small against onnx2tf's own float32 file of the same graph.
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
CASES = [("litert-torch", "mobileformer_26m", "96x128", "fp32"),
         ("litert-torch", "mobilenetv3_small_100", 128, "fp32"),
         ("onnx2tf", "mobileformer_26m", "96x64", "fp32"),
         ("onnx2tf", "mobilenetv3_small_100", 128, "fp32"),
         ("onnx2tf", "mobilenetv3_small_100", 128, "fp16")]

def _flat(art) -> dict:
    """The manifest with the converter's details (under their own key) beside the pipeline's fields."""
    m = art.manifest
    assert not set(m["details"]) & (set(m) - {"details"}), "a converter detail shadows a pipeline field"
    return {**m, **m["details"]}



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return root, {}


def _export(artifacts, converter, model, res, precision="fp32"):
    root, done = artifacts
    key = (converter, model, str(res), precision)
    if key not in done:
        done[key] = export.export(model, "tflite", res, converter=converter, precision=precision, out=root)
    return done[key]


@pytest.mark.parametrize("converter,model,res,precision", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_export_parity_and_manifest(artifacts, converter, model, res, precision):
    art = _export(artifacts, converter, model, res, precision)
    m = _flat(art)
    assert m["status"] == "ok" and m["parity"]["verdict"] == "passed", m["parity"]
    limits = parity.THRESHOLDS[precision]
    for key in ("random", "images"):
        assert m["parity"][key]["max_rel"] <= limits["max_rel"] and m["parity"][key]["cosine"] >= limits["cosine"]
    assert TFLITE_KEYS <= set(m) and m["converter"] == converter and m["precision"] == precision
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


def test_onnx2tf_fp16_is_weight_only_like_litert_torch(artifacts):
    """onnx2tf fp16 = its checked float32 file + litert-torch's fp16 recipe: only weights become float16."""
    from litert_torch.generative.quantize import quant_recipes
    from litert_torch.quantize import translate_recipe

    m32 = _flat(_export(artifacts, "onnx2tf", "mobilenetv3_small_100", 128))
    m16 = _flat(_export(artifacts, "onnx2tf", "mobilenetv3_small_100", 128, "fp16"))
    record = m16["fp16"]
    assert "float32" in record["source"] and record["tool"].startswith("ai-edge-quantizer ")
    assert record["quantizer_recipe"] == translate_recipe.translate_to_ai_edge_recipe(
        quant_recipes.full_fp16_recipe().generative_recipe)
    assert "fp16_weights" in m16["stage_seconds"] and m16["onnx2tf_check"]["ok"]
    w32, w16 = m32["weight_tensors"], m16["weight_tensors"]
    assert "FLOAT16" not in w32 and w16["FLOAT16"] > 0
    # each float16 weight is dequantized once, in the graph; every other constant stays float32 (biases, scalars)
    assert m16["ops"]["DEQUANTIZE"] == w16["FLOAT16"] and "DEQUANTIZE" not in m32["ops"]
    assert w16["FLOAT16"] + w16["FLOAT32"] == w32["FLOAT32"] and w16["FLOAT32"] > 0
    assert {k: v for k, v in m16["ops"].items() if k != "DEQUANTIZE"} == m32["ops"]
    assert m16["file_bytes"] < 0.6 * m32["file_bytes"]


def test_fp16_of_a_damaged_float32_file_is_a_clear_error(tmp_path):
    from export.tflite_onnx2tf import weight_fp16

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ToolkitError, match="could not apply the fp16 recipe"):
        weight_fp16(bad, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()


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
    _export(artifacts, "onnx2tf", "mobilenetv3_small_100", 128, "fp16")
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
