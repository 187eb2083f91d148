"""An aarch64 Linux board without hardware: `python -m devices emulate arm64` (`make arm-board`) and `--stop NAME`.

What it does, in order, touching nothing outside the toolkit's cache and one temporary folder per running board:

1. qemu-user: `qemu-aarch64` must be registered with the kernel's binfmt_misc, with the F flag (the kernel opens the
   interpreter once, so it works inside a chroot that holds no qemu). As root the file system is mounted and the
   entry Debian's qemu-user-static ships (/usr/lib/binfmt.d/qemu-aarch64.conf) registered if needed; otherwise one
   line says what to run.
2. The root: a Debian 12 arm64 file system (python3, python3-venv, openssh-server, libstdc++6) built once with
   mmdebstrap under `<cache>/board-arm64-<digest>/root`, the digest taken over its recipe (RECIPES below): a changed
   recipe builds a new root, an unchanged one is reused. The root is never written to afterwards.
3. A board: an overlay of a fresh writable layer (in the temporary folder) over that root, mounted in a private mount
   namespace (`unshare --mount`) together with /proc, /dev and a read-only /sys, and the root's own sshd started in a
   chroot there, on 127.0.0.1 at a free port, with a host key and a client key generated for this board alone.
   /proc/cpuinfo there is a stand-in (cpuinfo_text: what an aarch64 kernel prints for the CPU model, from the
   features qemu reports), since qemu-user 7.2 shows the x86 host's. Every process of the board runs under qemu-user
   with the CPU model `--cpu` (default cortex-a76: a phone's big core, ARMv8.2-A with FP16 arithmetic and dot
   product, no SVE); sshd passes QEMU_CPU to every session. When the namespace's last process ends, its mounts go
   with it: nothing stays mounted on this machine.
4. A profile file (kind `ssh`, its known_hosts, identity, workdir, `emulated = true`, `runner = "native"`) in the
   temporary folder, printed at the end, and a record `<cache>/boards/<name>.json` so that `--stop NAME` finds it.

`--stop NAME` ends every process in the board's mount namespace (they are the ones this command started: sshd and
what ran through it), then removes the temporary folder and the record. The board's writes (its venv, its artifact
cache) live in that folder and go with it: a board starts fresh, as from a newly flashed card.

Running a board needs root (chroot, mounts). Timing on it is not a latency (devices/ssh.py: `emulated = true`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from models.common import check_name
from models.errors import ToolkitError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
SYSTEMD_BINFMT = Path("/usr/lib/binfmt.d")
BOARD_ETC = "/etc/mdt-board"  # inside the board: its sshd config, host key and authorized keys
BOARD_WORKDIR = "/root/mdt"
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Recipe:
    """Everything the root is built from: its digest names the cache folder."""

    arch: str  # Debian's name
    machine: str  # `uname -m` on the board
    suite: str
    mirror: str
    variant: str
    packages: tuple[str, ...]
    binfmt: str  # the binfmt_misc entry (and qemu-user binary) that runs it
    recommends: bool = False  # apt's Recommends (ca-certificates, perl, ...): not needed, slow to configure emulated
    steps: int = 1  # bump when the build steps below change

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


RECIPES = {"arm64": Recipe("arm64", "aarch64", "bookworm", "http://deb.debian.org/debian", "essential",
                           ("python3", "python3-venv", "openssh-server", "libstdc++6"), "qemu-aarch64")}
# qemu 7.2's aarch64 CPU models with their MIDR (implementer, variant, part, revision), as qemu sets them.
CPUS = {"cortex-a76": (0x41, 0x4, 0xD0B, 1), "cortex-a53": (0x41, 0x0, 0xD03, 4), "cortex-a57": (0x41, 0x1, 0xD07, 0),
        "cortex-a72": (0x41, 0x0, 0xD08, 3), "cortex-a35": (0x41, 0x1, 0xD04, 0),
        "neoverse-n1": (0x41, 0x4, 0xD0C, 1), "a64fx": (0x46, 0x1, 0x001, 0), "max": (0x00, 0x0, 0x051, 0)}
DEFAULT_CPU = "cortex-a76"
# The names Linux prints on the Features line of /proc/cpuinfo, bit by bit (arch/arm64/kernel/cpuinfo.c).
HWCAP_NAMES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
               "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2_NAMES = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
                "i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 smef16f32 smeb16f32 "
                "smef32f32 smefa64 wfxt").split()

# In the board's namespace: the overlay, /proc with the stand-in cpuinfo over it, /dev, a read-only /sys, then the
# root's sshd in a chroot. A constant script; every path reaches it as a positional argument ("$1".."$5").
LAUNCH = ('set -e; mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"; '
          'mount -t proc proc "$4/proc"; mount --bind "$5" "$4/proc/cpuinfo"; mount --rbind /dev "$4/dev"; '
          f'mount --bind -o ro /sys "$4/sys"; exec chroot "$4" /usr/sbin/sshd -D -e -f {BOARD_ETC}/sshd_config')


def recipe(arch: str) -> Recipe:
    if arch not in RECIPES:
        raise ToolkitError(f"no emulated board for architecture {arch!r}; known: {', '.join(RECIPES)}")
    return RECIPES[arch]


def _cache() -> Path:
    from devices.native import cache_root

    return cache_root()


def _is_root() -> bool:
    return os.geteuid() == 0


def _need(program: str, apt: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise ToolkitError(f"an emulated board needs {program} (apt install {apt})")
    return found


# --------------------------------------------------------------------------------------------- 1. binfmt_misc
def ensure_binfmt(r: Recipe, say=print) -> str:
    """qemu-user registered for the recipe's machine with the F flag; registered here as root if it is not."""
    entry = BINFMT / r.binfmt
    if entry.is_file():
        text = entry.read_text()
        flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), "")
        if "F" not in flags:
            raise ToolkitError(f"{entry} is registered without the F flag, so qemu cannot run inside the board's "
                               f"chroot; re-register it: echo -1 > {entry}, then run this command again")
        if text.startswith("enabled"):
            return f"{r.binfmt} registered ({entry}: {flags})"
        if not _is_root():
            raise ToolkitError(f"{r.binfmt} is registered but disabled; enable it as root: echo 1 > {entry}")
        entry.write_text("1")
        return f"{r.binfmt} enabled ({entry})"
    conf = SYSTEMD_BINFMT / f"{r.binfmt}.conf"
    if not conf.is_file():
        raise ToolkitError(f"no {conf}: install qemu-user-static (apt install qemu-user-static binfmt-support)")
    if not _is_root():
        raise ToolkitError(f"{r.binfmt} is not registered with binfmt_misc, and registering it needs root: run "
                           f"`sudo mount -t binfmt_misc binfmt_misc {BINFMT}` (if {BINFMT}/register is missing) "
                           f"and `sudo update-binfmts --enable {r.binfmt}`, or run this command as root")
    if not (BINFMT / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise ToolkitError(f"mounting binfmt_misc at {BINFMT} failed: {proc.stderr.strip()[-200:]}")
        say(f"mounted binfmt_misc at {BINFMT}")
    line = next(ln.strip() for ln in conf.read_text().splitlines() if ln.strip().startswith(":"))
    try:
        (BINFMT / "register").write_text(line)
    except OSError as exc:
        raise ToolkitError(f"registering {r.binfmt} with binfmt_misc failed: {exc.strerror}") from None
    return f"{r.binfmt} registered from {conf}"


# --------------------------------------------------------------------------------------------- 2. the root
def root_folder(r: Recipe) -> Path:
    return _cache() / f"board-{r.arch}-{r.digest()}"


def ensure_root(r: Recipe, say=print) -> Path:
    """The recipe's root file system, built once (mmdebstrap, about 3 minutes) and reused."""
    import fcntl

    folder = root_folder(r)
    root, stamp = folder / "root", folder / "complete.json"
    if stamp.is_file():
        return root
    if not _is_root():
        raise ToolkitError("building the board's root file system needs root (mmdebstrap --mode=root)")
    mmdebstrap = _need("mmdebstrap", "mmdebstrap")
    _need("arch-test", "arch-test")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build waits, then finds it done
        if stamp.is_file():
            return root
        part, log = folder / "root.part", folder / "build.log"
        shutil.rmtree(part, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        cmd = [mmdebstrap, "--mode=root", f"--arch={r.arch}", f"--variant={r.variant}",
               f"--include={','.join(r.packages)}",
               f"--aptopt=APT::Install-Recommends \"{'true' if r.recommends else 'false'}\"", r.suite, str(part),
               r.mirror]
        say(f"building the {r.arch} root (Debian {r.suite}, {', '.join(r.packages)}) with mmdebstrap into {folder}: "
            "once per recipe, a few minutes (its packages are configured under emulation)")
        t0 = time.monotonic()
        with open(log, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("E:")] or lines or ["no output"]
            raise ToolkitError(f"building the {r.arch} root failed: {errors[-1][:300]}; full log: {log}")
        part.rename(root)
        seconds = round(time.monotonic() - t0, 1)
        stamp.write_text(json.dumps({"recipe": asdict(r), "digest": r.digest(), "seconds": seconds,
                                     "built": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        say(f"root built in {seconds:.0f} s: {root}")
    return root


# --------------------------------------------------------------------------------------------- 3. a board
def _record(name: str) -> Path:
    return _cache() / "boards" / f"{name}.json"


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def running(name: str) -> dict | None:
    """The record of a running board (its launcher alive in a mount namespace of its own), else None."""
    try:
        rec = json.loads(_record(name).read_text())
    except (OSError, ValueError):
        return None
    ns = _mount_ns(int(rec.get("pid", 0)))
    return rec if ns is not None and ns == rec.get("mnt_ns") and ns != _mount_ns(os.getpid()) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


def cpuinfo_text(root: Path, cpu: str, cores: int) -> str:
    """The /proc/cpuinfo an aarch64 kernel would print for this qemu CPU model: a stand-in, because under qemu-user
    /proc is this x86 machine's. Its Features are the AT_HWCAP bits qemu gives the board's processes (read from the
    dynamic loader, LD_SHOW_AUXV), its MIDR fields qemu's for the model. Why it matters: the pytorch/cpuinfo library
    inside onnxruntime, XNNPACK and LiteRT reads this file; with the x86 one beside a real /sys, onnxruntime 1.31.1
    crashes on import (SIGSEGV), and without /sys cpuinfo gives up and the runtimes guess from HWCAP alone."""
    proc = subprocess.run([_need("chroot", "coreutils"), str(root), "/bin/sh", "-c", "LD_SHOW_AUXV=1 /bin/true"],
                          capture_output=True,
                          text=True, check=False, env={"PATH": "/usr/bin:/bin", "QEMU_CPU": cpu}, timeout=120)
    aux = dict(ln.split(":", 1) for ln in proc.stdout.splitlines() if ":" in ln)
    try:
        caps, caps2 = (int(aux.get(k, "0").strip(), 16) for k in ("AT_HWCAP", "AT_HWCAP2"))
    except ValueError:
        raise ToolkitError(f"cannot read the CPU features qemu gives {cpu}: {proc.stdout[-200:]!r}") from None
    if not caps:
        raise ToolkitError(f"qemu reported no CPU features for {cpu} ({proc.stderr.strip()[-200:]})")
    features = ([n for i, n in enumerate(HWCAP_NAMES) if caps >> i & 1]
                + [n for i, n in enumerate(HWCAP2_NAMES) if caps2 >> i & 1])
    impl, variant, part, rev = CPUS[cpu]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(features)}\nCPU implementer\t: 0x{impl:02x}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\nCPU revision\t: {rev}\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))


def _sshd_config(port: int, cpu: str) -> str:
    return "\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {BOARD_ETC}/ssh_host_ed25519_key",
        "PidFile /run/mdt-board-sshd.pid", f"AuthorizedKeysFile {BOARD_ETC}/authorized_keys", "StrictModes no",
        "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "UseDNS no", "PrintMotd no", "X11Forwarding no", "LogLevel ERROR",
        f"SetEnv QEMU_CPU={cpu}", ""])


def profile_text(name: str, r: Recipe, cpu: str, port: int, state: Path) -> str:
    prof = {"kind": "ssh", "description": f"emulated {r.machine} board: Debian {r.suite} {r.arch} under qemu-user "
            f"(CPU model {cpu}); no hardware, so its timings are not latencies",
            "host": "127.0.0.1", "port": port, "user": "root", "identity_file": str(state / "client_ed25519"),
            "known_hosts": str(state / "known_hosts"), "workdir": BOARD_WORKDIR, "connect_timeout": 30,
            "emulated": True, "runner": "native"}
    lines = [f"# written by `python -m devices emulate {r.arch} --name {name}`; `--stop {name}` ends the board",
             f"[{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in prof.items()]
    return "\n".join(lines) + "\n"


def start(arch: str = "arm64", name: str | None = None, cpu: str = DEFAULT_CPU, say=print) -> dict:
    """Start (or find running) the emulated board `name`; its record (profiles file, port, state folder)."""
    r = recipe(arch)
    name = check_name(name or arch, "board name")
    if cpu not in CPUS:
        raise ToolkitError(f"unknown qemu CPU model {cpu!r}; choose one of {', '.join(CPUS)}")
    rec = running(name)
    if rec is not None:
        say(f"board {name} is already running (port {rec['port']}, CPU model {rec['cpu']}); "
            f"stop: python -m devices emulate --stop {name}")
        say(f"profiles: {rec['profiles']}")
        return rec
    if not _is_root():
        raise ToolkitError("an emulated board needs root (a chroot, an overlay and /proc mounted in a private mount "
                           "namespace): run `sudo .venv/bin/python -m devices emulate arm64`")
    for prog, apt in (("unshare", "util-linux"), ("chroot", "coreutils"), ("ssh-keygen", "openssh-client"),
                      ("ssh", "openssh-client")):
        _need(prog, apt)
    say(ensure_binfmt(r, say))
    root = ensure_root(r, say)
    _cleanup_stale(name)
    state = Path(tempfile.mkdtemp(prefix=f"mdt-board-{name}-"))
    rec = _launch(name, r, cpu, root, state, say)
    say(f"board {name}: {rec['machine']} over ssh at root@127.0.0.1:{rec['port']} (qemu-user, CPU model {cpu}); "
        f"started in {rec['start_seconds']:.0f} s")
    say(f"next: python -m devices check {name} --profiles {rec['profiles']}")
    say(f"      python -m devices provision {name} --profiles {rec['profiles']}")
    say(f"stop: python -m devices emulate --stop {name}")
    say(f"profiles: {rec['profiles']}")
    return rec


def _launch(name: str, r: Recipe, cpu: str, root: Path, state: Path, say) -> dict:
    for path in (root, state):
        if any(c in str(path) for c in ",:\n"):
            raise ToolkitError(f"{path} holds a comma or colon, which an overlay mount cannot take; set VENV_CACHE "
                               "or TMPDIR to a plainer path")
    upper, work, merged, etc = state / "upper", state / "work", state / "merged", state / "upper" / BOARD_ETC[1:]
    for d in (work, merged, etc, upper / "run" / "sshd"):
        d.mkdir(parents=True)
    port = _free_port()
    host_pub = _keygen(etc / "ssh_host_ed25519_key", f"mdt-board-{name}")
    (etc / "authorized_keys").write_text(_keygen(state / "client_ed25519", f"mdt-client-{name}") + "\n")
    (etc / "sshd_config").write_text(_sshd_config(port, cpu))
    (state / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (state / "cpuinfo").write_text(cpuinfo_text(root, cpu, os.cpu_count() or 1))
    profiles = state / "profiles.toml"
    profiles.write_text(profile_text(name, r, cpu, port, state))
    t0 = time.monotonic()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu, "LANG": "C.UTF-8"}
    with open(state / "sshd.log", "ab") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--fork", "--", "sh", "-c",
                                 LAUNCH, "mdt-board", str(root), str(upper), str(work), str(merged),
                                 str(state / "cpuinfo")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
    rec = {"name": name, "arch": r.arch, "machine": r.machine, "cpu": cpu, "pid": proc.pid, "port": port,
           "state": str(state), "profiles": str(profiles), "root": str(root), "recipe": r.digest(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        _await(name, proc, port, state, r, rec)
    except BaseException:  # a board that did not come up is taken down at once, its folder with it
        rec["mnt_ns"] = _mount_ns(proc.pid)
        _stop_record(rec, quiet=True)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _record(name).unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)
        raise
    rec["start_seconds"] = round(time.monotonic() - t0, 1)
    _record(name).write_text(json.dumps(rec, indent=1))
    return rec


def _await(name: str, proc: subprocess.Popen, port: int, state: Path, r: Recipe, rec: dict) -> None:
    """Until the board's sshd accepts connections and `uname -m` over ssh names the recipe's machine."""
    from devices.remote import Ssh, SshKeys

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = " ".join((state / "sshd.log").read_text(errors="replace").split())[-300:]
            raise ToolkitError(f"board {name}: its sshd did not start (exit {proc.returncode}): {tail}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise ToolkitError(f"board {name}: nothing listens on port {port} after {START_TIMEOUT_S} s; see "
                                   f"{state / 'sshd.log'}") from None
            time.sleep(0.2)
    rec["mnt_ns"] = _mount_ns(proc.pid)
    _record(name).parent.mkdir(parents=True, exist_ok=True)
    _record(name).write_text(json.dumps(rec, indent=1))
    ssh = Ssh(name, SshKeys(host="127.0.0.1", port=port, user="root", identity_file=str(state / "client_ed25519"),
                            known_hosts=str(state / "known_hosts"), connect_timeout=30))
    try:
        machine = ssh.run("uname -m", what="asking its machine", timeout=120).strip()
    finally:
        ssh.close()
    if machine != r.machine:
        raise ToolkitError(f"board {name}: `uname -m` over ssh says {machine!r}, not {r.machine!r}")


# --------------------------------------------------------------------------------------------- stopping
def _cleanup_stale(name: str) -> None:
    """A record whose board is gone (the machine rebooted, the launcher was killed): its folder and record go."""
    try:
        rec = json.loads(_record(name).read_text())
    except (OSError, ValueError):
        return
    _stop_record(rec, quiet=True)
    _record(name).unlink(missing_ok=True)


def _in_namespace(ns: str | None) -> list[int]:
    if not ns or ns == _mount_ns(os.getpid()):
        return []
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _mount_ns(int(d.name)) == ns]


def _stop_record(rec: dict, quiet: bool = False) -> int:
    """End the processes of the board's namespace (ours: its sshd and what ran through it), remove its folder."""
    ns = rec.get("mnt_ns") if _mount_ns(int(rec.get("pid") or 0)) == rec.get("mnt_ns") else None
    pids = _in_namespace(ns)
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _mount_ns(p) == ns]
            time.sleep(0.1)
    if pids and not quiet:
        raise ToolkitError(f"board {rec.get('name')}: processes {pids} did not end; its folder {rec['state']} is kept")
    state = Path(rec.get("state", ""))
    if state.name.startswith("mdt-board-") and state.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(state, ignore_errors=True)
    return len(pids)


def stop(name: str, say=print) -> None:
    name = check_name(name, "board name")
    try:
        rec = json.loads(_record(name).read_text())
    except (OSError, ValueError):
        known = sorted(p.stem for p in (_cache() / "boards").glob("*.json"))
        raise ToolkitError(f"no emulated board named {name!r} was started" +
                           (f" (started: {', '.join(known)})" if known else "")) from None
    alive = running(name) is not None
    _stop_record(rec)
    _record(name).unlink(missing_ok=True)
    say(f"board {name} stopped and its folder {rec.get('state')} removed" if alive
        else f"board {name} was not running any more; its folder {rec.get('state')} removed")
