"""`export --optimize`, the per-node cost probe and the sweep's optimize axis.

* Mobile-Former's export form computes the plain model's function: in float64 to 1e-12 (an exact rewrite, only
  the rounding differs), in float32 within 2e-5 of the largest logit, for every variant and ablation override.
* Optimized artifacts of every family (ONNX; Mobile-Former also TFLite and ExecuTorch) pass parity against PyTorch
  and the check against the plain artifact, and their manifests say `optimized` and both graphs' counts.
* The per-node probe's chains, converted by every runtime, hold N and 2N nodes plus the same few around them.
* A tiny real `bench run --optimize both --probes` renders the report's 'As exported vs optimized' section and the
  per-node cost beside the fits (the timing itself is not asserted: the machine is shared).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from bench import analysis, nodecost, sweep
from models.mobileformer_fast import export_form

ROOT = Path(__file__).resolve().parent.parent


def _randomised(name: str, **ov):
    """The model with weights that exercise every layer (BatchNorm statistics and every Linear drawn at random),
    without models.seeded's calibration passes."""
    model = models.create(name, **ov)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
                m.bias.normal_(0.0, 0.02, generator=gen)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for t, lo, hi in ((m.running_mean, -0.2, 0.2), (m.running_var, 0.5, 1.5), (m.weight, 0.5, 1.5),
                                  (m.bias, -0.2, 0.2)):
                    t.uniform_(lo, hi, generator=gen)
    return model


@pytest.mark.parametrize("name,ov", [("mobileformer_294m", {}), ("mobileformer_26m", {}),
                                     ("mobileformer_52m", {"dyrelu": False}), ("mobileformer_52m", {"bridge": False}),
                                     ("mobileformer_52m", {"tokens": 1, "dyrelu_token": "input"})])
def test_the_export_form_computes_the_plain_function(name, ov):
    model = _randomised(name, **ov)
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, fast = model(x), export_form(model, "onnx")(x)
        scale = ref.abs().max()
        assert float((fast - ref).abs().max() / scale) < 2e-5
        model64 = model.double()
        for fmt in ("onnx", "tflite"):  # the GELU is written two ways
            got = export_form(model64, fmt)(x.double())
            assert float((got - model64(x.double())).abs().max() / scale) < 1e-12


def test_the_export_form_leaves_the_model_as_it_was():
    model = _randomised("mobileformer_26m")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_form(model, "onnx")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(TypeError):
        export_form(models.create("mobilenetv3_small_075"), "onnx")


def test_the_optimize_axis_keeps_plain_keys_and_times_both_in_one_group():
    plain = sweep.parse_args(device="host", models_arg="mobileformer_26m,nodechain_250", formats="onnx", res="64")
    both = sweep.parse_args(device="host", models_arg="mobileformer_26m,nodechain_250", formats="onnx", res="64",
                            optimize="both")
    assert "optimize" not in plain.canonical() and both.canonical()["optimize"] == [False, True]
    assert plain.hash != both.hash
    cells = both.cells()
    assert {c.key for c in plain.cells()} <= {c.key for c in cells}  # the plain cells keep their keys
    opt = [c for c in cells if c.optimized]
    assert [c.model for c in opt] == ["mobileformer_26m"]  # instruments are not optimized
    assert json.loads(opt[0].key)["optimized"] is True and opt[0].label().endswith("optimized 64x64 t1")
    assert len(sweep.group_cells(cells)) == 1
    from models.errors import ToolkitError

    with pytest.raises(ToolkitError, match="--optimize takes"):
        sweep.parse_args(device="host", models_arg="mobileformer_26m", formats="onnx", res="64", optimize="yes")


def _row(model, family, ms, nodes, *, optimized=False, res=64, session="s"):
    drift = [1.0, 1.1, 0.9, 1.0]
    return {"model": model, "family": family, "overrides": {}, "format": "onnx", "converter": "torch-dynamo",
            "precision": "fp32", "threads": 1, "mode": None, "height": res, "width": res, "status": "ok",
            "samples_ms": [ms * d for d in drift for _ in range(3)], "rounds": [k for k in range(4) for _ in range(3)],
            "session": f"{session}{res}", "median_ms": ms, "cpu_median_ms": None, "unstable": 0, "madds": None,
            "graph": {"nodes": nodes}, "optimized": 1 if optimized else None}


def test_the_per_node_cost_is_the_paired_difference_of_the_chains_over_their_node_difference():
    rows = [_row("nodechain_250", "nodechain", 1.0, 254), _row("nodechain_500", "nodechain", 2.0, 504),
            _row("mobileformer_26m", "mobileformer", 5.0, 900), _row("mobileformer_26m", "mobileformer", 4.0, 600,
                                                                      optimized=True)]
    a = analysis.analyse({"run_id": "x", "args": {}}, rows)
    assert set(a.runtimes) == {"onnx", "onnx optimized"}
    costs = nodecost.node_costs(a)
    assert list(costs) == ["onnx"] and costs["onnx"]["us"] == pytest.approx(4.0)  # 1 ms / 250 nodes
    fits = [{"model": "mobileformer_26m", "runtime": rt, "fixed_ms": 4.0, "role": "subject", "overrides": False}
            for rt in ("onnx", "onnx optimized")]
    nodecost.annotate_fits(fits, a, costs)
    assert fits[0]["nodes_ms"] == pytest.approx(3.6) and fits[1]["nodes_ms"] == pytest.approx(2.4)
    text = nodecost.sentences(costs, fits)
    assert any("900 nodes x 4.00 us = 3.60 ms" in t for t in text)


@pytest.mark.export
@pytest.mark.parametrize("model", ["mobileformer_26m", "mobilenetv3_small_075", "mobilenetv4_conv_small",
                                   "mobilevit_xxs"])
def test_optimized_onnx_of_every_family_matches_pytorch_and_the_plain_artifact(export_root, model):
    import export

    art = export.export(model, "onnx", 64, out=export_root, optimize=True)
    m = art.manifest
    assert m["optimized"] is True and art.dir.name == "onnx-fp32-opt" and art.ok
    assert m["parity"]["verdict"] == "passed" and m["parity"]["vs_plain"]["verdict"] == "passed"
    assert m["parity"]["vs_plain"]["random"]["max_rel"] <= m["parity"]["vs_plain"]["max_rel_bound"]
    plain, opt = m["optimization"]["plain"], m["graph"]
    assert plain["runtime_nodes"] and opt["runtime_nodes"] and opt["file_bytes"] == m["file_bytes"]
    assert any(s.startswith("graph: onnxslim") for s in m["optimization"]["steps"])
    if model.startswith("mobileformer"):
        assert opt["runtime_nodes"] < 0.7 * plain["runtime_nodes"]
    else:  # timm's families get no model rewrite: the graph tools alone
        assert opt["runtime_nodes"] <= plain["runtime_nodes"]


@pytest.mark.export
@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_optimized_mobileformer_on_litert_and_executorch(export_root, fmt):
    import export

    art = export.export("mobileformer_26m", fmt, 64, out=export_root, optimize=True)
    m = art.manifest
    assert art.ok and m["parity"]["vs_plain"]["verdict"] == "passed"
    assert m["graph"]["nodes"] < m["optimization"]["plain"]["nodes"]
    assert m["graph"]["delegated"] == m["graph"]["nodes"] if fmt == "tflite" else m["graph"]["partitions"] == 1


@pytest.mark.export
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "executorch"])
def test_the_node_chains_hold_n_and_2n_nodes_in_every_runtime(export_root, fmt):
    import export

    counts = []
    for name in ("nodechain_250", "nodechain_500"):
        art = export.export(name, fmt, 32, out=export_root)
        assert art.ok
        counts.append(nodecost.nodes_of({"graph": art.manifest["graph"]}))
    assert counts[1] - counts[0] == 250


@pytest.mark.bench
def test_a_tiny_sweep_of_plain_and_optimized_renders_the_comparison(tmp_path, export_root):
    cmd = [sys.executable, "-m", "bench", "run", "--models", "mobileformer_26m,mobilenetv3_small_075", "--formats",
           "onnx", "--res", "64,96", "--rounds", "2", "--per-round", "3", "--warmup", "1", "--optimize", "both",
           "--probes", "--store", str(tmp_path / "r.sqlite"), "--reports", str(tmp_path / "reports"),
           "--artifacts", str(export_root)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = next(p for p in (tmp_path / "reports").glob("host-*"))
    md = (report / "report.md").read_text()
    assert "## As exported vs optimized" in md and "small-image slowdown" in md
    assert "one more trivial node costs" in md and "nodes x per-node cost" in md
    with open(report / "optimized.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"mobileformer_26m", "mobilenetv3_small_075"} and len(rows) == 4
    mf = [r for r in rows if r["model"] == "mobileformer_26m"]
    assert all(int(r["optimized_nodes"]) < int(r["plain_nodes"]) for r in mf)
    with open(report / "fit.csv") as f:
        fits = list(csv.DictReader(f))
    assert any(r["nodes_ms"] for r in fits)


def test_cli_rejects_a_bad_optimize_value_in_one_line(tmp_path):
    for cmd in (["export", "--model", "mobileformer_26m", "--format", "onnx", "--optimize", "maybe"],
                ["bench", "run", "--models", "mobileformer_26m", "--formats", "onnx", "--optimize", "maybe",
                 "--store", str(tmp_path / "r.sqlite")]):
        out = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "--optimize takes" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_rounds_study_table_and_its_errors(tmp_path):
    from bench import rounds_study

    md = rounds_study.markdown([{"max_rounds": 12, "runs": ["a", "b"], "seconds": [400.0, 410.0],
                                 "cells_at_cap": 0.5, "points": 45, "median_abs_dev": 0.017, "max_abs_dev": 0.088,
                                 "inside_ci": 0.76}])
    assert "| 12 | 400 / 410 | 50.0% | 45 | 1.7% | 8.8% | 76.0% | a, b |" in md
    out = subprocess.run([sys.executable, "-m", "bench.rounds_study", "--max-rounds", "ten", "--store",
                          str(tmp_path / "r.sqlite")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "whole numbers" in out.stderr



def test_the_lowering_profile_table():
    """The table of bench.lowering (its real run, cProfile around an ExecuTorch lowering, takes minutes: run by hand,
    `python -m bench.lowering --model nodechain_250 --res 32`)."""
    from bench import lowering

    r = {"model": "m", "optimized": False, "cpu_seconds": 12.0, "edge_nodes": 256,
         "stages_cpu_seconds": {k: 1.0 for k in lowering.STAGES}, "passes_cpu_seconds": {"fuse_batch_norm.call": 0.5},
         "top_own_cpu_seconds": [["x.py:1 f", 0.25]]}
    md = lowering.render([r, {**r, "optimized": True}])
    assert "| plain | 256 | 12.0 |" in md and "| optimized | 256 |" in md and "| fuse_batch_norm.call | 0.50 |" in md
