"""The native ExecuTorch runner (et-bench, devices/native): its JSON line, its build, real runs on a real .pte (sample
count, parity against PyTorch, corrupt and missing files), and a host profile with runner = "native" timing a group.

The build and run tests need cmake and a C++ compiler: `need_program` (tests/_system.py) installs them as root or in
CI and skips with one line elsewhere. The .pte is Mobile-Former-26M at 96x128, exported into the session's shared
artifacts folder (a cache hit when tests/test_export_executorch_coreml.py made it first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _system import need_program

from devices import native
from devices.base import MeasureError
from devices.host import HostDevice, HostProfile
from models.common import file_digest
from models.errors import ToolkitError

MODEL = "mobileformer_26m"
RES = (96, 128)


def line(**over) -> str:
    obj = {"tool": "et-bench", "tool_version": native.TOOL_VERSION, "executorch": "1.5.1+cpu", "model": "m.pte",
           "threads": 1, "warmup": 2, "iters": 3, "load_ms": 40.5, "first_ms": 9.0, "overhead_us": 0.03,
           "peak_rss_mb": 34.7, "input": {"shape": [1, 3, 96, 128], "dtype": "float32", "source": "fill"},
           "output": {"shape": [1, 1000]}, "samples_ms": [2.5, 2.25, 3.0], "cpu_samples_ms": [2.5, 2.0, 3.0]}
    obj.update(over)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


# --------------------------------------------------------------------------------------------- pure
def test_parse_output_reads_the_json_line():
    r = native.parse_output(line() + "\n", iters=3)
    assert r.samples_ms == [2.5, 2.25, 3.0] and r.cpu_samples_ms == [2.5, 2.0, 3.0]
    assert (r.load_ms, r.first_ms, r.warmup, r.threads, r.peak_rss_mb) == (40.5, 9.0, 2, 1, 34.7)
    assert r.input_shape == [1, 3, 96, 128] and r.output_shape == [1, 1000] and r.executorch == "1.5.1+cpu"
    assert native.parse_output(line(peak_rss_mb=None, overhead_us=None)).peak_rss_mb is None


@pytest.mark.parametrize("text,needle", [
    ("", "printed 0 lines"),
    (line() + "\n" + line(), "printed 2 lines"),
    ("not json", "no valid JSON"),
    (json.dumps([1, 2]), "not et-bench's"),
    (line(tool="other"), "not et-bench's"),
    (line(tool_version=99), "rebuild it"),
    (line(samples_ms=[1.0, -2.0, 3.0]), "samples_ms must be a list of non-negative numbers"),
    (line(cpu_samples_ms=[1.0]), "3 samples but 1 CPU samples"),
    (line(load_ms="fast"), "load_ms must be a non-negative number"),
    (line(threads=1.5), "threads must be a whole number"),
])
def test_parse_output_rejects_what_is_not_one_good_line(text, needle):
    with pytest.raises(ToolkitError, match=needle):
        native.parse_output(text)


def test_parse_output_checks_the_sample_count():
    with pytest.raises(ToolkitError, match="3 samples for 4 iterations"):
        native.parse_output(line(), iters=4)


def test_command_is_an_argument_list():
    assert native.command("/b/et-bench", "m p.pte", threads=2, warmup=0, iters=5, input_file="x.f32") == [
        "/b/et-bench", "--model", "m p.pte", "--threads", "2", "--warmup", "0", "--iters", "5", "--input", "x.f32"]


@pytest.mark.parametrize("prof,needle", [
    ({"runner": "fast"}, "runner must be one of python, native, not 'fast'"),
    ({"runner": 1}, "runner must be a string"),
    ({"native_runner": "/x"}, "native_runner is set but runner is 'python'"),
    ({"runner": "native", "native_runner": 3}, "native_runner must be a path"),
])
def test_runner_keys_of_a_host_profile(prof, needle):
    with pytest.raises(ToolkitError, match=needle):
        HostProfile.parse({"kind": "host", **prof}, "device profile [x]")


def test_the_shipped_native_profile_and_a_missing_build(tmp_path, monkeypatch):
    import devices

    prof = dict(devices.profiles()["host-native"])
    prof.pop("_file")
    assert HostProfile.parse(prof, "[host-native]").runner == "native"
    monkeypatch.setenv("VENV_CACHE", str(tmp_path))  # nothing built there
    with pytest.raises(ToolkitError, match="run `make native`"):
        HostDevice("host-native", HostProfile(runner="native"))
    with pytest.raises(ToolkitError, match="is not an executable file"):
        HostDevice("x", HostProfile(runner="native", native_runner=str(tmp_path / "nope")))
    devices.get("host")
    assert "native" not in devices.KINDS  # a package of devices/ without KIND is not a kind


def test_need_program_skips_with_one_line_and_fails_in_ci(monkeypatch):
    import _system

    monkeypatch.setattr(_system.shutil, "which", lambda name: None)
    monkeypatch.setattr(_system, "_is_root", lambda: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install cmake \(apt install cmake\) to run this test"):
        need_program("cmake", "cmake")
    monkeypatch.setenv("CI", "1")
    monkeypatch.setattr(_system, "_apt_install", lambda pkg: "E: Unable to locate package cmake")
    with pytest.raises(pytest.fail.Exception, match="Unable to locate package"):
        need_program("cmake", "cmake")


# --------------------------------------------------------------------------------------------- built and run
@pytest.fixture(scope="session")
def et_bench(tmp_path_factory) -> Path:
    """et-bench built from the sources, once per session, in a folder of the session's own (a real build)."""
    need_program("cmake", "cmake")
    need_program("g++", "g++", alternatives=("c++", "clang++"))
    return native.build(tmp_path_factory.mktemp("native-build"))


@pytest.fixture(scope="session")
def pte(export_root):
    import export

    return export.export(MODEL, "executorch", RES, out=export_root)


def bench(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.export
def test_build_is_cached_and_reports_its_version(et_bench):
    mtime = et_bench.stat().st_mtime_ns
    assert native.build(et_bench.parent) == et_bench and et_bench.stat().st_mtime_ns == mtime  # no rebuild
    v = bench(et_bench, "--version")
    assert v.returncode == 0 and v.stdout.startswith("et-bench 1 (executorch ")


@pytest.mark.export
def test_a_real_run_gives_every_sample(et_bench, pte):
    proc = bench(et_bench, "--model", str(pte.file), "--threads", "1", "--warmup", "2", "--iters", "7")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    r = native.parse_output(proc.stdout, iters=7)
    assert len(r.samples_ms) == len(r.cpu_samples_ms) == 7 and all(s > 0 for s in r.samples_ms)
    assert r.load_ms > 0 and r.first_ms > 0 and r.warmup == 2 and r.threads == 1
    assert r.input_shape == [1, 3, *RES] and r.output_shape == [1, 1000]
    assert 5 < r.peak_rss_mb < 500 and r.overhead_us < 50
    assert r.executorch.startswith(native.executorch_version())
    assert native.parse_output(bench(et_bench, "--model", str(pte.file), "--iters", "0").stdout).samples_ms == []


@pytest.mark.export
def test_native_output_matches_pytorch_and_the_python_runtime(et_bench, pte, tmp_path):
    """--output on the manifest's parity inputs (its recorded random seed and the photographs) against the PyTorch
    model rebuilt from the manifest's weights, with the export's fp32 thresholds; and against executorch.runtime."""
    import torch

    import export
    from export import parity
    from export.core import build_model

    m = pte.manifest
    res, mean, std = tuple(m["resolution"]), m["input"]["mean"], m["input"]["std"]
    x = np.concatenate([parity.random_images(res, mean, std, m["parity"]["random_seed"], n=3),
                        parity.photographs(res, mean, std)])
    got = []
    for i, xi in enumerate(x):
        src, dst = tmp_path / f"in{i}.f32", tmp_path / f"out{i}.f32"
        src.write_bytes(np.ascontiguousarray(xi, np.float32).tobytes())
        proc = bench(et_bench, "--model", str(pte.file), "--warmup", "0", "--iters", "1", "--input", str(src),
                     "--output", str(dst))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["input"]["source"] == "file"
        got.append(np.fromfile(dst, np.float32))
    got = np.stack(got)
    model = build_model(m["model"], m["overrides"], m["weights"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    figures = parity.compare(ref, got)
    limits = parity.THRESHOLDS["fp32"]
    assert figures["max_rel"] <= limits["max_rel"] and figures["cosine"] >= limits["cosine"], figures
    runtime = export.load(pte, threads=1)
    python = np.concatenate([runtime(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(got, python, rtol=1e-5, atol=1e-5 * float(np.abs(python).max()))


@pytest.mark.export
@pytest.mark.parametrize("damage", ["missing", "empty", "truncate", "garbage", "bitflip"])
def test_bad_programs_are_one_line_and_a_clean_exit(et_bench, pte, tmp_path, damage):
    bad = tmp_path / "model.pte"
    data = pte.file.read_bytes()
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00" * 4 + b"NOPE" + bytes(range(256)) * 10)
    elif damage == "bitflip":  # right size and header, damaged program: the verifier must catch it
        bad.write_bytes(data[:200] + b"\xff" * 3800 + data[4000:])
    proc = bench(et_bench, "--model", str(bad), "--iters", "2")
    assert proc.returncode == native.EXIT_LOAD, (proc.returncode, proc.stderr)
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("et-bench: error: ") and str(bad) in proc.stderr
    with pytest.raises(MeasureError, match="et-bench: error") as err:
        native.run(et_bench, bad, threads=1, warmup=0, iters=2, timeout=60)
    assert err.value.stage == "load"


@pytest.mark.export
@pytest.mark.parametrize("args,needle", [(["--iters", "x"], "--iters takes a whole number"),
                                         (["--bogus", "1"], "unknown argument --bogus"),
                                         (["--iters", "2"], "--model F.pte is required"),
                                         (["--threads", "0"], "--threads takes a whole number")])
def test_bad_arguments_are_one_line(et_bench, args, needle):
    proc = bench(et_bench, *args)
    assert proc.returncode == native.EXIT_USAGE and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


@pytest.mark.export
def test_an_input_of_the_wrong_size_is_one_line(et_bench, pte, tmp_path):
    small = tmp_path / "x.f32"
    small.write_bytes(np.zeros(10, np.float32).tobytes())
    proc = bench(et_bench, "--model", str(pte.file), "--input", str(small))
    assert proc.returncode == native.EXIT_USAGE and "needs 36864 float32 values" in proc.stderr


@pytest.mark.export
@pytest.mark.bench
def test_a_native_host_times_a_group_with_rounds(et_bench, pte, export_root, tmp_path):
    """runner = "native": the .pte member through et-bench, the .onnx member of the same group through onnxruntime,
    a corrupt .pte alone failing at load; every sample with its round."""
    import export

    onnx = export.export(MODEL, "onnx", RES, out=export_root)
    bad = tmp_path / "bad"  # a damaged program whose manifest vouches for it: only et-bench can refuse it
    shutil.copytree(pte.dir, bad)
    (bad / pte.file.name).write_bytes(pte.file.read_bytes()[:200] + b"\xff" * 3800 + pte.file.read_bytes()[4000:])
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest.update(file_bytes=(bad / pte.file.name).stat().st_size, file_sha256=file_digest(bad / pte.file.name))
    (bad / "manifest.json").write_text(json.dumps(manifest))
    dev = HostDevice("host-native", HostProfile(runner="native", native_runner=str(et_bench)))
    assert dev.runners([pte.dir, onnx.dir]) == ["native", "python"]
    assert dev.describe()["runner"] == "native" and dev.describe()["native_runner"] == str(et_bench)
    try:
        a, b = dev.run_group([pte.dir, onnx.dir], rounds=3, per_round=4, warmup=1, switch_warmup=1, threads=1,
                             timeout=300, seed=3)
        (broken,) = dev.measure([bad], ["native"], rounds=1, per_round=2, warmup=0, switch_warmup=0, threads=1,
                                timeout=300, seed=0)
    finally:
        dev.close()
    for m in (a, b):
        assert m.rounds == [0] * 4 + [1] * 4 + [2] * 4 and len(m.samples_ms) == len(m.cpu_samples_ms) == 12
        assert m.load_ms > 0 and m.first_ms > 0 and m.per_round == 4 and m.switch_warmup == 1
        assert m.cpus == sorted(os.sched_getaffinity(0))[-1:]  # the worker's pinning, which et-bench inherits
    assert a.runtime == native.RUNTIME and native.BINARY in a.runtime_versions
    assert b.runtime == "onnxruntime"
    assert a.peak_rss_mb is not None and 5 < a.peak_rss_mb < b.peak_rss_mb  # et-bench alone vs the Python worker
    assert isinstance(broken, MeasureError) and broken.stage == "load" and "et-bench: error" in str(broken)
