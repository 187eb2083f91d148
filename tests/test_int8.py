"""int8 (issue 19): calibration input, one-line refusals, the report's int8 section on synthetic rows (fast), and
per format a small model exported int8 whose file is judged int8 from the file itself, with parity against the
quantized reference and the cross-check of two runtimes carrying the same scales (marked export).

The exports use the smallest model at 64x64 in one module-scoped artifacts root, in the order the PT2E conversion
is shared (the ONNX PT2E file, then the .pte, then Core ML, one prepare/calibrate/convert for the three).
"""

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

from models.errors import ToolkitError

ROOT = Path(__file__).resolve().parent.parent
MODEL, RES = "mobilenetv3_small_075", 64


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "export", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Warning" not in ln and "W1" not in ln[:3]]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("export: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------- calibration sets
def test_default_calibration_set_is_seeded_disjoint_and_recorded():
    from export import calibration, parity

    a, b = calibration.default_set(6, seed=3), calibration.default_set(6, seed=3)
    assert a.digest == b.digest and a.digest != calibration.default_set(6, seed=4).digest
    assert a.digest != calibration.default_set(7, seed=3).digest
    assert not set(a.names) & set(parity.IMAGES)
    x = a.batch((48, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (6, 3, 48, 64) and x.dtype == np.float32
    assert np.array_equal(x, b.batch((48, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    photos = parity.photographs((48, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert all(not np.allclose(c, p) for c in x for p in photos)
    rec = a.record()
    assert rec["n"] == 6 and rec["digest"] == a.digest and rec["seed"] == 3


def _png(path: Path, size=(40, 30), color=(200, 30, 10)) -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path, "PNG")
    return path


def test_a_folder_of_photographs_calibrates_and_its_digest_follows_its_files(tmp_path):
    from PIL import Image

    from export import calibration

    _png(tmp_path / "a.png")
    Image.new("L", (50, 50), 128).save(tmp_path / "b.jpg", "JPEG")  # grey JPEG: three equal channels
    (tmp_path / ".DS_Store").write_bytes(b"ignored")
    c = calibration.folder_set(tmp_path)
    assert c.n == 2 and c.names == ("a.png", "b.jpg") and c.seed is None
    x = c.batch((32, 32), (0, 0, 0), (1, 1, 1))
    assert x.shape == (2, 3, 32, 32) and np.allclose(x[1, 0], x[1, 2]) and x.max() <= 1.0
    before = c.digest
    _png(tmp_path / "a.png", color=(10, 30, 200))
    assert calibration.folder_set(tmp_path).digest != before


@pytest.mark.parametrize("case,needle", [
    ("missing", "no such folder"), ("empty", "holds no images"), ("text", "is not a JPEG or PNG image"),
    ("zero", "is empty (0 bytes)"), ("truncated", "cannot be decoded"), ("gif", "is not a JPEG or PNG image"),
    ("file", "not a folder")])
def test_bad_calibration_input_is_one_line_and_nothing_is_written(tmp_path, case, needle):
    from PIL import Image

    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "text":
        _png(folder / "ok.png")
        (folder / "notes.jpg").write_text("these are not pixels")
    elif case == "zero":
        (folder / "empty.png").write_bytes(b"")
    elif case == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "t.jpg", "JPEG")
        data = (folder / "t.jpg").read_bytes()
        (folder / "t.jpg").write_bytes(data[:len(data) // 3])
    elif case == "gif":
        Image.new("RGB", (16, 16)).save(folder / "g.gif", "GIF")
    elif case == "file":
        folder.rmdir()
        _png(folder)
    out = tmp_path / "out"
    line = one_line(cli("--model", MODEL, "--format", "onnx", "--res", str(RES), "--precision", "int8",
                        "--calibration", str(folder), "--out", str(out)))
    assert needle in line and "--calibration" in line
    assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.parametrize("args,needle", [
    (("--format", "onnx", "--converter", "pt2e"), "makes int8 artifacts only; fp32 onnx is made by: torch-dynamo"),
    (("--format", "onnx", "--precision", "int8", "--dynamic"), "static input shape"),
    (("--format", "onnx", "--calibration", "."), "--calibration applies to --precision int8 only"),
    (("--format", "onnx", "--precision", "int4"), "invalid choice"),
    (("--format", "onnx", "--precision", "int8", "--optimize"), "--optimize applies to fp32 and fp16")])
def test_int8_refusals_are_one_line(tmp_path, args, needle):
    proc = cli("--model", MODEL, "--res", str(RES), "--out", str(tmp_path / "out"), *args)
    if needle == "invalid choice":  # argparse's own usage error
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
        return
    assert needle in one_line(proc)


def test_a_converter_without_an_int8_path_names_those_with_one():
    import dataclasses

    from export import FORMATS, quant
    from export.spec import Converter

    spec = dataclasses.replace(FORMATS["tflite"], converters=FORMATS["tflite"].converters + (
        Converter("someday", ("numpy",), "tflite"),))
    with pytest.raises(ToolkitError, match="converter someday cannot make int8 artifacts; int8 tflite is made by: "
                                           "litert-torch, onnx2tf, litert-torch-pt2e"):
        quant.int8_path(spec, spec.converters[-1])


def test_runtime_labels_name_int8_and_int8_only_converters():
    from bench.labels import runtime_label

    assert runtime_label("onnx", "torch-dynamo", "fp32") == "onnx"
    assert runtime_label("onnx", "torch-dynamo", "int8") == "onnx int8"
    assert runtime_label("onnx", "pt2e", "int8") == "onnx/pt2e int8"
    assert runtime_label("tflite", "litert-torch", "int8") == "tflite/litert-torch int8"
    assert runtime_label("coreml", "coremltools-weights", "int8") == "coreml/coremltools-weights int8"


def test_the_sweep_makes_int8_cells_for_int8_converters_only():
    from bench import sweep

    args = sweep.parse_args(device="host", models_arg=MODEL, formats="onnx", res="64", precision="fp32,int8",
                            converter="torch-dynamo,pt2e")
    assert sorted((c.converter, c.precision) for c in args.cells()) == [
        ("pt2e", "int8"), ("torch-dynamo", "fp32"), ("torch-dynamo", "int8")]


# --------------------------------------------------------------------------------------------- the report
def test_the_report_has_int8_rows_speedups_and_the_family_sentence():
    from test_report_analysis import RUN, SUBJECT, V3, row

    from bench import analysis, int8_report, writers

    def quant(float_ops: int, kinds: dict[str, int], conversions: int) -> dict:
        return {"int8_ops": 50, "float_ops": float_ops, "float_op_kinds": kinds, "conversions": conversions,
                "calibration": {"source": "scikit-image photographs", "n": 32, "digest": "d"}, "checkpoint": False,
                "quantized": {"images": {"within_one_step": 0.6, "max_steps": 7.0, "cosine": 0.998}},
                "fp32": {"cosine": 0.99, "top1": 0.75, "top5": 0.9}}

    rows = []
    for res, (mf, v3, mf8, v38) in {96: (10.0, 5.0, 8.0, 2.5), 128: (12.0, 8.0, 10.0, 4.0)}.items():
        rows += [row(SUBJECT, res, mf), row(V3, res, v3)]
        for model, ms, q in ((SUBJECT, mf8, quant(40, {"XNNMaximum": 12, "XNNSoftmax": 4}, 140)),
                             (V3, v38, quant(20, {"XNNHardswish": 19}, 66))):
            r = row(model, res, ms, fmt="executorch", converter="xnnpack")
            base = row(model, res, ms * (mf / mf8 if model == SUBJECT else v3 / v38), fmt="executorch",
                       converter="xnnpack")
            r.update(precision="int8", quant=q)
            rows += [r, base]
    a = analysis.analyse(RUN, rows)
    ups = {(u.model, u.runtime): u for u in int8_report.speedups(a)}
    assert ups[("mobileformer_26m", "executorch int8")].curve.ratios == pytest.approx([1.25, 1.2])
    assert ups[("mobilenetv3_small_075", "executorch int8")].curve.ratios == pytest.approx([2.0, 2.0])
    items = int8_report.answer_items(a, analysis.plain)
    assert items == ["On executorch int8, mobileformer_26m: int8 runs it 1.20x as fast as fp32 at 128; 40 of 90 "
                     "compute ops stay float (XNNMaximum x12 (dynamic ReLU's max), XNNSoftmax x4 (attention "
                     "softmax)), 140 int8<->float conversions; mobilenetv3_small_075: int8 runs it 2.00x as fast as "
                     "fp32 at 128; 20 of 70 compute ops stay float (XNNHardswish x19 (h-swish)), 66 int8<->float "
                     "conversions."]
    md = writers.markdown(a)
    assert "## int8" in md and "not an accuracy figure" in md
    assert "### Slowdown ratio at fp32 and at int8" in md and "| executorch int8 | 3.20 | 2.50 | No crossover" in md
    assert "| mobilenetv3_small_075 | executorch int8 | executorch | 2.00 (2.00-2.00) | 2.00 (2.00-2.00) |" in md
    assert "| mobileformer_26m | executorch int8 | 50/90 | 140 |" in md
    assert items[0].replace("executorch int8", "**executorch int8**") in md


# --------------------------------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def int8_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("int8-artifacts")


@pytest.fixture(scope="module")
def int8(int8_root):
    import export

    cache: dict[tuple[str, str | None], export.Artifact] = {}

    def get(fmt: str, converter: str | None = None) -> export.Artifact:
        if (fmt, converter) not in cache:
            cache[(fmt, converter)] = export.export(MODEL, fmt, RES, precision="int8", converter=converter,
                                                    out=int8_root)
        return cache[(fmt, converter)]

    return get


def _passed_against_the_quantized_reference(art) -> dict:
    p = art.manifest["parity"]
    assert art.ok and p["verdict"] == "passed", p
    for key in ("random", "images"):
        q = p["quantized"][key]
        assert q["p50_steps"] <= 10 and q["cosine"] >= 0.85 and q["n"] > 0 and "max_steps" in q, q
    assert p["images"]["cosine"] >= 0.9  # against fp32 on the photographs: drift, not a broken file
    d = art.manifest["details"]["int8"]
    assert d["int8_ops"] > 0 and d["calibration"]["n"] == 32 and d["calibration"]["digest"]
    assert art.manifest["weights"] == {"seed": 0, "batchnorm": "photographs"}
    return p


@pytest.mark.export
def test_onnx_int8_file_is_qdq_with_int8_weights_and_fuses_to_integer_kernels(int8):
    import onnx
    import onnxruntime as ort

    art = int8("onnx")
    _passed_against_the_quantized_reference(art)
    model = onnx.load(str(art.file))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 50
    inits = {i.name: i for i in model.graph.initializer}
    conv_w = [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and len(inits[n.input[0]].dims) == 4]
    assert conv_w and all(w.data_type == onnx.TensorProto.INT8 for w in conv_w)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(art.dir.parent / "optimized-check.onnx")
    ort.InferenceSession(str(art.file), opts, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    Path(opts.optimized_model_filepath).unlink()
    assert fused.count("QLinearConv") >= 50  # uint8 activations: every convolution runs as an integer kernel
    # the quantized reference, recomputed here: the same file with the optimisations off
    import export
    from export import parity

    ref_opts = ort.SessionOptions()
    ref_opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(art.file), ref_opts, providers=["CPUExecutionProvider"])
    spec = art.manifest["input"]
    x = parity.photographs((RES, RES), spec["mean"], spec["std"])
    run = export.load(art, threads=1)
    got = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    want = np.concatenate([ref.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    step = art.manifest["details"]["int8"]["output_step"]
    assert np.abs(got - want).max() / step <= 2.0 + 1e-6


@pytest.mark.export
def test_tflite_int8_file_has_int8_tensors_and_ops(int8):
    from ai_edge_litert.interpreter import Interpreter

    art = int8("tflite")
    _passed_against_the_quantized_reference(art)
    interp = Interpreter(model_path=str(art.file))
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["dtype"] == np.int8  # full integer: load() quantizes the input
    tensors = interp.get_tensor_details()
    weights = [t for t in tensors if len(t["shape"]) == 4 and t["dtype"] == np.int8
               and len(t["quantization_parameters"]["scales"]) > 1]
    assert len(weights) >= 40  # per-channel int8 convolution weights
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= ops and "DEQUANTIZE" not in ops
    assert not [t for t in tensors if t["dtype"] == np.float32 and len(t["shape"]) == 4 and t["name"]
                and "weight" in t["name"].lower()]


@pytest.mark.export
def test_pt2e_onnx_executorch_and_coreml_share_one_set_of_scales(int8):
    from executorch.exir._serialize._program import deserialize_pte_binary

    onnx_art = int8("onnx", "pt2e")
    _passed_against_the_quantized_reference(onnx_art)
    pte = int8("executorch")
    p = _passed_against_the_quantized_reference(pte)
    coreml = int8("coreml")
    digests = {a.manifest["details"]["int8"]["scales_digest"] for a in (onnx_art, pte, coreml)}
    assert len(digests) == 1, digests
    # the .pte, judged from its bytes: one XNNPACK delegate whose graph holds quantized values
    data = pte.file.read_bytes()
    plan = deserialize_pte_binary(data).program.execution_plan[0]
    assert [d.id for d in plan.delegates] == ["XnnpackBackend"]
    assert len(data) < 0.4 * 4 * pte.manifest["params"]  # int8 weights: well under a quarter of fp32's size
    from export import int8_executorch

    rec = int8_executorch.inspect(pte.file)
    assert rec["ops"]["XNNConv2d"]["int8"] > 30 and rec["weight_dtypes"].get("qcint8", 0) > 40
    assert rec["conversions"] > 0 and rec["float_op_kinds"].get("XNNHardswish")
    # the cross-check: the .pte against the ONNX file with the same scales, both in their own runtime
    cc = p["cross_check"]
    assert cc["twin"] == "onnx/pt2e" and cc["images"]["n"] == 4 and cc["images"]["p50_steps"] <= 10
    # Core ML: structure only here; int8 weights and activation quantize / dequantize in the program
    assert coreml.manifest["parity"]["verdict"] == "not run: needs macOS"
    ops = coreml.manifest["details"]["coreml"]["ops"]
    assert ops.get("quantize", 0) > 20 and ops.get("dequantize", 0) > 20
    assert ops.get("constexpr_affine_dequantize", 0) > 40
    # the generated tables of docs/int8.md read these manifests back: one parity row per artifact, the twin's rows
    from export import int8_table

    ms = int8_table.manifests(pte.dir.parent.parent.parent, f"{RES}x{RES}")
    assert {(m["format"], m["converter"]) for m in ms} >= {("onnx", "pt2e"), ("executorch", "xnnpack")}
    assert "onnx/pt2e" in int8_table.cross_table(ms) and "XNNHardswish" in int8_table.float_table(ms)


@pytest.mark.export
def test_a_cancelled_calibration_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = {p.name for p in Path("/tmp").glob("ort.quant.*")}
    proc = subprocess.Popen([sys.executable, "-m", "export", "--model", MODEL, "--format", "onnx", "--res", "48",
                             "--precision", "int8", "--out", str(out)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not list(out.rglob("pre.onnx")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)  # inside quantize_static's calibration
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "export: interrupted" in err and "Traceback" not in err, err[-2000:]
    assert [p for p in out.rglob("*") if p.is_file()] == []
    assert {p.name for p in Path("/tmp").glob("ort.quant.*")} <= before


def test_manifest_records_int8_parity_fields_round_trip():
    from export.manifest import Parity

    p = Parity.from_json({"verdict": "passed", "quantized": {"images": {"max_steps": 3.0}},
                         "cross_check": {"twin": "onnx/pt2e"}})
    assert p.to_json()["quantized"]["images"]["max_steps"] == 3.0 and p.cross_check["twin"] == "onnx/pt2e"
    assert json.loads(json.dumps(p.to_json())) == p.to_json()


@pytest.mark.bench
def test_a_tiny_fp32_int8_sweep_reports_the_int8_rows(tmp_path, artifacts):
    from conftest import MF, SMALL
    from test_bench import bench

    rc, out, err = bench("run", "--models", f"{SMALL},{MF}", "--formats", "onnx", "--res", "64", "--precisions",
                         "fp32,int8", "--rounds", "2", "--per-round", "3", "--warmup", "1", "--max-rounds", "2",
                         tmp=tmp_path, artifacts=artifacts, timeout=1800)
    assert rc == 0, err[-3000:]
    assert "4 measured, 0 failed" in out, out
    md = (tmp_path / "reports" / "latest" / "report.md").read_text()
    assert f"On **onnx int8**, {MF} vs {SMALL}" in md  # the slowdown at int8, a pair of its own
    assert "### Slowdown ratio at fp32 and at int8" in md and "| | onnx int8 |" in md.replace("|  |", "| |")
    assert f"| {SMALL} | onnx int8 | onnx |" in md  # the speed-up table
    assert "compute ops in int8" in md and "not an accuracy figure" in md
    assert f"On onnx int8, {MF}: int8 runs it" in out  # the family sentence on the console too
    conn = __import__("sqlite3").connect(tmp_path / "results.sqlite")
    quant = [json.loads(q) for (q,) in conn.execute("SELECT quant FROM cells WHERE precision = 'int8'")]
    assert len(quant) == 2 and all(q["int8_ops"] > 0 and q["calibration"]["n"] == 32 for q in quant)
