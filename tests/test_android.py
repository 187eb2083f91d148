"""The android kind: profile validation, the real Debian adb client with no phone attached, and the whole android
code path end to end through tests/standin_adb.py, the STAND-IN for adb with a phone attached (the only stand-in in
the suite: it replaces the phone, nothing that runs here). Through it, the native ExecuTorch runner built here
(devices/native/) is pushed, run under real taskset with the big-core mask, parsed and stored; the stand-in can
make the phone vanish mid-sweep.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _system import need_program
from conftest import MF, SMALL, wait_for_first_pass

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "standin_adb.py"
SERIAL = "standin-phone"
RES = (96, 128)  # as tests/test_native.py and tests/test_export_executorch_coreml.py


def devices_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devices", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write_profile(path: Path, name: str = "phone", **keys: object) -> Path:
    with open(path, "a") as f:
        f.write(f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()) + "\n")
    return path


def test_android_profiles_are_checked(tmp_path):
    import devices
    from models.errors import ToolkitError

    prog = tmp_path / "benchmark_model"
    prog.write_text("#!/bin/sh\n")  # pushed to the phone, never run here (an empty file is refused)
    for keys, expect in [({}, "missing key 'serial'"), ({"serial": "a b"}, "is not an adb serial"),
                         ({"serial": "x", "cores": "little"}, "cores must be"),
                         ({"serial": "x", "delegate": "npu"}, "delegate must be one of"),
                         ({"serial": "x", "benchmark_model": str(tmp_path / "nope")}, "does not exist on this comp"),
                         ({"serial": "x", "cooldown_c": "hot"}, "cooldown_c must be a number"),
                         ({"serial": "x", "workdir": "rel"}, "workdir must be an absolute path")]:
        p = write_profile(tmp_path / f"{len(list(tmp_path.iterdir()))}.toml", kind="android", **keys)
        with pytest.raises(ToolkitError, match=expect):
            devices.get("phone", p)
    p = write_profile(tmp_path / "ok.toml", kind="android", serial="R5CT1234", benchmark_model=str(prog))
    dev = devices.get("phone", p)
    assert dev.can_run("tflite") is None
    assert dev.can_run("onnx") == "no onnxruntime_perf_test in the profile"
    assert dev.can_run("executorch") == "no native_runner or executor_runner in the profile"
    cmd = dev.command("benchmark_model", "/p/bm", "/p/m.tflite", threads=2, warmup=3, iters=50)
    assert cmd[:6] == ["/p/bm", "--graph=/p/m.tflite", "--num_threads=2", "--num_runs=50", "--warmup_runs=3",
                       "--min_secs=0"] and "--warmup_min_secs=0" in cmd
    assert dev.command("onnxruntime_perf_test", "/p/pt", "/p/m.onnx", threads=1, warmup=1, iters=20)[1:5] == \
        ["-m", "times", "-r", "20"]
    assert dev.command("executor_runner", "/p/er", "/p/m.pte", threads=4, warmup=5, iters=20)[2] == \
        "--num_executions=25"


def test_real_adb_with_no_phone_is_one_line_fast(tmp_path):
    adb = need_program("adb", "adb")
    p = write_profile(tmp_path / "p.toml", kind="android", serial="NOPHONE123", adb=adb)
    t0 = time.monotonic()
    try:
        r = devices_cli("check", "phone", "--profiles", str(p), timeout=60)
    finally:
        subprocess.run([adb, "kill-server"], capture_output=True, timeout=30)
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("problem:")]
    assert r.returncode == 1 and len(problems) == 1, (r.stdout, r.stderr)
    assert "NOPHONE123" in problems[0] and ("not found" in problems[0] or "no devices" in problems[0])
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 45


# --------------------------------------------------------------------------------------------- the stand-in phone
@pytest.fixture(scope="module")
def runner():
    need_program("cmake", "cmake")
    need_program("c++", "g++")
    from devices import native

    return native.build()


@pytest.fixture(scope="module")
def pte(export_root) -> tuple[Path, list[str]]:
    """Two small .pte files at 96x128 in the session's shared artifacts folder (Mobile-Former-26M's is a cache hit:
    the export and native tests make it): (that folder, their directories)."""
    import export

    return export_root, [str(export.export(m, "executorch", RES, out=export_root).dir) for m in (SMALL, MF)]


@pytest.fixture
def phone(tmp_path, runner):
    from standin_adb import make_phone

    root = tmp_path / "phone"
    make_phone(root, capacities={0: 512, 1: 1024})
    env = {"STANDIN_ADB_ROOT": str(root), "STANDIN_ADB_SERIAL": SERIAL}
    os.environ.update(env)
    profiles = write_profile(tmp_path / "p.toml", kind="android", serial=SERIAL, adb=str(STANDIN),
                             native_runner=str(runner), cooldown_c=45, cooldown_timeout_s=5,
                             description="STAND-IN phone (tests/standin_adb.py): programs run on this machine")
    yield root, profiles, env
    for k in env:
        os.environ.pop(k, None)


def test_check_and_describe_through_the_standin(phone):
    root, profiles, env = phone
    r = devices_cli("check", "phone", "--profiles", str(profiles), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Stand-in Phone" in r.stdout and "big cores by cpu_capacity: mask 2" in r.stdout
    assert "formats it can run: executorch" in r.stdout and "CPU 38.0 C" in r.stdout
    d = json.loads(devices_cli("describe", "phone", "--profiles", str(profiles), env=env).stdout)
    assert d["soc"] == "StandIn SI-1" and d["abi"] == "x86_64" and d["sdk"] == "34" and d["mask"] == "2"
    calls = (root / "calls.log").read_text().splitlines()
    assert all(c.startswith(f"-s {SERIAL} ") for c in calls)


@pytest.mark.bench
def test_a_group_through_the_android_path(phone, pte):
    import devices

    root, profiles, _ = phone
    arts = pte[1]
    (root / "temp_c").write_text("50.0")  # too hot: the cool-down waits (up to its 5 s timeout) and says so
    dev = devices.get("phone", profiles)
    try:
        res = dev.run_group(arts, rounds=2, per_round=3, warmup=2, switch_warmup=1, threads=1, timeout=120, seed=3)
    finally:
        dev.close()
    for m in res:
        assert not isinstance(m, Exception), m
        assert len(m.samples_ms) == 6 and sorted(set(m.rounds)) == [0, 1] and m.raw_samples
        assert len(m.cpu_samples_ms) == 6 and m.load_ms > 0 and m.first_ms > 0
        st = m.device_state
        assert st["mask"] == "2" and st["temperature_before_c"] == 50.0 and st["cooldown_waits_s"][0] >= 4
        assert "native" in m.runtime
    calls = (root / "calls.log").read_text()
    assert "taskset 2 " in calls and "--warmup 2 --iters 3" in calls and "--warmup 1 --iters 3" in calls
    pushes = calls.count(" push ")
    assert pushes == 3  # the runner and two models, content-addressed
    assert not list((root / "data/local/tmp/mobile-deploy-toolkit/runs").iterdir())  # run folder removed
    dev = devices.get("phone", profiles)
    (root / "temp_c").write_text("30.0")
    try:
        dev.run_group(arts[:1], rounds=1, per_round=2, warmup=0, switch_warmup=0, threads=1, timeout=120, seed=4)
    finally:
        dev.close()
    assert (root / "calls.log").read_text().count(" push ") == pushes  # a second session pushes nothing


@pytest.mark.bench
def test_sweep_on_the_phone_survives_it_vanishing(phone, pte, tmp_path):
    root, profiles, env = phone
    store = tmp_path / "results.sqlite"
    args = [sys.executable, "-m", "bench", "run", "--device", "phone", "--profiles", str(profiles), "--models",
            f"{SMALL},{MF}", "--formats", "executorch,onnx", "--res", "96x128", "--threads", "1,2", "--rounds", "4",
            "--per-round", "20", "--passes", "2", "--max-rounds", "4", "--warmup", "2", "--artifacts", str(pte[0]),
            "--store", str(store), "--reports", str(tmp_path / "reports")]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    wait_for_first_pass(proc, store)
    (root / "gone").write_text("")  # the cable is pulled
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM cells")]
    conn.close()
    not_run = [r for r in rows if r["status"].startswith("not run")]
    assert len(not_run) == 4 and "no onnxruntime_perf_test in the profile" in not_run[0]["status"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["stage"] == "transport" for r in failed), out + err
    assert "not found" in failed[0]["error"]
    # two groups here: each fails once (below the 3 failures in a row after which a sweep stops trying a device,
    # which tests/test_ssh.py shows with four groups)
    assert proc.returncode == 0 and "stopped answering" not in out, out + err
    (root / "gone").unlink()  # plugged back in: the same command (with --retry-failed) completes the run
    r = subprocess.run(args + ["--retry-failed"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    rows = [dict(x) for x in conn.execute("SELECT * FROM cells")]
    conn.close()
    ok = [x for x in rows if x["status"] == "ok"]
    assert len(ok) == 4 and len({x["cell_key"] for x in rows}) == len(rows) == 8
    for x in ok:
        rounds = json.loads(x["rounds"])
        assert sorted(set(rounds)) == [0, 1, 2, 3] and all(rounds.count(k) == 20 for k in range(4))
        state = json.loads(x["device_state"])
        assert state["mask"] == "2" and "temperature_after_c" in state
        assert len(state["cooldown_waits_s"]) == 4  # every round's wait, over both passes (2 rounds each)
