"""An aarch64 board without hardware (devices/emulate.py), end to end: a Debian arm64 root under qemu-user behind its
own sshd, reached through the ssh kind with real keys; `devices check` and `uname -m`, a real `devices provision`
(wheels fetched here for aarch64, installed offline there), et-bench cross-compiled for aarch64 running .pte files
there, parity of ONNX, TFLite and ExecuTorch artifacts computed by the board's kernels, a sweep whose cells are
stored marked "emulated" and left out of the report's answer.

Cost: the board is started once per session (`arm_board`), which on a fresh machine builds the root (mmdebstrap:
3-13 minutes under load, 383 s in the last cold run, cached by its recipe's digest afterwards) and provisions it
(1-2.5 minutes under emulation); the whole file from a cold cache took 827 s (docs/devices.md).
The models are the smallest (MobileNetV3-S 0.75 at 64 px) and the sweep a few iterations: timing there measures the
emulator. The pure tests (profiles, the binfmt line, the emulated rows of a report, the parity page) need nothing.

The board needs root (a chroot, an overlay, mounts in a private namespace) and programs from apt: `need_program`
installs them as root or in CI; elsewhere the board's tests skip with one line (in CI they fail instead).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _system import need_program
from conftest import SMALL

from devices import emulate, wheels
from models.errors import ToolkitError

ROOT = Path(__file__).resolve().parent.parent
RES = 64


def devices_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devices", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------------------------- pure
def test_platform_tags_and_glibc():
    tags = wheels.platform_tags("arm64", wheels.parse_glibc("2.36"))
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_28_aarch64" in tags
    assert tags[-2:] == ["manylinux_2_36_aarch64", "manylinux2014_aarch64"]
    with pytest.raises(ToolkitError, match="cannot tell the board's glibc"):
        wheels.parse_glibc("")
    with pytest.raises(ToolkitError, match="no wheels are fetched for machine 'riscv64'"):
        wheels.platform_tags("riscv64", (2, 36))


def test_the_written_profile_is_an_emulated_native_ssh_board(tmp_path):
    import devices

    for name in ("client_ed25519", "known_hosts"):
        (tmp_path / name).write_text("x\n")
    r = emulate.recipe("arm64")
    prof = tmp_path / "p.toml"
    prof.write_text(emulate.profile_text("arm", r, "cortex-a76", 2222, tmp_path))
    dev = devices.get("arm", prof)  # constructed without connecting
    assert dev.kind == "ssh" and dev.profile.emulated and dev.profile.runner == "native"
    assert dev.profile.ssh.port == 2222 and dev.profile.ssh.user == "root"
    assert len(r.digest()) == 12 and r.digest() == emulate.recipe("arm64").digest()


@pytest.mark.parametrize("extra,needle", [('runner = "fast"', "runner must be one of python, native"),
                                          ('native_runner = "/x"', "native_runner is set but runner is 'python'"),
                                          ('emulated = "yes"', "emulated must be true or false")])
def test_new_ssh_profile_keys_are_checked(tmp_path, extra, needle):
    import devices

    p = tmp_path / "p.toml"
    p.write_text(f'[b]\nkind = "ssh"\nhost = "127.0.0.1"\n{extra}\n')
    with pytest.raises(ToolkitError, match=needle):
        devices.get("b", p)


def test_binfmt_without_root_is_one_line_saying_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(emulate, "BINFMT", tmp_path / "binfmt_misc")
    monkeypatch.setattr(emulate, "SYSTEMD_BINFMT", tmp_path)
    monkeypatch.setattr(emulate, "_is_root", lambda: False)
    (tmp_path / "qemu-aarch64.conf").write_text(":qemu-aarch64:M::\\x7f:\\xff:/usr/bin/qemu-aarch64-static:F\n")
    with pytest.raises(ToolkitError, match=r"sudo update-binfmts --enable qemu-aarch64") as err:
        emulate.ensure_binfmt(emulate.recipe("arm64"))
    assert "\n" not in str(err.value)
    (tmp_path / "binfmt_misc").mkdir()
    (tmp_path / "binfmt_misc" / "qemu-aarch64").write_text("enabled\ninterpreter /x\nflags: PO\n")
    with pytest.raises(ToolkitError, match="without the F flag"):
        emulate.ensure_binfmt(emulate.recipe("arm64"))


def test_emulate_faults_are_one_line():
    for args, needle in ((["emulate", "--stop", "no-such-board"], "no emulated board named 'no-such-board'"),
                         (["emulate", "riscv"], "no emulated board for architecture 'riscv'"),
                         (["emulate", "arm64", "--cpu", "pentium"], "unknown qemu CPU model 'pentium'")):
        r = devices_cli(*args, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def _parity_manifest(path: Path, precision: str, vs_abs: float) -> None:
    fig = {"max_abs": 0.01, "max_rel": 1e-3, "cosine": 0.9999, "top1": 1.0, "top5": 1.0, "n": 8, "max_logit": 10}
    vs = dict(fig, max_abs=vs_abs, max_rel=vs_abs / 10, cosine=1.0 if vs_abs == 0 else 0.99999)
    rec = {"verdict": "passed", "random": fig, "images": dict(fig, n=4),
           "device": {"name": "arm", "kind": "ssh", "machine": "aarch64", "emulated": "qemu-user",
                      "qemu_cpu": "cortex-a76", "hwcaps": ["fp", "asimd", "asimdhp"]},
           "host": {"machine": "x86_64", "verdict": "passed", "random": fig, "images": dict(fig, n=4)},
           "vs_host": {"random": vs, "images": dict(vs, n=4)}}
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"model": SMALL, "family": "mobilenetv3", "resolution": [64, 64],
                                                    "format": "onnx", "precision": precision,
                                                    "device_parity": {"arm": rec}}))


def test_the_parity_page_per_format_and_precision(tmp_path):
    from devices import parity_report

    _parity_manifest(tmp_path / "a" / "fp16", "fp16", 0.02)
    _parity_manifest(tmp_path / "a" / "fp32", "fp32", 0.0)
    out, n = parity_report.write(tmp_path / "a", tmp_path / "page.md", "test")
    text = out.read_text()
    assert n == 2 and text.startswith(parity_report.MARKER)
    assert text.index("| arm | onnx | fp32 |") < text.index("| arm | onnx | fp16 |")  # export's precision order
    assert "**onnx fp32** on arm (1 artifact(s), 1 passed): the outputs are bit-identical" in text
    assert "**onnx fp16** on arm (1 artifact(s), 1 passed): the outputs differ from this computer's by up to 2.0e-03" \
        in text
    assert "qemu cortex-a76" in text and "fp asimd asimdhp" in text and "yes (qemu-user)" in text
    from export.spec import PRECISIONS  # int8 as well since it merged: rows for fp32 and fp16 only here

    assert f"The precisions export makes: {', '.join(PRECISIONS)}; not checked on a device yet: int8." in text


def test_emulated_cells_are_left_out_of_the_answer_unless_asked():
    from test_report_analysis import RUN, pair_rows

    from bench import analysis

    rows = pair_rows([128, 160], [3.0, 4.0], [2.0, 3.0])
    for r in rows:
        r["device_state"] = {"emulated": "qemu-user"}
    a = analysis.analyse(RUN, rows)
    assert not a.pairs and not a.series and len(a.emulated) == 4 and all(r["emulated"] for r in a.rows)
    assert "4 cell(s) were timed on an emulated device" in analysis.no_pair_text(a)
    assert "--include-emulated" in analysis.no_pair_text(a)
    b = analysis.analyse(RUN, rows, include_emulated=True)
    assert len(b.pairs) == 1 and any("include 4 cell(s) timed on an emulated device" in s for s in analysis.answer(b))
    c = analysis.analyse(dict(RUN, environment={"emulated": "qemu-user"}), pair_rows([128], [3.0], [2.0]))
    assert not c.pairs and len(c.emulated) == 2  # the run's device says so: every cell of it is emulated


# --------------------------------------------------------------------------------------------- the cross build
@pytest.fixture(scope="session")
def et_bench_arm() -> Path:
    """et-bench cross-compiled for aarch64 against the aarch64 executorch wheel (fetched with pip, cached), built
    where `make native ARCH=aarch64` builds it: the toolkit's cache, which is where a native board's runner is looked
    for (a build elsewhere left a fresh CI machine's board without one: `provision` said NOT ready)."""
    from devices import native

    need_program("cmake", "cmake")
    need_program("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    need_program("qemu-aarch64-static", "qemu-user-static")
    return native.build(arch="aarch64")


@pytest.mark.export
def test_the_cross_build_is_an_aarch64_bundle(et_bench_arm):
    from devices import native

    head = et_bench_arm.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 0xB7  # EM_AARCH64
    libs = {p.name for p in (et_bench_arm.parent / "lib").iterdir()}
    assert {"libexecutorch.so", "libexecutorch_backend_xnnpack.so", "libexecutorch_threadpool.so"} <= libs
    dyn = subprocess.run(["aarch64-linux-gnu-readelf", "-d", str(et_bench_arm)], capture_output=True, text=True)
    assert "[$ORIGIN/lib]" in dyn.stdout and "libtorch" not in dyn.stdout and "libc10" not in dyn.stdout
    stamp = json.loads((et_bench_arm.parent.parent / "stamp.json").read_text())
    assert stamp["arch"] == "aarch64" and stamp["version"].startswith("et-bench 1 (executorch 1.5.1")
    mtime = et_bench_arm.stat().st_mtime_ns
    assert native.build(et_bench_arm.parent.parent, arch="aarch64") == et_bench_arm
    assert et_bench_arm.stat().st_mtime_ns == mtime  # current: not rebuilt


# --------------------------------------------------------------------------------------------- the board
def _need_board_programs() -> None:
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        line = "the emulated board needs root (chroot, overlay and mounts in a private namespace)"
        if os.environ.get("CI"):
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
    for prog, apt in (("mmdebstrap", "mmdebstrap"), ("arch-test", "arch-test"), ("ssh", "openssh-client"),
                      ("qemu-aarch64-static", "qemu-user-static"), ("update-binfmts", "binfmt-support")):
        need_program(prog, apt)


@pytest.fixture(scope="session")
def arm_board(et_bench_arm):
    """One emulated aarch64 board for the session: started (the root built if this machine has none), provisioned
    for real through `python -m devices provision`, stopped at the end."""
    _need_board_programs()
    name = f"test-arm-{os.getpid()}"
    rec = emulate.start("arm64", name, say=lambda _line: None)
    try:
        pv = devices_cli("provision", name, "--profiles", rec["profiles"], timeout=1800)
        assert pv.returncode == 0, pv.stdout[-2000:] + pv.stderr
        assert f"provision {name}: done in" in pv.stdout and f"{name}: ready" in pv.stdout, pv.stdout[-2000:]
        yield {**rec, "provision_stdout": pv.stdout}
    finally:
        emulate.stop(name, say=lambda _line: None)
        assert not Path(rec["state"]).exists() and not emulate._record(name).exists()
        assert "mdt-board" not in Path("/proc/self/mounts").read_text()


@pytest.mark.export
def test_the_board_is_aarch64_ready_and_provisioned(arm_board):
    from devices.remote import Ssh, SshKeys

    name, profiles = arm_board["name"], arm_board["profiles"]
    r = devices_cli("check", name, "--profiles", profiles)
    assert r.returncode == 0 and f"{name}: ready" in r.stdout, r.stdout + r.stderr
    assert "formats it can run: onnx, tflite, executorch (.pte through et-bench" in r.stdout
    assert "asimd" in r.stdout and "asimdhp" in r.stdout and "emulated: qemu-user" in r.stdout
    state = Path(arm_board["state"])
    ssh = Ssh(name, SshKeys(host="127.0.0.1", port=arm_board["port"], user="root",
                            identity_file=str(state / "client_ed25519"), known_hosts=str(state / "known_hosts")))
    try:
        assert ssh.run("uname -m", what="uname").strip() == "aarch64"
        assert ssh.run("printenv QEMU_CPU", what="env").strip() == emulate.DEFAULT_CPU
    finally:
        ssh.close()
    d = json.loads(devices_cli("describe", name, "--profiles", profiles).stdout)
    assert d["machine"] == "aarch64" and d["torch"] is None and d["python_path"].endswith("/venv/bin/python")
    assert d["packages"]["onnxruntime"] == "1.31.1" and d["packages"]["ai-edge-litert"] == "2.3.0"
    assert d["emulated"] and d["runner"] == "native" and d["qemu_cpu"] == emulate.DEFAULT_CPU
    assert "pushing 10 wheels" in arm_board["provision_stdout"]  # fetched here, installed there offline


@pytest.fixture(scope="session")
def small_artifacts(export_root, artifacts):
    """MobileNetV3-S 0.75 at 64 px: ONNX fp32 (the session's), TFLite fp32 and ExecuTorch fp16 (native FP16 on ARM)."""
    import export

    onnx = next(p.parent for p in artifacts.rglob("manifest.json") if SMALL in str(p) and f"{RES}x{RES}" in str(p))
    return [onnx, export.export(SMALL, "tflite", RES, out=export_root).dir,
            export.export(SMALL, "executorch", RES, precision="fp16", out=export_root).dir]


@pytest.mark.export
def test_parity_computed_by_the_boards_kernels(arm_board, small_artifacts, tmp_path):
    import shutil

    from devices import parity_report

    name, profiles = arm_board["name"], arm_board["profiles"]
    for src in small_artifacts:
        art = tmp_path / src.name
        shutil.copytree(src, art)
        before = json.loads((art / "manifest.json").read_text())["parity"]
        r = devices_cli("parity", name, str(art), "--profiles", profiles, timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"parity on {name}: passed" in r.stdout and f"{name} vs this computer" in r.stdout, r.stdout
        m = json.loads((art / "manifest.json").read_text())
        assert m["parity"] == before  # the artifact's own verdict (this computer's) is kept
        entry = m["device_parity"][name]
        assert entry["verdict"] == "passed" and entry["device"]["machine"] == "aarch64"
        assert entry["device"]["emulated"] and entry["device"]["qemu_cpu"] == emulate.DEFAULT_CPU
        assert entry["host"]["machine"] == os.uname().machine and set(entry["vs_host"]) == {"random", "images"}
        if m["format"] == "executorch":
            assert entry["device"]["runner"] == "native"
    out, n = parity_report.write(tmp_path, tmp_path / "page.md", "test")
    assert n == 3 and f"| {name} | executorch | fp16 |" in out.read_text()


@pytest.mark.export
@pytest.mark.bench
def test_a_sweep_on_the_board_is_stored_emulated_and_left_out(arm_board, small_artifacts, export_root, tmp_path):
    store = tmp_path / "results.sqlite"
    cmd = [sys.executable, "-m", "bench", "run", "--device", arm_board["name"], "--profiles", arm_board["profiles"],
           "--models", SMALL, "--formats", "executorch", "--precision", "fp16", "--res", str(RES),
           "--rounds", "2", "--per-round", "3", "--passes", "1", "--max-rounds", "2", "--warmup", "1",
           "--artifacts", str(export_root), "--reports", str(tmp_path / "reports"), "--store", str(store)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    rows = [dict(x) for x in conn.execute("SELECT * FROM cells")]
    conn.close()
    assert len(rows) == 1 and rows[0]["status"] == "ok", rows
    (cell,) = rows
    assert json.loads(cell["device_state"])["emulated"].startswith("qemu-user")
    versions = json.loads(cell["runtime_versions"])
    assert versions["executorch"].startswith("1.5.1") and "et-bench" in versions  # the native runner, no torch there
    assert len(json.loads(cell["samples_ms"])) == 6
    md = (tmp_path / "reports" / "latest" / "report.md").read_text()
    assert "timed on an emulated device" in md and "--include-emulated" in md


def test_a_native_board_without_its_runner_built_says_what_to_run(tmp_path, monkeypatch):
    import devices

    monkeypatch.setenv("VENV_CACHE", str(tmp_path))  # nothing built there
    p = tmp_path / "p.toml"
    p.write_text('[b]\nkind = "ssh"\nhost = "127.0.0.1"\nrunner = "native"\n')
    dev = devices.get("b", p)
    probe = {"machine": "aarch64", "formats": {"executorch": {"runtime": "executorch", "packages": ["executorch"]}},
             "packages": {}}
    assert "run `make native ARCH=aarch64`" in dev.format_problem("executorch", probe)
    assert "set native_runner to one" in dev.format_problem("executorch", dict(probe, machine=os.uname().machine))
    bundle = tmp_path / "mine" / "et-bench"
    bundle.parent.mkdir()
    bundle.write_text("#!/bin/sh\n")
    bundle.chmod(0o755)
    p.write_text(p.read_text() + f'native_runner = "{bundle}"\n')
    assert "is not a bundle (no lib/ beside it)" in devices.get("b", p).format_problem("executorch", probe)
    (bundle.parent / "lib").mkdir()
    assert devices.get("b", p).format_problem("executorch", probe) is None


@pytest.mark.export
def test_each_device_keeps_its_own_parity_entry(artifacts, tmp_path):
    """Two devices checking one artifact: both entries stay, and the artifact's own parity is untouched."""
    import shutil

    import devices
    from devices.verify import check_on_device

    src = next(p.parent for p in artifacts.rglob("manifest.json") if SMALL in str(p) and f"{RES}x{RES}" in str(p))
    art = tmp_path / "art"
    shutil.copytree(src, art)
    before = json.loads((art / "manifest.json").read_text())
    for name in ("host", "host-unpinned"):
        dev = devices.get(name)
        try:
            assert check_on_device(dev, art)["verdict"] == "passed"
        finally:
            dev.close()
    after = json.loads((art / "manifest.json").read_text())
    assert sorted(after["device_parity"]) == ["host", "host-unpinned"]
    assert {k: v for k, v in after.items() if k != "device_parity"} == before


def test_the_parity_page_gives_an_int8_check_in_output_steps(tmp_path):
    """A device's int8 record (held to the same file here, devices/verify.py) reaches the page in output steps."""
    from devices import parity_report

    figures = {"max_abs": 0.5, "max_rel": 0.2, "cosine": 0.97, "top1": 0.9, "top5": 1.0, "n": 8}
    rec = {"verdict": "passed", "device": {"name": "arm64", "machine": "aarch64"}, "random": figures,
           "host": {"machine": "x86_64", "random": figures}, "vs_host": {"random": figures},
           "quantized": {"reference": "the same file on this computer (x86_64)", "step": 0.01,
                         "random": {**figures, "p50_steps": 3.0, "max_steps": 28.0}}}
    d = tmp_path / "a"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"model": "m", "format": "onnx", "precision": "int8",
                                                 "resolution": [96, 96], "device_parity": {"arm64": rec}}))
    out, n = parity_report.write(tmp_path, tmp_path / "page.md", "cmd")
    assert n == 1
    assert "the median is at worst 3 and the largest difference 28 steps" in Path(out).read_text()
