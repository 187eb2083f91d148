"""The ssh device kind end to end against a real OpenSSH server (Debian's openssh-server) that these tests start on
127.0.0.1 with their own host key, authorized key and port. The "board" is this machine, with the project's own
environment as its `python`; everything goes through the real ssh client, a real sshd and the board's worker.

Also: a refused host key (unknown and changed), failed authentication, nothing listening, a missing remote
Python, and the server killed mid-sweep (failed cells, a clean exit, and a rerun that completes every cell once).
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _system import need_program
from conftest import MF, RES, SMALL

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "toolkit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return Path(str(path) + ".pub").read_text().strip()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Board:
    """A real sshd on 127.0.0.1 serving this machine as a board."""

    def __init__(self, root: Path):
        self.sshd = need_program("/usr/sbin/sshd", "openssh-server")
        need_program("ssh", "openssh-client")
        self.root = root
        self.port = _free_port()
        self.host_pub = _keygen(root / "host_ed25519.key")
        self.client_pub = _keygen(root / "client_ed25519.key")
        (root / "authorized_keys").write_text(self.client_pub + "\n")
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        (root / "sshd_config").write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {self.port}", f"HostKey {root / 'host_ed25519.key'}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}", "StrictModes no",
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "LogLevel ERROR", ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd as root needs its privilege separation directory
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"),
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}") from None
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def kill(self) -> None:
        """The server and every connection it serves, gone at once (the board dropped off the network)."""
        if self.proc is None:
            return
        doomed = _descendants(self.proc.pid) + [self.proc.pid]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        self.proc = None

    def profiles(self, path: Path, name: str = "board", **extra: object) -> Path:
        prof = {"kind": "ssh", "description": "this machine through a real sshd on 127.0.0.1 (a test board)",
                "host": "127.0.0.1", "port": self.port, "user": getpass.getuser(),
                "identity_file": str(self.root / "client_ed25519.key"),
                "known_hosts": str(self.root / "known_hosts"), "python": sys.executable,
                "workdir": str(self.root / "workdir"), "connect_timeout": 5, **extra}
        lines = [f"[{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in prof.items() if v is not None]
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n\n")
        return path


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    b = Board(tmp_path_factory.mktemp("board"))
    yield b
    b.kill()


def devices_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devices", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_check_and_describe_through_ssh(board, tmp_path):
    profiles = board.profiles(tmp_path / "p.toml")
    r = devices_cli("check", "board", "--profiles", str(profiles))
    assert r.returncode == 0, r.stderr
    assert "reached " in r.stdout and "formats it can run: onnx, tflite, executorch" in r.stdout
    assert "board: ready" in r.stdout
    d = devices_cli("describe", "board", "--profiles", str(profiles))
    assert d.returncode == 0, d.stderr
    info = json.loads(d.stdout)
    assert info["kind"] == "ssh" and info["cores"] == os.cpu_count() and info["python_path"] == sys.executable
    assert info["runtimes"]["onnx"]["onnxruntime"]
    # the session folder is removed at the end; the workdir stays (its artifact cache)
    assert not list((board.root / "workdir" / "runs").iterdir())


@pytest.mark.parametrize("case, expect", [
    ("unknown host key", "host key is not in known_hosts"),
    ("changed host key", "host key has CHANGED"),
    ("wrong identity", "authentication failed"),
    ("nothing listening", "nothing accepts ssh connections"),
    ("no remote python", "its Python (/nonexistent/python3) is not there"),
])
def test_each_fault_is_one_line(board, tmp_path, case, expect):
    extra: dict[str, object] = {}
    if case == "unknown host key":
        (tmp_path / "kh").write_text("")
        extra["known_hosts"] = str(tmp_path / "kh")
    elif case == "changed host key":
        other = _keygen(tmp_path / "other.key")
        (tmp_path / "kh").write_text(f"[127.0.0.1]:{board.port} {other}\n")
        extra["known_hosts"] = str(tmp_path / "kh")
    elif case == "wrong identity":
        _keygen(tmp_path / "stranger.key")
        extra["identity_file"] = str(tmp_path / "stranger.key")
    elif case == "nothing listening":
        extra["port"] = _free_port()
    elif case == "no remote python":
        extra["python"] = "/nonexistent/python3"
    profiles = board.profiles(tmp_path / "p.toml", **extra)
    t0 = time.monotonic()
    r = devices_cli("check", "board", "--profiles", str(profiles))
    assert r.returncode == 1, (r.stdout, r.stderr)
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and expect in problems[0] and "board" in problems[0], r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 60
    # never auto-accepted: the known_hosts file we were given is unchanged
    if "host key" in case:
        assert board.host_pub not in (tmp_path / "kh").read_text()
    if case == "unknown host key":  # what to do, with this profile's own file and port
        assert f"ssh-keyscan -p {board.port} 127.0.0.1 >> {tmp_path / 'kh'}" in problems[0]


def test_malformed_profiles_are_one_line(board, tmp_path):
    cases = [({"colour": "red"}, "unknown key 'colour'"), ({"port": "22"}, "port must be a whole"),
             ({"host": "-oProxyCommand=x"}, "is not a host name"),
             ({"workdir": "relative/dir"}, "workdir must be an absolute path")]
    for i, (extra, expect) in enumerate(cases):
        p = tmp_path / f"p{i}.toml"
        board.profiles(p, **extra)
        r = devices_cli("check", "board", "--profiles", str(p))
        assert r.returncode != 0 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_remote_quoting(board, tmp_path):
    """A remote path with spaces, quotes and `;` reaches the board as one word, run by nobody's shell but its own."""
    import devices

    odd = board.root / "work dir; echo INJECTED 'x'"
    profiles = board.profiles(tmp_path / "p.toml", workdir=str(odd))
    dev = devices.get("board", profiles)
    try:
        facts, problems = dev.check()
        assert not problems, problems
        assert odd.is_dir() and not (Path.cwd() / "INJECTED").exists()
    finally:
        dev.close()


@pytest.mark.bench
def test_a_group_timed_on_the_board_pushes_once(board, tmp_path, artifacts):
    import devices

    profiles = board.profiles(tmp_path / "p.toml")
    arts = sorted(str(p.parent) for p in artifacts.rglob("manifest.json") if "64x64" in str(p))
    dev = devices.get("board", profiles)
    try:
        res = dev.run_group(arts, rounds=3, per_round=4, warmup=2, switch_warmup=1, threads=1, timeout=120, seed=1)
    finally:
        dev.close()
    assert all(not isinstance(m, Exception) for m in res), res
    for m in res:
        assert len(m.samples_ms) == 12 and sorted(set(m.rounds)) == [0, 1, 2] and m.load_ms > 0
        assert len(m.cpu_samples_ms) == 12 and m.peak_rss_mb and m.overhead_us is not None
    cache = board.root / "workdir" / "artifacts"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(before) == len(arts)
    dev = devices.get("board", profiles)  # a second session pushes nothing
    try:
        dev.run_group(arts[:1], rounds=1, per_round=2, warmup=0, switch_warmup=0, threads=1, timeout=120, seed=2)
    finally:
        dev.close()
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before


def _bench(*args: str, tmp: Path, artifacts: Path, wait: bool = True):
    cmd = [sys.executable, "-m", "bench", *args, "--artifacts", str(artifacts), "--reports", str(tmp / "reports"),
           "--store", str(tmp / "results.sqlite")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _rows(store: Path) -> list[dict]:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM cells")]
    conn.close()
    return rows


@pytest.mark.bench
def test_sweep_through_the_board_matches_the_host(board, tmp_path, artifacts):
    profiles = board.profiles(tmp_path / "p.toml")
    common = ["--models", f"{SMALL},{MF}", "--formats", "onnx", "--res", "64", "--rounds", "4", "--per-round", "5",
              "--passes", "2", "--max-rounds", "4", "--warmup", "3", "--profiles", str(profiles)]
    rc, out, err = _bench("run", "--device", "board", *common, tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, out + err
    rc, out_host, err = _bench("run", "--device", "host", *common, tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, err
    rows = _rows(tmp_path / "results.sqlite")
    board_rows = [r for r in rows if r["device"] == "board"]
    host_rows = [r for r in rows if r["device"] == "host"]
    assert len(board_rows) == len(host_rows) == 2
    assert all(r["status"] == "ok" for r in rows)
    filled = [{k for k, v in r.items() if v is not None} for r in rows]
    assert filled[0] == filled[1] == filled[2] == filled[3]  # the board's cells carry what the host's carry
    for r in board_rows:
        assert len(json.loads(r["samples_ms"])) == 20 and sorted(set(json.loads(r["rounds"]))) == [0, 1, 2, 3]
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    env = json.loads(conn.execute("SELECT environment FROM runs WHERE device = 'board'").fetchone()[0])
    conn.close()
    assert env["kind"] == "ssh" and env["address"].endswith(f":{board.port}") and env["cpu_model"]
    assert "report:" in out


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.bench
def test_server_killed_mid_sweep_then_resumed(board, tmp_path, artifacts):
    """The board drops off after answering the sweep's first measuring request, and never before the test says so:
    a gate in front of its Python (tests/board_gate.py) holds the second answer back until the server is killed,
    so the sweep is in the same state on a quiet or a busy machine (deterministic: no kill that races the sweep)."""
    from board_gate import configure, make_gate

    gate = make_gate(tmp_path / "gate", sys.executable, hold_after=1)
    profiles = board.profiles(tmp_path / "p.toml", python=str(gate))
    args = ["run", "--device", "board", "--models", f"{SMALL},{MF}", "--formats", "onnx", "--res",
            ",".join(map(str, RES)), "--threads", "1,2", "--rounds", "6", "--per-round", "40", "--passes", "3",
            "--max-rounds", "6", "--warmup", "2", "--profiles", str(profiles)]
    proc = _bench(*args, tmp=tmp_path, artifacts=artifacts, wait=False)
    store = tmp_path / "results.sqlite"
    _wait_for(tmp_path / "gate" / "held", proc)  # one group's first pass answered; the sweep waits for the next
    board.kill()
    configure(tmp_path / "gate", sys.executable, hold_after=None)  # back on line: the board answers everything
    out, err = proc.communicate(timeout=300)
    try:
        assert proc.returncode == 3, out + err
        assert "Traceback" not in err and "stopped answering" in out and "--retry-failed" in out
        failed = [r for r in _rows(store) if r["status"] == "failed"]
        assert failed and all(r["stage"] == "transport" for r in failed)
        assert all("board" in r["error"] for r in failed)
        passes = sqlite3.connect(store).execute("SELECT COUNT(*) FROM passes").fetchone()[0]
        assert passes == 1 and len(failed) == 6, (passes, len(failed))  # 3 groups in a row could not be reached
    finally:
        board.start()
    rc, out, err = _bench(*args, "--retry-failed", tmp=tmp_path, artifacts=artifacts)
    assert rc == 0, out + err
    rows = _rows(store)
    assert len(rows) == 8 and len({r["cell_key"] for r in rows}) == 8 and all(r["status"] == "ok" for r in rows)
    for r in rows:  # every round exactly once, whether timed before the kill or after
        rounds = json.loads(r["rounds"])
        assert sorted(set(rounds)) == list(range(6)) and all(rounds.count(k) == 40 for k in range(6))


def test_the_board_side_never_imports_torch():
    """What runs on a board (the worker, the probe, the runtime loaders) works where torch is not installed."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['timm'] = None\n"
            "import devices.worker, devices.probe, devices.rounds, export\n"
            "from export.core import format_spec\n"
            "p = devices.probe.probe('/tmp'); assert p['formats'] and p['packages']['onnxruntime'], p\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_ssh_command_line_is_an_argument_list():
    from devices.remote import Ssh, SshKeys, remote_command

    keys = SshKeys(host="pi.local", port=2222, user="pi", identity_file="/k", known_hosts="/kh", connect_timeout=7)
    argv = Ssh("pi", keys).argv(remote_command(["ls", "a b; rm -rf ~", "$HOME"]))
    assert argv[0] == "ssh" and argv[-3:] == ["--", "pi.local", "ls 'a b; rm -rf ~' '$HOME'"]
    opts = " ".join(argv[1:-3])
    for o in ("BatchMode=yes", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/kh", "ConnectTimeout=7",
              "ControlMaster=auto", "-p 2222", "-l pi", "-i /k"):
        assert o in opts
    assert "accept-new" not in opts and "StrictHostKeyChecking=no" not in opts


def test_macos_profiles_and_the_refusal_off_macos(tmp_path):
    import devices
    from models.errors import ToolkitError

    p = tmp_path / "mac.toml"
    p.write_text('[mac]\nkind = "macos"\ncompute_units = ["CPU_AND_NE", "ALL"]\n\n'
                 '[badunits]\nkind = "macos"\ncompute_units = ["NPU"]\n\n'
                 '[portonly]\nkind = "macos"\nport = 22\n\n'
                 '[remote]\nkind = "macos"\nhost = "mac.local"\nuser = "me"\n')
    if sys.platform != "darwin":
        with pytest.raises(ToolkitError, match="runs Core ML, which needs macOS; this computer runs linux"):
            devices.get("mac", p)
        r = devices_cli("check", "mac", "--profiles", str(p))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "needs macOS" in r.stderr
    with pytest.raises(ToolkitError, match="unknown Core ML compute units 'NPU'"):
        devices.get("badunits", p)
    with pytest.raises(ToolkitError, match="port need"):
        devices.get("portonly", p)
    dev = devices.get("remote", p)  # a Mac over ssh: constructed without connecting
    assert dev.kind == "macos" and dev.compute_units == ("CPU_ONLY", "ALL")
    assert dev.ssh.argv("true")[-2:] == ["mac.local", "true"]


def test_compute_units_are_a_sweep_axis_for_core_ml_only():
    from bench import sweep

    a = sweep.parse_args(device="mac", models_arg="mobileformer_26m", formats="coreml,onnx", res="128",
                         compute_units="ALL,CPU_ONLY")
    cells = a.cells()
    assert sorted((c.format, c.units) for c in cells) == [("coreml", "ALL"), ("coreml", "CPU_ONLY"), ("onnx", "")]
    assert '"units": "ALL"' in [c for c in cells if c.units == "ALL"][0].key
    assert "units" not in [c for c in cells if c.format == "onnx"][0].key  # other cells keep their keys
    b = sweep.parse_args(device="mac", models_arg="mobileformer_26m", formats="coreml,onnx", res="128")
    assert "compute_units" not in b.canonical() and a.hash != b.hash
    assert len({sweep.group_key(c) for c in cells}) == 3


def test_a_mac_over_ssh_that_is_not_a_mac_says_so(board, tmp_path):
    """The loopback board reached as a `macos` profile: everything but Core ML runs; Core ML says it needs macOS."""
    import devices

    profiles = board.profiles(tmp_path / "p.toml", name="fakemac", kind="macos")
    text = profiles.read_text().replace('pin = true\n', '')
    profiles.write_text(text)
    dev = devices.get("fakemac", profiles)
    try:
        assert dev.can_run("coreml") == "needs macOS" and dev.can_run("onnx") is None
        assert dev.describe()["compute_units"] == ["CPU_ONLY", "ALL"]
    finally:
        dev.close()


@pytest.mark.export
def test_an_int8_file_on_the_board_is_held_to_the_same_file_here_in_output_steps(board, tmp_path):
    """int8 on a device: its quantized reference is not rebuilt there; the gate is the same file run by this
    computer's runtime, in the file's output steps (here the board is this machine: 0 steps)."""
    import export

    art = export.export(SMALL, "onnx", 64, precision="int8", out=tmp_path / "art")
    assert art.ok, art.manifest["parity"]
    profiles = board.profiles(tmp_path / "p.toml")
    r = devices_cli("parity", "board", str(art.dir), "--profiles", str(profiles), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parity on board: passed" in r.stdout
    assert "random: board vs the same file on this computer (x86_64): median 0 output steps, at most 0" in r.stdout
    entry = json.loads((Path(art.dir) / "manifest.json").read_text())["device_parity"]["board"]
    q = entry["quantized"]
    assert q["reference"].startswith("the same file on this computer") and q["step"] > 0
    assert q["random"]["p50_steps"] == 0 and q["images"]["max_steps"] == 0

@pytest.mark.bench
def test_parity_checked_on_the_board_updates_the_manifest(board, tmp_path, artifacts):
    import shutil

    src = next(p.parent for p in sorted(artifacts.rglob("manifest.json")) if "64x64" in str(p) and SMALL in str(p)
               and json.loads(p.read_text()).get("precision") == "fp32")  # other tests add int8 files here
    art = tmp_path / "art"
    shutil.copytree(src, art)
    profiles = board.profiles(tmp_path / "p.toml")
    r = devices_cli("parity", "board", str(art), "--profiles", str(profiles), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parity on board: passed" in r.stdout and "max_rel" in r.stdout
    m = json.loads((art / "manifest.json").read_text())
    entry = m["device_parity"]["board"]  # the device's verdict beside the artifact's own, which is kept
    assert entry["verdict"] == "passed" and (entry["device"]["name"], entry["device"]["kind"]) == ("board", "ssh")
    assert m["parity"] == json.loads((src / "manifest.json").read_text())["parity"]
    assert entry["vs_host"]["images"]["max_rel"] < 1e-6  # the same machine and runtime as this computer
