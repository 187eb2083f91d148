"""`bench run --executor ray` on a REAL local Ray cluster: a head and a second node started with `ray start` on this
machine, 1 CPU each, the second advertising the resource `device:host`. A small sweep through it gives the cells a
local sweep gives (same keys, same non-null columns); its exports ran on both nodes, its timing only on the device's
node. The device's node is killed (its raylet, SIGKILL) mid-timing: the group it was timing is stored failed with
stage transport naming the node, and once a node holding the device is back, the same command with --retry-failed
completes the run, every round of every cell stored exactly once.

The cluster lives in a temporary folder and on ports of its own; every process of it is killed by pid at the end
(never `ray stop`, which would stop any other Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import MF, SMALL, wait_for_first_pass
from test_bench import cells as rows

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"
DEVICE_NODE = {"device:host": 1}
# 2 models x 1 format x 2 resolutions = 2 groups of 2 cells; 10 passes of one round each, so the kill lands mid-way
SWEEP = ["run", "--models", f"{SMALL},{MF}", "--formats", "onnx", "--res", "64,96", "--rounds", "10",
         "--per-round", "4", "--passes", "10", "--max-rounds", "10", "--warmup", "2", "--switch-warmup", "1",
         "--seed", "7", "--no-report"]
NODE_COLUMNS = {"export_node", "timing_node"}  # only the Ray executor records them
VOLATILE = {"finished", "seq"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports(n: int) -> list[int]:
    out: set[int] = set()
    while len(out) < n:
        out.add(_free_port())
    return sorted(out)


def _worker_range() -> tuple[int, int]:
    """A range of 40 free ports for a node's worker processes."""
    for _ in range(50):
        lo = _free_port() // 100 * 100
        if lo + 40 < 65000 and all(_is_free(p) for p in range(lo, lo + 40)):
            return lo, lo + 39
    raise RuntimeError("no 40 free ports in a row")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Cluster:
    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _start(self, *extra: str, resources: dict | None = None) -> tuple[str, int]:
        manager, objects, agent, grpc, metrics, rt_env = _ports(6)
        lo, hi = _worker_range()
        cmd = [str(RAY), "start", "--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
               "--disable-usage-stats", "--temp-dir", str(self.tmp), "--resources", json.dumps(resources or {}),
               "--node-manager-port", str(manager), "--object-manager-port", str(objects),
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(rt_env),
               "--min-worker-port", str(lo), "--max-worker-port", str(hi), *extra]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout, manager

    def start_head(self) -> None:
        self._start("--head", "--port", str(self.port), "--include-dashboard", "false",
                    "--ray-client-server-port", str(_free_port()),
                    "--system-config", json.dumps({"health_check_period_ms": 1000,
                                                   "health_check_failure_threshold": 3}))

    def start_device_node(self) -> int:
        """A node offering device:host; returns its raylet's node-manager port (to find its pid)."""
        return self._start("--address", self.address, resources=DEVICE_NODE)[1]

    def nodes(self) -> list[dict]:
        """The cluster's nodes as Ray reports them, from a driver process of its own."""
        code = ("import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'resources': n['Resources']} "
                "for n in ray.nodes()]))")
        r = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    def wait_alive(self, n: int, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            alive = [x for x in self.nodes() if x["alive"]]
            if len(alive) == n or time.monotonic() > deadline:
                return alive
            time.sleep(1)

    def processes(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if str(self.tmp) in " ".join(p.info["cmdline"] or []):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out

    def raylet(self, manager_port: int) -> psutil.Process:
        for p in self.processes():
            cmd = " ".join(p.info["cmdline"] or [])
            if "raylet" in p.name() and f"--node_manager_port={manager_port}" in cmd:
                return p
        raise AssertionError(f"no raylet with node manager port {manager_port}")

    def stop(self) -> None:
        """Kill every process of this cluster, by pid (and their children), twice over to catch late starters."""
        for _ in range(2):
            procs = self.processes()
            for p in list(procs):
                try:
                    procs += p.children(recursive=True)
                except psutil.NoSuchProcess:
                    pass
            for p in procs:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(procs, timeout=10)


@pytest.fixture(scope="module")
def cluster():
    assert RAY.exists(), f"{RAY} is missing: run `make setup` (ray is pinned in requirements.lock)"
    tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths are limited in length
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    c = Cluster(tmp, env)
    try:
        c.start_head()
        c.manager = c.start_device_node()
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench(*args: str, env: dict, timeout: float = 400, wait: bool = True):
    cmd = [sys.executable, "-m", "bench", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def non_null(row: dict) -> frozenset[str]:
    return frozenset(k for k, v in row.items() if v is not None and k not in NODE_COLUMNS | VOLATILE)


@pytest.mark.bench
def test_a_sweep_through_a_two_node_cluster_survives_the_device_node_dying(cluster, artifacts, tmp_path):
    t0 = time.monotonic()
    env = cluster.env
    common = ["--artifacts", str(artifacts)]
    local_store, ray_store = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    rc, out, err = bench(*SWEEP, *common, "--store", str(local_store), env=env)
    assert rc == 0, out + err
    local = {r["cell_key"]: r for r in rows(local_store)}
    assert len(local) == 4 and all(r["status"] == "ok" for r in local.values())
    assert all(r["export_node"] is None and r["timing_node"] is None for r in local.values())
    print(f"\nlocal sweep: {len(local)} cells ok ({time.monotonic() - t0:.0f} s since start)")

    nodes = cluster.wait_alive(2)
    device_node = [n["id"] for n in nodes if "device:host" in n["resources"]]
    head = [n["id"] for n in nodes if "device:host" not in n["resources"]]
    assert len(device_node) == 1 and len(head) == 1, nodes
    ray_args = [*SWEEP, *common, "--store", str(ray_store), "--executor", "ray", "--ray-address", cluster.address]

    # the device's node dies mid-timing
    proc = bench(*ray_args, env=env, wait=False)
    wait_for_first_pass(proc, ray_store, timeout=300)
    assert proc.poll() is None, "the sweep ended before its first pass was stored"
    victim = cluster.raylet(cluster.manager)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = proc.communicate(timeout=300)
    print(f"device node {device_node[0][:12]} killed; the sweep ended {time.monotonic() - killed_at:.0f} s later "
          f"with exit code {proc.returncode}")
    assert "Traceback" not in err, err
    assert proc.returncode == 3 and "stopped:" in out, out + err
    first = rows(ray_store)
    failed = [r for r in first if r["status"] == "failed"]
    assert failed and all(r["stage"] == "transport" and device_node[0] in r["error"] for r in failed), first
    assert {r["timing_node"] for r in failed} == {device_node[0]}
    assert len(first) < 4  # the other group was not timed: it stays unstored (the same command resumes it)
    print(f"after the kill: {len(failed)} cell(s) failed [transport] naming the node, {4 - len(first)} not stored")
    conn = sqlite3.connect(ray_store)
    passes_before = conn.execute("SELECT COUNT(*) FROM passes").fetchone()[0]
    conn.close()
    assert passes_before >= 1

    # the node is back (a new raylet offering device:host): the same command with --retry-failed completes the run
    cluster.manager = cluster.start_device_node()
    alive = cluster.wait_alive(2)
    new_device_node = [n["id"] for n in alive if "device:host" in n["resources"]]
    assert len(new_device_node) == 1 and new_device_node[0] != device_node[0], alive
    rc, out, err = bench(*ray_args, "--retry-failed", env=env)
    assert rc == 0, out + err
    assert "Traceback" not in err, err
    final = {r["cell_key"]: r for r in rows(ray_store)}
    print(f"rerun with --retry-failed: exit {rc}, {sum(r['status'] == 'ok' for r in final.values())} of "
          f"{len(final)} cells ok")

    # the same cells as the local sweep: same keys, same non-null columns
    assert set(final) == set(local)
    for key, r in final.items():
        assert r["status"] == "ok", r
        assert non_null(r) == non_null(local[key]), (key, non_null(r) ^ non_null(local[key]))
        for col in ("model", "format", "converter", "precision", "height", "width", "threads", "iterations",
                    "n_rounds", "per_round", "artifact"):
            assert r[col] == local[key][col], col
        rounds = json.loads(r["rounds"])  # every round exactly once: 10 rounds of 4 timed iterations
        assert sorted(set(rounds)) == list(range(10)) and all(rounds.count(k) == 4 for k in range(10)), rounds
        assert len(json.loads(r["samples_ms"])) == 40
    # timing only on the node holding device:host (the head never timed); exports ran on both nodes
    assert {r["timing_node"] for r in final.values()} == {new_device_node[0]}
    exporters = {r["export_node"] for r in final.values()} | {r["export_node"] for r in failed}
    assert head[0] in exporters and exporters & {device_node[0], new_device_node[0]}, exporters
    print(f"exports ran on {len(exporters)} node(s) (head {head[0][:12]} among them); timing only on "
          f"{new_device_node[0][:12]}; every round stored once; {time.monotonic() - t0:.0f} s in all")


def test_no_cluster_and_no_device_are_one_line(cluster, tmp_path):
    env = {**cluster.env, "RAY_ADDRESS": ""}
    base = ["run", "--models", SMALL, "--formats", "onnx", "--res", "64", "--iters", "4", "--no-report",
            "--store", str(tmp_path / "s.sqlite"), "--artifacts", str(tmp_path / "a"), "--executor", "ray"]
    rc, out, err = bench(*base, "--ray-address", f"127.0.0.1:{_free_port()}", env=env, timeout=300)
    assert rc != 0 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "cannot join the Ray cluster" in err, err
    profiles = tmp_path / "p.toml"
    profiles.write_text('[phone9]\nkind = "host"\n')
    rc, out, err = bench(*base, "--ray-address", cluster.address, "--device", "phone9", "--profiles", str(profiles),
                         env=env, timeout=300)
    assert rc != 0 and "Traceback" not in err, err
    assert "no node of the Ray cluster offers device phone9" in err and len(err.strip().splitlines()) == 1, err
    rc, out, err = bench("run", "--ray-address", cluster.address, env=env)
    assert rc != 0 and "--ray-address needs --executor ray" in err
    r = subprocess.run([sys.executable, "-m", "devices", "list", "--executor", "ray", "--ray-address",
                        cluster.address], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    device_nodes = [n["id"] for n in cluster.nodes() if n["alive"] and "device:host" in n["resources"]]
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("host ")]
    assert len(lines) == 1 and device_nodes[0] in lines[0], r.stdout
