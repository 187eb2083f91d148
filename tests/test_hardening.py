"""The hostile review's breaks, one test each (49 of these 50 fail on the code before the fixes, 80f4c3a): run ids
that reach outside the reports folder, shell injection through make, manifests that point anywhere, a cache that served
corrupt files and deleted what it did not understand, stores that are not ours / read-only / on a full disk,
tracebacks instead of one line, values that cannot be honoured, two sweeps timing one device, and the smaller ones.

Full disks and read-only folders are real: a small tmpfs mounted for the test (root, as in CI), read-only by
remounting it; as another user the read-only cases use file modes and the full-disk cases skip with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from models.errors import ToolkitError

ROOT = Path(__file__).resolve().parent.parent
SMALL = "mobilenetv3_small_075"
IS_ROOT = os.geteuid() == 0


def cli(pkg: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", pkg, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The process failed with exactly one line on stderr containing every needle (and no traceback)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def tiny_fs(path: Path, size: str = "4m") -> None:
    """A real small filesystem at `path` (tmpfs), unmounted afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root to mount a small tmpfs (run the suite as root, as CI does)")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); install util-linux / run as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(path: Path, leave: int) -> Path:
    """Fill the filesystem of `path` until about `leave` bytes are free."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory) -> Path:
    import export

    out = tmp_path_factory.mktemp("hardening-artifacts")
    return export.export(SMALL, "onnx", 64, out=out).dir


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------------------- 1. run ids
@pytest.mark.parametrize("run_id", ["./../results", "../x", "a/b", "latest", ".hidden", "..", "x" * 65, "a b"])
def test_unsafe_run_ids_are_refused_where_they_enter(tmp_path, run_id):
    victim = tmp_path / "results"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    proc = cli("bench", "run", "--models", SMALL, "--formats", "onnx", "--res", "64", "--run-id", run_id,
               "--store", str(victim / "results.sqlite"), "--reports", str(tmp_path / "reports"))
    one_line(proc, "run id")
    assert (victim / "keep.txt").read_text() == "precious"
    for args in (["report", "--run", run_id], ["compare", run_id, "x"]):
        one_line(cli("bench", *args, "--store", str(victim / "results.sqlite")), "run id")


def _store_with_run(path: Path, run_id: str):
    from bench.store import Store

    store = Store.open(path)
    args = {"device": "host", "models": [SMALL], "formats": ["onnx"], "converters": [], "precisions": ["fp32"],
            "resolutions": ["64x64"], "threads": [1], "iterations": 10, "warmup": 0}
    store.add_run({"run_id": run_id, "created": "2026-01-01T00:00:00", "args_hash": "x", "args": args, "seed": 1,
                   "device": "host", "environment": {}, "cells_total": 0})
    return store


def test_a_stored_run_with_an_unsafe_id_cannot_delete_anything(tmp_path):
    from bench import report

    victim = tmp_path / "results"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    store = _store_with_run(tmp_path / "s.sqlite", "../results")  # as an older toolkit stored it
    with pytest.raises(ToolkitError, match="cannot name a report folder"):
        report.render(store, "../results", tmp_path / "reports")
    assert (victim / "keep.txt").read_text() == "precious"
    proc = cli("bench", "report", "--store", str(tmp_path / "s.sqlite"), "--reports", str(tmp_path / "reports"))
    one_line(proc, "cannot name a report folder")
    assert (victim / "keep.txt").read_text() == "precious"


def test_report_folder_that_is_not_ours_is_left_alone(tmp_path):
    from bench import report

    store = _store_with_run(tmp_path / "s.sqlite", "r1")
    reports = tmp_path / "reports"
    (reports / "r1").mkdir(parents=True)
    (reports / "r1" / "notes.txt").write_text("mine")
    with pytest.raises(ToolkitError, match="not a report's"):
        report.render(store, "r1", reports)
    assert (reports / "r1" / "notes.txt").read_text() == "mine"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.md").write_text("not a toolkit report")
    shutil.rmtree(reports / "r1")
    (reports / "r1").symlink_to(elsewhere)  # a link out of the reports folder
    with pytest.raises(ToolkitError):
        report.render(store, "r1", reports)
    assert (elsewhere / "report.md").read_text() == "not a toolkit report"
    shutil.rmtree(reports)
    path = report.render(store, "r1", reports)  # the normal case, twice (the second replaces our own folder)
    assert report.render(store, "r1", reports) == path and (reports / "latest" / "report.md").exists()


def test_reports_folder_that_is_a_file_or_read_only_is_one_line_before_measuring(tmp_path):
    plain = tmp_path / "plainfile"
    plain.write_text("x")
    args = ["run", "--models", SMALL, "--formats", "onnx", "--res", "64", "--store", str(tmp_path / "s.sqlite"),
            "--artifacts", str(tmp_path / "a")]
    one_line(cli("bench", *args, "--reports", str(plain)), "not a directory")
    ro = tmp_path / "ro"
    ro.mkdir()
    if IS_ROOT:
        with tiny_fs(ro):
            remount_ro(ro)
            one_line(cli("bench", *args, "--reports", str(ro / "reports")), "not writable")
    else:
        ro.chmod(0o500)
        one_line(cli("bench", *args, "--reports", str(ro / "reports")), "not writable")
    assert not (tmp_path / "a").exists(), "nothing may be exported before the report folder is known to work"


def test_full_reports_folder_is_one_line(tmp_path):
    from bench import report

    store = _store_with_run(tmp_path / "s.sqlite", "r1")
    with tiny_fs(tmp_path / "fs", "1m") as fs:
        fill(fs, 4096)
        with pytest.raises(ToolkitError, match="disk full at"):
            report.render(store, "r1", fs / "reports")
        if (fs / "reports").exists():
            assert not [p for p in (fs / "reports").iterdir() if p.name.startswith(".")], "temporary left behind"


# --------------------------------------------------------------------------------------------- 2. make
@pytest.mark.parametrize("payload", ["nosuch; touch {p} #", "`touch {p}`", "$(touch {p})", "$(shell touch {p})",
                                     "nosuch' ; touch {p}; '"])
def test_make_variables_cannot_inject_commands(tmp_path, payload):
    pwned = tmp_path / "pwned"
    value = payload.format(p=pwned)
    for target, var in (("export", "MODEL"), ("bench", "MODELS"), ("export", "RES")):
        proc = subprocess.run(["make", "--no-print-directory", target, f"{var}={value}", "TARGET=onnx", "RES=64"]
                              if var != "RES" else ["make", "--no-print-directory", target, f"RES={value}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0
        assert not pwned.exists(), f"make {target} {var}=... ran the injected command"


# --------------------------------------------------------------------------------------------- 3. manifests
@pytest.mark.parametrize("file_value,needle", [("../../../../etc/passwd", "must name a file inside"),
                                               (12, "must name a file inside"), (None, "must name a file inside")])
@pytest.mark.export
def test_manifest_file_must_stay_inside_its_directory(tmp_path, onnx_artifact, file_value, needle):
    art = copy_artifact(onnx_artifact, tmp_path / "art")
    m = json.loads((art / "manifest.json").read_text())
    if file_value is None:
        del m["file"]
    else:
        m["file"] = file_value
    (art / "manifest.json").write_text(json.dumps(m))
    one_line(cli("devices", "run", "host", str(art), "--iters", "2", "--warmup", "0"), needle)


@pytest.mark.export
def test_manifest_that_is_a_list_or_invalid_json(tmp_path, onnx_artifact):
    art = copy_artifact(onnx_artifact, tmp_path / "art")
    (art / "manifest.json").write_text("[1, 2]")
    one_line(cli("devices", "run", "host", str(art)), "invalid manifest", "JSON object")
    (art / "manifest.json").write_text("{not json")
    one_line(cli("devices", "run", "host", str(art)), "invalid manifest", "not valid JSON")


@pytest.mark.export
def test_manifest_cannot_time_another_models_file(tmp_path, onnx_artifact):
    import export

    other = export.export(SMALL, "onnx", 96, out=tmp_path / "o")  # another artifact's file, same format
    art = copy_artifact(onnx_artifact, tmp_path / "art")
    m = json.loads((art / "manifest.json").read_text())
    (art / m["file"]).unlink()
    shutil.copy(other.file, art / m["file"])
    one_line(cli("devices", "run", "host", str(art), "--iters", "2"), "re-export")
    m["file"] = other.file.name
    shutil.copy(other.file, art / other.file.name)
    (art / "manifest.json").write_text(json.dumps(m))
    one_line(cli("devices", "run", "host", str(art), "--iters", "2"), "re-export")


# --------------------------------------------------------------------------------------------- 4. the cache
@pytest.mark.export
def test_cache_verifies_the_file_and_reexports_a_corrupt_one(tmp_path, onnx_artifact, capsys):
    import export
    from export.core import verify_file

    out = tmp_path / "out"
    art = export.export(SMALL, "onnx", 64, out=out)
    good = art.file.read_bytes()
    with open(art.file, "r+b") as f:
        f.truncate(len(good) // 2)
    again = export.export(SMALL, "onnx", 64, out=out)
    assert not again.cached and len(again.file.read_bytes()) == len(good)
    verify_file(again.dir, again.manifest)
    assert "does not verify" in capsys.readouterr().err
    with open(again.file, "r+b") as f:  # same size, other bytes: only the hash can tell
        f.seek(len(good) // 2)
        f.write(b"\xff" * 64)
    third = export.export(SMALL, "onnx", 64, out=out)
    assert not third.cached
    verify_file(third.dir, third.manifest)
    assert export.export(SMALL, "onnx", 64, out=out).cached


@pytest.mark.export
def test_cache_never_deletes_what_it_does_not_understand(tmp_path):
    import export
    from export.core import FORMATS, artifact_dir

    out = tmp_path / "out"
    final = artifact_dir(out, SMALL, {}, (64, 64), FORMATS["onnx"], "torch-dynamo", "fp32")
    final.mkdir(parents=True)
    (final / "manifest.json").write_text("{broken")
    (final / "my-notes.txt").write_text("mine")
    with pytest.raises(ToolkitError, match="left untouched"):
        export.export(SMALL, "onnx", 64, out=out)
    assert (final / "my-notes.txt").read_text() == "mine"
    (final / "manifest.json").unlink()
    with pytest.raises(ToolkitError, match="left untouched"):
        export.export(SMALL, "onnx", 64, out=out)
    assert (final / "my-notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------- 5. stores
def test_another_programs_database_is_refused_untouched(tmp_path):
    db = tmp_path / "other.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE runs (id INTEGER, name TEXT); CREATE TABLE cells (x REAL);"
                       "PRAGMA user_version = 1;")
    conn.close()
    before = db.read_bytes()
    for args in (["list"], ["run", "--models", SMALL, "--formats", "onnx", "--res", "64", "--no-report",
                            "--artifacts", str(tmp_path / "a")]):
        one_line(cli("bench", *args, "--store", str(db)), "not a results store of this toolkit")
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    assert [r[1] for r in conn.execute("PRAGMA table_info(runs)")] == ["id", "name"]


def _real_store(path: Path, n_cells: int = 1) -> None:
    """A store with one run and `n_cells` ok cells, written through the toolkit's own Store."""

    store = _store_with_run(path, "r1")
    for i in range(n_cells):
        store.add_cell(_cell_row(i))
    store.close()


def _cell_row(i: int, samples: int = 10) -> dict:
    return {"run_id": "r1", "cell_key": f"k{i}", "model": SMALL, "overrides": "{}", "format": "onnx",
            "converter": "torch-dynamo", "precision": "fp32", "device": "host", "threads": 1, "height": 64,
            "width": 64, "median_ms": 1.0, "mean_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.1, "std_ms": 0.1,
            "min_ms": 0.9, "max_ms": 1.2, "cv": 0.1, "ci95_low_ms": 0.95, "ci95_high_ms": 1.05, "unstable": 0,
            "params": 2_041_872, "madds": 4_000_000, "iterations": samples, "warmup": 0, "status": "ok",
            "finished": f"2026-01-01T00:00:{i:02d}",
            "samples_ms": json.dumps([1.0] * samples)}


def test_a_read_only_store_can_be_listed_reported_and_compared(tmp_path):
    home = tmp_path / "ro"
    home.mkdir()
    ctx = tiny_fs(home) if IS_ROOT else contextlib.nullcontext(home)
    with ctx:
        _real_store(home / "s.sqlite")
        before = sorted(p.name for p in home.iterdir())
        if IS_ROOT:
            remount_ro(home)
        else:
            (home / "s.sqlite").chmod(0o444)
            home.chmod(0o555)
        store = ["--store", str(home / "s.sqlite")]
        proc = cli("bench", "list", *store)
        assert proc.returncode == 0 and "r1" in proc.stdout, proc.stderr
        proc = cli("bench", "report", "--run", "r1", *store, "--reports", str(tmp_path / "reports"))
        assert proc.returncode == 0, proc.stderr
        proc = cli("bench", "compare", "r1", "r1", *store)
        assert proc.returncode == 0 and "n=1" in proc.stdout, proc.stderr
        one_line(cli("bench", "run", "--models", SMALL, "--formats", "onnx", "--res", "64", *store), "read-only")
        assert sorted(p.name for p in home.iterdir()) == before
        if not IS_ROOT:
            home.chmod(0o755)


def test_a_full_disk_is_one_line_and_keeps_committed_cells(tmp_path):
    from bench.store import Store

    with tiny_fs(tmp_path / "fs", "1m") as fs:
        _real_store(fs / "s.sqlite", n_cells=2)
        store = Store.open(fs / "s.sqlite")  # a sweep under way when the disk fills up
        filler = fill(fs, 8192)
        stored = 2
        with pytest.raises(ToolkitError, match=f"disk full at {fs / 's.sqlite'}"):
            for i in range(2, 400):
                store.add_cell(_cell_row(i, samples=1500))
                stored += 1
        store.close()
        assert sorted(p.name for p in fs.iterdir()) == ["filler", "s.sqlite"], "-wal/-shm left behind"
        filler.unlink()
        store = Store.open(fs / "s.sqlite", readonly=True)
        assert len(store.cells("r1")) == stored
        store.close()


# --------------------------------------------------------------------------------------------- 6, 7. values
@pytest.mark.parametrize("args,needle", [
    (["--res", "9" * 5000], "bad resolution"),
    (["--models", "mobileformer_26m:tokens=1000000000000"], "takes 1 to 64"),
    (["--timeout", "nan"], "--timeout"), (["--export-timeout", "nan"], "--export-timeout"),
    (["--timeout", "inf"], "--timeout"), (["--seed", "99999999999999999999"], "--seed"),
    (["--threads", "999"], "cannot run 999 threads"), (["--iters", "1" * 30], "--iters"),
])
def test_bad_sweep_values_are_one_line(tmp_path, args, needle):
    base = {"--models": SMALL, "--formats": "onnx", "--res": "64"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    one_line(cli("bench", "run", *flat, "--store", str(tmp_path / "s.sqlite"), "--artifacts", str(tmp_path / "a"),
                 "--reports", str(tmp_path / "r")), needle)
    assert not (tmp_path / "a").exists()


def test_overrides_are_bounded_everywhere():
    one_line(cli("models", "info", "mobileformer_26m", "--set", "tokens=1000000000000"), "takes 1 to 64")
    one_line(cli("export", "--model", "mobileformer_26m", "--format", "onnx", "--set", "tokens=0"), "takes 1 to 64")
    one_line(cli("export", "--model", SMALL, "--format", "onnx", "--seed", "99999999999999999999"), "--seed")


@pytest.mark.export
@pytest.mark.parametrize("threads", ["999", "0", "-4"])
def test_devices_run_refuses_threads_it_cannot_honour(onnx_artifact, threads):
    one_line(cli("devices", "run", "host", str(onnx_artifact), "--threads", threads, "--iters", "2"), "threads")


@pytest.mark.parametrize("body,needle", [
    ("cpu = [1]", "unknown key 'cpu'"), ('cpus = "0,1"', "cpus must be a list"), ("cpus = [99]", "cpus [99]"),
    ("pin = 1", "pin must be true or false"), ("cpus = [true]", "cpus must be a list"),
])
def test_malformed_profiles_are_one_line_naming_the_key(tmp_path, body, needle):
    prof = tmp_path / "mine.toml"
    prof.write_text(f'[board]\nkind = "host"\n{body}\n')
    line = one_line(cli("devices", "describe", "board", "--profiles", str(prof)), needle)
    assert "[board]" in line and str(prof) in line
    line = one_line(cli("bench", "run", "--device", "board", "--profiles", str(prof), "--models", SMALL,
                        "--formats", "onnx", "--res", "64", "--store", str(tmp_path / "s.sqlite")), needle)


def test_profiles_file_adds_and_overrides(tmp_path):
    prof = tmp_path / "mine.toml"
    prof.write_text('[host]\nkind = "host"\ndescription = "my own host"\n[core1]\nkind = "host"\ncpus = [1]\n')
    proc = cli("devices", "list", "--profiles", str(prof))
    assert proc.returncode == 0 and "my own host" in proc.stdout and "core1" in proc.stdout
    assert "host-unpinned" in proc.stdout  # the shipped tables are still there


@pytest.mark.export
def test_measurement_records_the_cores_actually_used(tmp_path, onnx_artifact):
    import devices

    prof = tmp_path / "mine.toml"
    allowed = sorted(os.sched_getaffinity(0))
    prof.write_text(f'[one]\nkind = "host"\ncpus = [{allowed[0]}]\n')
    dev = devices.get("one", prof)
    try:
        m = dev.run(onnx_artifact, iterations=3, warmup=0, threads=1, timeout=120)
    finally:
        dev.close()
    assert m.cpus == [allowed[0]]


# --------------------------------------------------------------------------------------------- 8. one device, one timer
def _lock_holder(lock_dir: Path) -> str:
    p = lock_dir / "device-host.lock"
    return p.read_text() if p.exists() else ""


@pytest.mark.bench
def test_a_second_sweep_on_the_same_device_stops_or_waits(tmp_path, onnx_artifact):
    lock_dir = tmp_path / "locks"
    env = {"TOOLKIT_LOCK_DIR": str(lock_dir)}
    out_root = onnx_artifact.parent.parent.parent
    args = [sys.executable, "-m", "bench", "run", "--models", SMALL, "--formats", "onnx", "--res", "64",
            "--iters", "20000", "--warmup", "2", "--max-rounds", "10", "--store", str(tmp_path / "s.sqlite"),
            "--artifacts", str(out_root), "--reports", str(tmp_path / "r")]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env})
    deadline = time.monotonic() + 120
    while '"run ' not in _lock_holder(lock_dir) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert '"run ' in _lock_holder(lock_dir), first.communicate()
    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    if first.poll() is None:  # the normal case: the first is still timing
        line = one_line(second, "device host is being timed by run", "--wait")
        assert "pid" in line
    waited = subprocess.run([*args, "--wait"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "1 measured now" in out
    assert waited.returncode == 0 and "0 measured now" in waited.stdout, waited.stderr


def test_exports_wait_while_the_machine_is_timing(tmp_path):
    """A process times (holds the cores exclusively) for a moment; an export started meanwhile waits for it."""
    env = {**os.environ, "TOOLKIT_LOCK_DIR": str(tmp_path)}
    marker = tmp_path / "done-timing"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom pathlib import Path\nfrom export.hostlock import timing_cores\n"
                               "with timing_cores('run test-timer'):\n print('held', flush=True)\n"
                               f" time.sleep(2)\n Path({str(marker)!r}).write_text('x')\n"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said = []
    old = os.environ.get("TOOLKIT_LOCK_DIR")
    os.environ["TOOLKIT_LOCK_DIR"] = str(tmp_path)
    try:
        from export.hostlock import exporting

        with exporting(say=said.append):
            finished_first = marker.exists()
    finally:
        if old is None:
            os.environ.pop("TOOLKIT_LOCK_DIR")
        else:
            os.environ["TOOLKIT_LOCK_DIR"] = old
    holder.wait()
    assert finished_first, "the export ran while the machine was timing"
    assert said and "run test-timer" in said[0]


# --------------------------------------------------------------------------------------------- 9. smaller
def test_empty_format_list_is_an_error():
    one_line(cli("export", "--model", SMALL, "--format", ","), "names no format")


def test_inflating_checkpoint_is_refused_from_its_table_of_contents(tmp_path):
    import models

    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(300):  # 300 MB that pack into well under 1 MB
                f.write(block)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(ToolkitError, match="declares 314,572,800 bytes"):
        models.create("mobileformer_26m", checkpoint=bomb)
