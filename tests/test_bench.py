"""bench/ and devices/: statistics on hand-computed samples, and real sweeps in subprocesses (resume after kill -9,
two concurrent writers, a failing cell, a hung runtime, the report, a corrupt store).

The sweeps use the smallest models at 64 and 96 px in ONNX; their artifacts are exported once per session into a
temporary directory (the only slow part, about 25 s each), after which every sweep finds them cached.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import stats

ROOT = Path(__file__).resolve().parent.parent
from conftest import MF, RES, SMALL  # noqa: E402 - the session's small ONNX artifacts: the `artifacts` fixture


# --------------------------------------------------------------------------------------------- statistics
def test_summary_hand_computed():
    s = stats.summarize([1, 2, 3, 4, 5])
    assert s.n == 5 and s.mean == 3 and s.median == 3 and s.min == 1 and s.max == 5
    assert s.std == pytest.approx(1.5811388, rel=1e-6)  # sqrt(10 / 4)
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)  # linear: 1 + 0.1 * 4, 1 + 0.9 * 4
    assert s.cv == pytest.approx(1.5811388 / 3, rel=1e-6)
    half = 2.7764451 * 1.5811388 / 5 ** 0.5  # t(0.975, 4) = 2.7764451
    assert s.ci95_low == pytest.approx(3 - half, rel=1e-6) and s.ci95_high == pytest.approx(3 + half, rel=1e-6)
    assert s.unstable  # cv 0.53


def test_summary_constant_and_two_samples():
    s = stats.summarize([10.0] * 4)
    assert (s.std, s.cv, s.ci95_low, s.ci95_high, s.unstable) == (0, 0, 10, 10, False)
    s = stats.summarize([2.0, 4.0])  # mean 3, std sqrt(2), t(0.975, 1) = 12.7062047
    assert s.ci95_high - s.mean == pytest.approx(12.7062047 * 2 ** 0.5 / 2 ** 0.5, rel=1e-6)
    assert stats.summarize([100, 101, 99, 100]).unstable is False
    with pytest.raises(ValueError):
        stats.summarize([1.0])


def test_contention_makes_a_steady_cell_unstable():
    wall, cpu = [10.0, 10.2, 9.8, 10.0], [6.6, 6.7, 6.6, 6.7]  # steady, but a neighbour had the core half the time
    s = stats.summarize(wall, cpu)
    assert s.cv < 0.02 and s.cpu_median == pytest.approx(6.65) and s.contention == pytest.approx(10 / 6.65 - 1)
    assert s.unstable
    assert not stats.summarize(wall, [9.9, 9.9, 9.9, 9.9]).unstable  # 1% above CPU time: fine
    s = stats.summarize(wall, cpu, threads=2)  # with several threads CPU time is not a latency: no contention test
    assert s.contention is None and not s.unstable


def test_crossings_interpolate_linearly():
    assert stats.crossings([100, 200, 300], [1.5, 1.1, 0.7]) == [pytest.approx(225.0)]
    assert stats.crossings([100, 200, 300], [1.5, 1.0, 0.5]) == [200.0]  # touches 1 and goes through: once
    assert stats.crossings([100, 200], [1.2, 1.1]) == []
    assert stats.crossings([100, 200, 300], [0.8, 1.2, 0.9]) == [pytest.approx(150), pytest.approx(266.6667)]


def test_ratio_curve_intervals_and_crossover():
    c = stats.ratio_curve([128, 256], [[2.0] * 10, [4.0] * 10], [[1.0] * 10, [2.0] * 10])
    assert c.ratios == [2.0, 2.0] and c.points[0].low == 2.0 and c.points[0].high == 2.0
    assert c.crossings == [] and c.crossing_share == 0.0
    c = stats.ratio_curve([100, 200], [[1.2] * 9, [0.8] * 9], [[1.0] * 9, [1.0] * 9])
    assert c.crossings == [pytest.approx(150)] and c.crossing_low == pytest.approx(150)
    assert c.crossing_share == 1.0
    noisy = stats.ratio_curve([100], [[1.0, 1.1, 0.9, 1.05, 0.95] * 4], [[1.0] * 20])
    p = noisy.points[0]
    assert p.low <= p.ratio <= p.high and p.low < p.high
    again = stats.ratio_curve([100], [[1.0, 1.1, 0.9, 1.05, 0.95] * 4], [[1.0] * 20])
    assert again == noisy  # seeded: a re-rendered report is identical


def test_spread():
    s = stats.spread([1.0, 1.02, 0.9])
    assert s["n"] == 3 and s["median_abs_dev"] == pytest.approx(0.02) and s["max_abs_dev"] == pytest.approx(0.1)
    assert s["within_5pct"] == pytest.approx(2 / 3)


def test_bad_sweep_arguments():
    from bench import sweep
    from models.errors import ToolkitError

    ok = dict(device="host", models_arg=SMALL, formats="onnx", res="64", iters=10, warmup=1)
    a = sweep.parse_args(**ok)
    assert a == sweep.parse_args(**{**ok, "models_arg": f" {SMALL} ", "res": "64,64"})  # same run id
    assert len(a.cells()) == 1
    for bad, msg in [({"models_arg": "nope"}, "unknown model"), ({"formats": "onnx,pdf"}, "unknown format"),
                     ({"res": "16"}, "cannot take"), ({"converter": "onnx2tf"}, "no requested format"),
                     ({"iters": 1}, "at least 2"), ({"models_arg": f"{SMALL}:tokens=3"}, "no override"),
                     ({"precision": "int4"}, "unknown precision")]:
        with pytest.raises(ToolkitError, match=msg):
            sweep.parse_args(**{**ok, **bad})
    cells = sweep.parse_args(**{**ok, "formats": "tflite", "converter": "litert-torch,onnx2tf"}).cells()
    assert sorted(c.converter for c in cells) == ["litert-torch", "onnx2tf"]


# --------------------------------------------------------------------------------------------- real sweeps
def bench(*args: str, tmp: Path, artifacts: Path, wait: bool = True, timeout: float = 300):
    cmd = [sys.executable, "-m", "bench", *args]
    if args[0] == "run":
        cmd += ["--artifacts", str(artifacts), "--reports", str(tmp / "reports")]
    if args[0] in ("run", "list", "report", "compare") and "--store" not in args:
        cmd += ["--store", str(tmp / "results.sqlite")]
    if args[0] == "report":
        cmd += ["--reports", str(tmp / "reports")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def cells(store: Path, run_id: str | None = None) -> list[dict]:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    q = "SELECT * FROM cells" + (" WHERE run_id = ?" if run_id else "")
    rows = [dict(r) for r in conn.execute(q, (run_id,) if run_id else ())]
    conn.close()
    return rows


def run_ids(store: Path) -> list[str]:
    conn = sqlite3.connect(store)
    ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY rowid")]
    conn.close()
    return ids


def passes_stored(store: Path) -> int:
    conn = sqlite3.connect(store)
    try:
        return conn.execute("SELECT COUNT(*) FROM passes").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.bench
def test_resume_after_kill_9(tmp_path, artifacts):
    args = ["run", "--models", SMALL, "--formats", "onnx", "--res", "64,96", "--threads", "1,2", "--iters", "1500",
            "--warmup", "5", "--max-rounds", "10"]
    proc = bench(*args, tmp=tmp_path, artifacts=artifacts, wait=False)
    store = tmp_path / "results.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if store.exists() and passes_stored(store):
                break
        except sqlite3.OperationalError:  # the schema is not there yet
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored_before = passes_stored(store)
    assert 1 <= stored_before < 4 * 5 and not cells(store), "the sweep should have been killed in its first passes"
    rc, out, err = bench(*args, tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, err
    assert "resuming run" in out and "4 to do" in out
    rows = cells(store)
    assert len(rows) == 4 and len({r["cell_key"] for r in rows}) == 4
    for r in rows:  # every round exactly once: the stored passes were kept, not timed again
        rounds = json.loads(r["rounds"])
        assert r["status"] == "ok" and len(json.loads(r["samples_ms"])) == 1500
        assert sorted(set(rounds)) == list(range(10)) and all(rounds.count(k) == 150 for k in range(10))
    assert passes_stored(store) == 4 * 5
    assert len(run_ids(store)) == 1
    rc, out, err = bench(*args, tmp=tmp_path, artifacts=artifacts)  # finished: a no-op that re-renders
    assert rc == 0 and "0 to do" in out and "0 measured now" in out and len(cells(store)) == 4
    assert (tmp_path / "reports" / "latest" / "report.md").exists()


@pytest.mark.bench
def test_two_concurrent_writers(tmp_path, artifacts):
    a = ["run", "--models", SMALL, "--formats", "onnx", "--res", "64,96", "--iters", "300", "--warmup", "2",
         "--max-rounds", "10"]
    b = [x if x != "300" else "310" for x in a]  # other arguments: another run
    # both time the same device: the second waits for the first (--wait) instead of spoiling its timing
    procs = [bench(*x, "--wait", tmp=tmp_path, artifacts=artifacts, wait=False) for x in (a, b)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ids = run_ids(tmp_path / "results.sqlite")
    assert len(ids) == 2
    for rid in ids:
        rows = cells(tmp_path / "results.sqlite", rid)
        assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)


@pytest.mark.bench
def test_failing_cell_does_not_stop_the_sweep(tmp_path, artifacts):
    import export

    arts = tmp_path / "artifacts"
    shutil.copytree(artifacts / SMALL, arts / SMALL)
    export.core.code_hash.cache_clear()  # the cache key covers export/'s code: match what the sweep will compute
    export.export(SMALL, "onnx", 96, out=arts)
    broken = next((arts / SMALL / "96x96").rglob("*.onnx"))
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated: load must fail
    # as if the converter itself had written the broken file: the manifest's size and hash describe it, so the
    # cache serves it (a file that does not match its manifest would be re-exported instead)
    manifest = json.loads((broken.parent / "manifest.json").read_text())
    manifest.update(file_bytes=1000, file_sha256=export.core.file_sha256(broken))
    (broken.parent / "manifest.json").write_text(json.dumps(manifest))
    rc, out, err = bench("run", "--models", SMALL, "--formats", "onnx,coreml", "--res", "64,96", "--iters", "20",
                         "--warmup", "1", tmp=tmp_path, artifacts=arts)
    assert rc == 0, err
    rows = {(r["height"], r["format"]): r for r in cells(tmp_path / "results.sqlite")}
    assert rows[(64, "onnx")]["status"] == "ok"
    bad = rows[(96, "onnx")]
    assert bad["status"] == "failed" and bad["stage"] == "load" and broken.name in bad["error"]
    for h in RES:  # Core ML cannot run on this Linux host: stored as not run, never exported, its size known
        cm = rows[(h, "coreml")]
        assert cm["status"] == f"not run: {export.runs_here('coreml')}" == "not run: needs macOS", cm["status"]
        assert cm["artifact"] is None and cm["stage"] is None and cm["samples_ms"] is None
        assert cm["madds"] == rows[(h, "onnx")]["madds"] and cm["madds"] > 0
    assert "failures:" in out and broken.name in out
    report = (tmp_path / "reports" / "latest" / "report.md").read_text()
    assert "## Failures" in report and broken.name in report
    assert "- coreml: not run: needs macOS (2 cells)" in report


@pytest.mark.bench
def test_hung_runtime_is_killed_and_replaced(artifacts):
    import devices
    from devices import MeasureError

    art = artifacts / SMALL / "64x64" / "onnx-fp32"
    dev = devices.get("host")
    try:
        with pytest.raises(MeasureError) as exc:
            dev.run(art, iterations=10_000_000, warmup=0, threads=1, timeout=3)
        assert exc.value.stage == "timeout"
        m = dev.run(art, iterations=20, warmup=2, threads=1, timeout=60)
        assert len(m.samples_ms) == 20 and m.load_ms > 0 and m.first_ms > 0 and m.overhead_us < 100
        assert len(m.cpu_samples_ms) == 20 and m.rounds == [0] * 20 and m.cpus == sorted(os.sched_getaffinity(0))[-1:]
    finally:
        dev.close()


@pytest.mark.bench
def test_the_host_times_a_group_interleaved(artifacts, tmp_path):
    import devices
    from devices.base import MeasureError

    good = [artifacts / m / "64x64" / "onnx-fp32" for m in (SMALL, MF)]
    bad = tmp_path / "bad"
    shutil.copytree(good[0], bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / manifest["file"]).write_bytes(b"not an onnx file")
    dev = devices.get("host")
    try:
        out = dev.run_group([good[0], bad, good[1]], rounds=3, per_round=4, warmup=1, switch_warmup=1, threads=1,
                            timeout=120, seed=5)
    finally:
        dev.close()
    a, broken, b = out
    assert isinstance(broken, MeasureError) and broken.stage == "load"  # alone: the others are measured
    for m in (a, b):
        assert m.rounds == [0] * 4 + [1] * 4 + [2] * 4 and len(m.samples_ms) == len(m.cpu_samples_ms) == 12
        assert m.per_round == 4 and m.switch_warmup == 1 and m.load_ms > 0 and m.first_ms > 0
    assert sum(a.samples_ms) < sum(b.samples_ms)  # MobileNetV3-S is the faster of the two
    if a.peak_rss_mb is not None:
        assert 50 < a.peak_rss_mb < b.peak_rss_mb + 2000


@pytest.mark.bench
def test_report_from_a_tiny_sweep(tmp_path, artifacts):
    args = ["run", "--models", f"{SMALL},{MF}", "--formats", "onnx", "--res", "64,96", "--iters", "20", "--warmup",
            "2", "--max-rounds", "10"]
    rc, out, err = bench(*args, tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, err
    rid = run_ids(tmp_path / "results.sqlite")[0]
    d = tmp_path / "reports" / rid
    assert f"report: {d / 'report.md'}" in out
    for name in ("results.csv", "ratios.csv", "report.md", "report.html", "latency.png", "ratio.png",
                 "crossover.png", "throughput.png"):
        assert (d / name).stat().st_size > 0, name
    for png in d.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png.name  # a real, non-blank plot
    header = (d / "results.csv").read_text().splitlines()[0].split(",")
    for col in ("model", "format", "height", "width", "iterations", "mean_ms", "median_ms", "p90_ms", "std_ms",
                "ci95_low_ms", "ci95_high_ms", "madds", "status"):
        assert col in header
    assert len((d / "results.csv").read_text().splitlines()) == 5
    md = (d / "report.md").read_text()
    assert "## The answer" in md and f"{MF} vs {SMALL}" in md and "Harness overhead" in md
    # the console prints the answer's points as report.md has them, markup dropped
    section = md.partition("## The answer")[2].split("\n## ", 1)[0]
    answer = [ln.replace("**", "") for ln in section.splitlines() if ln.startswith("- ")]
    assert answer[0].startswith(f"- On onnx, {MF} vs {SMALL}: Mobile-Former is ")
    assert "\n".join(answer) + f"\nreport: {d / 'report.md'}" in out
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and 'src="latency.png"' not in html
    assert (tmp_path / "reports" / "latest" / "report.html").exists()

    rc, out, err = bench(*args, "--new", tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, err
    ids = run_ids(tmp_path / "results.sqlite")
    assert len(ids) == 2 and ids[1] == f"{ids[0]}-2"
    rc, out, err = bench("compare", ids[0], ids[1], tmp=tmp_path, artifacts=artifacts)
    assert rc == 0 and "all cells: n=4" in out, err
    assert "slowdown ratios: n=2" in out and "inside A's 95% interval" in out  # MF / MNv3-S at 64 and 96
    for col in ("n_rounds", "round_cv", "session"):
        assert col in header
    assert "Machine noise during this run" in md and "interleaved rounds of 2" in md
    rc, out, err = bench("list", tmp=tmp_path, artifacts=artifacts)
    assert rc == 0 and ids[0] in out and "4/4" in out
    rc, out, err = bench("report", "--run", ids[0], tmp=tmp_path, artifacts=artifacts)
    assert rc == 0 and str(tmp_path / "reports" / ids[0]) in out
    assert out.startswith("\n".join(answer) + f"\nreport: {d / 'report.md'}"), out  # the same run, the same answer
    assert os.path.realpath(tmp_path / "reports" / "latest") == str(tmp_path / "reports" / ids[0])


def test_corrupt_store_is_reported_and_kept(tmp_path):
    store = tmp_path / "results.sqlite"
    junk = b"not a database at all\n" * 200
    store.write_bytes(junk)
    for args in (["list"], ["run", "--models", SMALL, "--formats", "onnx", "--res", "64", "--iters", "5"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *args, "--store", str(store)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench: error: ") and str(store) in lines[0]
        assert "corrupt" in lines[0], proc.stderr
    assert store.read_bytes() == junk


def test_help_answers():
    for args in (["--help"], ["run", "--help"], ["report", "--help"], ["compare", "--help"], ["list", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and "usage: python -m bench" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "devices", "list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.splitlines()[1].startswith("host")
