"""Devices: where an exported artifact runs and how long it takes there.

    devices.get(name) -> Device            (profiles in devices/devices.toml; "host" is built in)
    device.run(artifact, iterations=, warmup=, threads=, timeout=) -> Measurement   (raw samples, load, first run)

A Device knows nothing of sweeps or reports (bench/ does); it takes one artifact and returns raw per-iteration
latencies plus what was measured around them. Only the `host` kind exists: the runtimes installed on this machine,
timed in a persistent worker process (devices/host.py, devices/worker.py). Phones and boards (adb, ssh, Xcode) are
not implemented; a profile naming another kind is an error, not a silent fallback.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from models.common import check_name
from models.errors import ToolkitError, unknown

PROFILES = Path(__file__).resolve().parent / "devices.toml"
KINDS = ("host",)


class MeasureError(ToolkitError):
    """A cell that could not be measured; `stage` says where: load, run, timeout or crash."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


@dataclass
class Measurement:
    """What one timed cell produced on a device (all times in milliseconds)."""

    samples_ms: list[float]  # one per timed iteration, in order
    load_ms: float  # creating the runtime session / interpreter from the file
    first_ms: float  # the first inference after loading (not part of warm-up or samples)
    warmup: int
    threads: int
    cpus: list[int] | None  # cores the measuring process was pinned to (None: not pinned)
    peak_rss_mb: float | None  # peak resident memory of the measuring process during the cell, where known
    overhead_us: float  # the harness's own per-iteration cost: an empty callable through the same loop (median)
    loadavg: float | None  # 1-minute load average of the machine when the cell started
    cpu_samples_ms: list[float] = field(default_factory=list)  # process CPU time of each timed iteration
    attempt_cvs: list[float] = field(default_factory=list)  # CV of every timed attempt (the kept one is the least)
    runtime: str = ""
    runtime_versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Device(Protocol):
    """A place to run artifacts. `runs_here(fmt)` is None when it can, else the reason (e.g. "needs macOS")."""

    name: str
    kind: str

    def runs_here(self, fmt: str) -> str | None: ...

    def describe(self) -> dict[str, Any]: ...

    def run(self, artifact: Any, *, iterations: int, warmup: int, threads: int, timeout: float,
            retries: int = 0, retry_cv: float = 0.10, retry_contention: float = 0.05) -> Measurement: ...

    def close(self) -> None: ...


def _read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ToolkitError(f"device profiles {path} are not valid TOML: {exc}") from None
    except OSError as exc:
        raise ToolkitError(f"cannot read device profiles {path}: {exc.strerror}") from None
    out = {}
    for name, prof in data.items():
        if not isinstance(prof, dict):
            raise ToolkitError(f"device profiles {path}: [{name}] must be a table")
        try:
            check_name(name, "device name")
        except ToolkitError as exc:
            raise ToolkitError(f"device profiles {path}: {exc}") from None
        out[name] = {**dict(prof), "_file": str(path)}
    return out


def profiles(user: str | Path | None = None, *, shipped: Path = PROFILES) -> dict[str, dict[str, Any]]:
    """Device profiles by name: the shipped file's tables, then those of a user's file (`--profiles FILE`), which
    add to and override them. `host` exists even when no file lists it. Names are checked against the safe-name
    pattern (a device name becomes part of run ids and lock files)."""
    out: dict[str, dict[str, Any]] = {"host": {"kind": "host"}}
    if shipped.exists():
        out.update(_read_profiles(shipped))
    if user is not None:
        user = Path(user)
        if not user.is_file():
            raise ToolkitError(f"no device profiles file {user}")
        out.update(_read_profiles(user))
    return out


def list_devices(user: str | Path | None = None) -> list[str]:
    return list(profiles(user))


def get(name: str, user: str | Path | None = None) -> Device:
    """The device of a profile; unknown names list the known ones, a malformed profile is one line naming the key."""
    profs = profiles(user)
    if name not in profs:
        raise unknown("device", name, profs)
    prof = dict(profs[name])
    where = f"device profile [{name}] in {prof.pop('_file', 'the built-in defaults')}"
    kind = prof.get("kind", "host")
    if kind not in KINDS:
        raise ToolkitError(f"{where}: kind {kind!r} is not implemented (implemented: {', '.join(KINDS)})")
    from devices.host import HostDevice, HostProfile

    return HostDevice(name, HostProfile.parse(prof, where))
