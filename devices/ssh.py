"""The `ssh` device kind: a Linux board (Raspberry Pi, Jetson, any Linux machine) reached with the OpenSSH client.

The board runs the toolkit's own worker (devices/worker.py) with its own Python and runtimes, so its cells carry
the same raw per-iteration samples, CPU time, load and first-run times and peak memory as the host's, timed in the
same interleaved rounds; the transport, the source copy and the artifact cache are devices/remote.py. The board
needs Python 3 and the runtimes only (devices/requirements-board.txt; `python -m devices provision NAME` makes a
venv there from it), never torch or a converter.

Profile keys: host (required), port (22), user, identity_file, known_hosts (default: the user's), python (the
board's interpreter; default: WORKDIR/venv/bin/python when `provision` made it, else python3), workdir (default
~/.cache/mobile-deploy-toolkit), connect_timeout (10 s), pin (true: the worker pins itself to `threads` cores, as
on the host), runner ("native": .pte members are timed, and checked, by et-bench built for the board's machine and
pushed there, so the board needs no torch; `native_runner` names a bundle of your own), emulated (true: the board
is emulated (devices/emulate.py), its cells are stored marked "emulated" and the report leaves them out),
description.

Provisioning (`python -m devices provision NAME`): devices/provision.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import Kind, MeasureError, Measurement, OneBurst
from devices.host import RUNNERS, _format_of
from devices.remote import (
    SSH_KEYS,
    RemoteError,
    Ssh,
    SshKeys,
    artifact_key,
    check_keys,
    classify_ssh,
    new_session_id,
    parse_ssh_keys,
    remote_command,
    shell_and,
    source_tar,
    tar_dir,
)
from devices.subproc import Worker, WorkerError
from models.common import brief
from models.errors import ToolkitError

DEFAULT_WORKDIR = "~/.cache/mobile-deploy-toolkit"
MIN_FREE_GB = 1.0  # `check` calls less free disk than this under workdir a problem
# After this many transport failures in a row (the connection dropped, the board went away) a sweep stops trying
# the device: bench/sweep/timing.py reads it from the device.
TRANSPORT_FAILURES_TO_GIVE_UP = 3
EMULATED = "qemu-user: an emulated CPU, so its timings say nothing about any hardware's latency"


@dataclass(frozen=True)
class SshProfile:
    kind: str = "ssh"
    description: str = ""
    ssh: SshKeys | None = None
    python: str | None = None
    workdir: str = DEFAULT_WORKDIR
    pin: bool = True
    runner: str = "python"
    native_runner: str | None = None  # a local et-bench bundle for the board's machine (default: make native ARCH=)
    emulated: bool = False

    KEYS = {"kind": str, "description": str, **SSH_KEYS, "python": str, "workdir": str, "pin": bool, "runner": str,
            "native_runner": str, "emulated": bool}

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> SshProfile:
        check_keys(prof, where, cls.KEYS, required=("host",))
        runner = prof.get("runner", "python")
        if runner not in RUNNERS:
            raise ToolkitError(f"{where}: runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
        if "native_runner" in prof and runner != "native":
            raise ToolkitError(f"{where}: native_runner is set but runner is {runner!r}, not \"native\"")
        return cls(kind=prof.get("kind", "ssh"), description=prof.get("description", ""),
                   ssh=parse_ssh_keys(prof, where), python=prof.get("python"),
                   workdir=check_workdir(prof.get("workdir", DEFAULT_WORKDIR), where), pin=prof.get("pin", True),
                   runner=runner, native_runner=prof.get("native_runner"), emulated=prof.get("emulated", False))


def check_workdir(path: str, where: str) -> str:
    if not (path.startswith("/") or path == "~" or path.startswith("~/")) or "\x00" in path or "\n" in path:
        raise ToolkitError(f"{where}: workdir must be an absolute path or start with ~/, not {brief(path)}")
    return path.rstrip("/") or "/"


class SshDevice(OneBurst):
    """A machine over ssh running the toolkit's worker. One multiplexed connection and one copy of the worker's
    sources per session (from first use to close())."""

    kind = "ssh"
    give_up_after = TRANSPORT_FAILURES_TO_GIVE_UP

    def __init__(self, name: str, profile: SshProfile):
        self.name = name
        self.profile = profile
        self.ssh = Ssh(name, profile.ssh)
        self._session: str | None = None  # remote folder of this session (sources, pid files)
        self._python: str | None = None
        self._probe: dict[str, Any] | None = None
        self._cached: set[str] | None = None  # artifact keys already in the device's cache
        self._pushed: dict[str, str] = {}  # local artifact dir -> remote dir
        self._worker: Worker | None = None
        self._threads: int | None = None
        self._native: str | None = None  # et-bench on the device, once pushed

    # ------------------------------------------------------------------------------------------ the session
    @property
    def workdir(self) -> str:
        return self.ssh.expand(self.profile.workdir)

    def _open(self) -> str:
        """Create this session's folder on the device and copy the worker's sources into it (once per session)."""
        if self._session is None:
            session = f"{self.workdir}/runs/{new_session_id()}"
            self.ssh.run(shell_and(["mkdir", "-p", f"{session}/src"], ["tar", "-xzf", "-", "-C", f"{session}/src"]),
                         what="copying the worker's sources", input=source_tar(), stage="transport")
            self._session = session
        return self._session

    def python(self) -> str:
        """The board's interpreter: the profile's, else the venv `provision` made, else python3."""
        if self._python is None:
            if self.profile.python:
                self._python = self.ssh.expand(self.profile.python)
            else:
                venv = f"{self.workdir}/venv/bin/python"
                found = self.ssh.run(f"if [ -x {remote_command([venv])} ]; then printf yes; fi",
                                     what="looking for the provisioned venv").strip()
                self._python = venv if found == "yes" else "python3"
        return self._python

    def _python_command(self, module: str, *args: str, env: dict[str, str] | None = None,
                        pidfile: str | None = None) -> str:
        src = f"{self._open()}/src"
        words = ["env", f"PYTHONPATH={src}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
                 *(f"{k}={v}" for k, v in (env or {}).items()), self.python(), "-m", module, *args]
        lead = f"cd {remote_command([src])} && "
        if pidfile:  # the shell's pid is the worker's (exec), so a hung worker can be killed on the board
            lead += f"echo $$ > {remote_command([pidfile])} && "
        return lead + "exec " + remote_command(words)

    def probe(self) -> dict[str, Any]:
        """The device's own description (devices/probe.py run there), cached for the session."""
        if self._probe is None:
            out = self._run_python("devices.probe", self.workdir, what="describing the device")
            try:
                self._probe = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise RemoteError(f"device {self.name}: the probe printed no answer ({out[-200:]!r})") from None
        return self._probe

    def _run_python(self, module: str, *args: str, what: str, timeout: float = 120.0) -> str:
        try:
            return self.ssh.run(self._python_command(module, *args), what=what, timeout=timeout)
        except RemoteError as exc:
            if exc.stage != "transport" and ("not found" in str(exc) or "No such file" in str(exc)):
                raise RemoteError(f"device {self.name}: its Python ({self.python()}) is not there; set `python` in "
                                  f"the profile or run `python -m devices provision {self.name}`", "load") from None
            raise

    # ------------------------------------------------------------------------------------------ what it can do
    def describe(self) -> dict[str, Any]:
        p = self.probe()
        k = self.profile.ssh
        return {"device": self.name, "kind": self.kind, "description": self.profile.description,
                "address": f"{k.user + '@' if k.user else ''}{k.host}:{k.port}", **p,
                "pinning": "the last `threads` cores of the allowed set" if self.profile.pin else "off",
                "runner": self.profile.runner, **({"emulated": EMULATED} if self.profile.emulated else {}),
                "runtimes": {f: {"runtime": s["runtime"], **{pkg: p["packages"].get(pkg) for pkg in s["packages"]}}
                             for f, s in p["formats"].items()}}

    def format_problem(self, fmt: str, probe: dict[str, Any]) -> str | None:
        """Why this device cannot run `fmt` (None: it can)."""
        spec = probe["formats"].get(fmt)
        if spec is None:
            return f"the toolkit on {self.name} does not know format {fmt}"
        if fmt == "coreml" and (self.kind != "macos" or probe.get("system") != "Darwin"):
            return "needs macOS"
        if fmt == "executorch" and self.profile.runner == "native":
            try:
                self._native_bundle(probe)
            except ToolkitError as exc:
                return str(exc)
            return None
        missing = [pkg for pkg in spec["packages"] if not probe["packages"].get(pkg)]
        if missing:
            return (f"{', '.join(missing)} not installed on {self.name} (python -m devices provision {self.name})")
        if fmt == "executorch" and not probe.get("torch"):
            return (f"executorch's Python runtime imports torch, which {self.name} does not have (install torch "
                    f"there: python -m devices provision {self.name} --with-executorch)")
        return None

    def can_run(self, fmt: str) -> str | None:
        return self.format_problem(fmt, self.probe())

    def max_threads(self) -> int:
        p = self.probe()
        return len(p.get("allowed_cpus") or []) or int(p.get("cores") or 1)

    def check_threads(self, threads: int) -> None:
        if type(threads) is not int or threads < 1:
            raise ToolkitError(f"threads must be a whole number of at least 1, not {threads!r}")
        if threads > self.max_threads():
            raise ToolkitError(f"device {self.name} cannot run {threads} threads: it has {self.max_threads()} "
                               "core(s)")

    def check(self) -> tuple[list[str], list[str]]:
        """(facts, problems): can we reach it, is its Python there, which formats it can run, free disk."""
        facts: list[str] = []
        try:
            p = self.probe()
        except RemoteError as exc:
            return facts, [str(exc)]
        facts.append(f"reached {self.describe()['address']}: {p.get('board') or p.get('cpu_model')}, "
                     f"{p.get('cores')} cores, {p.get('os')}, Python {p.get('python')} ({self.python()})")
        problems = []
        major, minor = (int(x) for x in str(p.get("python", "0.0")).split(".")[:2])
        if (major, minor) < (3, 10):
            problems.append(f"device {self.name}: Python {p.get('python')} is too old; the worker needs 3.10+")
        runnable = []
        for fmt in p["formats"]:
            why = self.format_problem(fmt, p)
            if why is None:
                runnable.append(fmt)
            elif fmt != "coreml" or self.kind == "macos":
                problems.append(f"device {self.name}: cannot run {fmt}: {why}")
        facts.append(f"formats it can run: {', '.join(runnable) or 'none'}"
                     + (" (.pte through et-bench, the native runner)" if self.profile.runner == "native" else ""))
        if p.get("hwcaps") is not None:
            facts.append(f"CPU features its kernels can use: {' '.join(p['hwcaps']) or 'none reported'}")
        if self.profile.emulated:
            facts.append(f"emulated: {EMULATED}")
        free = p.get("free_gb")
        if free is not None:
            facts.append(f"free disk under {self.workdir}: {free:.1f} GB")
            if free < MIN_FREE_GB:
                problems.append(f"device {self.name}: only {free:.2f} GB free under {self.workdir}; artifacts need "
                                f"up to a few hundred MB each (free space or set workdir)")
        return facts, problems

    # ------------------------------------------------------------------------------------------ artifacts
    def push(self, directory: Path) -> str:
        """The artifact's folder on the device, pushed into its content-addressed cache if not there yet."""
        directory = Path(directory)
        if directory.is_file():
            directory = directory.parent
        local = str(directory.resolve())
        if local in self._pushed:
            return self._pushed[local]
        cache = f"{self.workdir}/artifacts"
        if self._cached is None:
            out = self.ssh.run(shell_and(["mkdir", "-p", cache], ["ls", "-1", cache]), what="listing its cache")
            self._cached = {line.strip() for line in out.splitlines() if line.strip()}
        key = artifact_key(directory)
        remote = f"{cache}/{key}"
        if key not in self._cached:
            part = f"{remote}.part-{new_session_id()}"
            self.ssh.run(shell_and(["mkdir", "-p", part], ["tar", "-xf", "-", "-C", part], ["mv", part, remote]),
                         what=f"pushing {directory.name}", input=tar_dir(directory), timeout=1800, stage="push")
            self._cached.add(key)
        self._pushed[local] = remote
        return remote

    # ------------------------------------------------------------------------------------------ the native runner
    def _native_bundle(self, probe: dict[str, Any]) -> Path:
        """The local et-bench bundle (binary + its libraries) built for the device's machine."""
        from devices.native import find_binary
        from devices.native.cross import bundle_of

        if self.profile.native_runner:
            return bundle_of(find_binary(self.profile.native_runner))
        machine = str(probe.get("machine") or "")
        from devices.native import host_machine

        if machine == host_machine():  # a board like this machine: its host build, whose libraries stay here
            raise ToolkitError(f"device {self.name} is {machine} like this machine; the native runner a board "
                               "runs is a bundle: set native_runner to one (python -m devices.native build --arch "
                               f"{machine} --out DIR gives DIR/bundle/et-bench)")
        return bundle_of(find_binary(None, arch=machine))

    def native_runner(self) -> str:
        """et-bench on the device (its bundle pushed once per session into the content-addressed cache)."""
        if self._native is None:
            from devices.native import BINARY

            self._native = f"{self.push(self._native_bundle(self.probe()))}/{BINARY}"
        return self._native

    def runners(self, artifacts: list[Any]) -> list[str]:
        if self.profile.runner != "native":
            return ["python"] * len(artifacts)
        return ["native" if _format_of(a) == "executorch" else "python" for a in artifacts]

    # ------------------------------------------------------------------------------------------ measuring
    def _worker_for(self, threads: int) -> Worker:
        if self._worker is not None and self._threads == threads:
            return self._worker
        self._close_worker()
        from devices.worker import worker_env

        command = self._python_command("devices.worker", env=worker_env(threads, self.profile.pin),
                                       pidfile=self._pidfile())
        self._worker = Worker("devices.worker", argv=self.ssh.argv(command), label=f"{self.name} worker")
        self._threads = threads
        return self._worker

    def _pidfile(self) -> str:
        return f"{self._open()}/worker.pid"

    def _kill_remote_worker(self) -> None:
        """A hung worker on the board: its ssh client is gone, so kill it there (best effort)."""
        try:
            self.ssh.run(f"kill -9 \"$(cat {remote_command([self._pidfile()])})\"", what="killing a hung worker",
                         timeout=30)
        except RemoteError:
            pass

    def run_group(self, artifacts: list[Any], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, timeout: float, seed: int, first_round: int = 0,
                  units: str | None = None) -> list[Measurement | MeasureError]:
        """Push what is missing, then time the group in interleaved rounds in the board's worker. A member that
        cannot be pushed fails alone; a transport failure fails the group with stage "transport"."""
        if rounds < 1 or per_round < 1 or rounds * per_round < 2:
            raise ToolkitError(f"a cell needs at least 2 timed iterations (rounds {rounds} x per round {per_round})")
        self.check_threads(threads)
        remote: list[str | MeasureError] = []
        for a in artifacts:
            try:
                remote.append(self.push(Path(getattr(a, "dir", a))))
            except RemoteError as exc:
                if exc.stage == "transport":
                    raise MeasureError(str(exc), "transport") from None
                remote.append(MeasureError(str(exc), exc.stage))
        paths = [r for r in remote if isinstance(r, str)]
        runners = [ru for ru, r in zip(self.runners(artifacts), remote) if isinstance(r, str)]
        results: list[Measurement | MeasureError] = []
        if paths:
            request = {"op": "measure_group", "artifacts": paths, "rounds": int(rounds), "per_round": int(per_round),
                       "warmup": int(warmup), "switch_warmup": int(switch_warmup), "threads": int(threads),
                       "seed": int(seed), "first_round": int(first_round), "units": units, "runners": runners,
                       "timeout": float(timeout)}
            if "native" in runners:
                try:
                    request["native_runner"] = self.native_runner()
                except RemoteError as exc:
                    raise MeasureError(str(exc), exc.stage) from None
            try:
                reply = self._worker_for(threads).call(request, timeout)
            except WorkerError as exc:
                raise self._worker_failure(exc) from None
            if not reply.get("ok"):
                raise MeasureError(f"device {self.name}: {reply.get('error', 'unknown error')}",
                                   reply.get("stage", "run"))
            results = [Measurement(**m["measurement"]) if m.get("ok") else
                       MeasureError(m.get("error", "unknown error"), m.get("stage", "run")) for m in reply["members"]]
            if self.profile.emulated:  # stored, but never read as a latency (bench/analysis.py)
                for m in results:
                    if isinstance(m, Measurement):
                        m.device_state = {**m.device_state, "emulated": EMULATED}
        it = iter(results)
        return [r if isinstance(r, MeasureError) else next(it) for r in remote]

    def _worker_failure(self, exc: WorkerError) -> MeasureError:
        if exc.stage == "timeout":
            self._kill_remote_worker()
            return MeasureError(f"device {self.name}: {exc}", "timeout")
        if exc.returncode == 255:  # ssh's own status: the connection failed or dropped, not the worker
            return MeasureError(classify_ssh(str(exc), self.name, self.profile.ssh), "transport")
        return MeasureError(f"device {self.name}: {exc}", exc.stage)

    def outputs(self, artifact: Any, x: Any, *, threads: int = 1, units: str | None = None) -> Any:
        """The artifact's outputs on inputs x, computed by the device's worker (a parity check's device side)."""
        from devices.subproc import call_outputs

        remote = self.push(Path(getattr(artifact, "dir", artifact)))
        native = self.native_runner() if self.runners([artifact]) == ["native"] else None
        try:
            return call_outputs(self._worker_for(threads), remote, x, threads=threads, units=units,
                                native_runner=native)
        except WorkerError as exc:
            raise self._worker_failure(exc) from None

    # ------------------------------------------------------------------------------------------ set-up
    def provision(self, *, with_executorch: bool = False, online: bool = False, say: Any = print) -> str:
        """Create WORKDIR/venv on the device from devices/requirements-board.txt (devices/provision.py)."""
        from devices.provision import provision

        python = provision(self, with_executorch=with_executorch, online=online, say=say)
        self._python, self._probe = None, None
        return python

    # ------------------------------------------------------------------------------------------ the end
    def _close_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._threads = None

    def close(self) -> None:
        """Stop the worker, remove this session's folder on the device, end the connection."""
        self._close_worker()
        if self._session is not None:
            try:
                self.ssh.run(remote_command(["rm", "-rf", "--", self._session]), what="removing the session folder",
                             timeout=60)
            except RemoteError:
                pass
            self._session = None
        self._pushed.clear()
        self._cached = None
        self._native = None
        self.ssh.close()


KIND = Kind("ssh", SshProfile, SshDevice)

