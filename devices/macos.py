"""The `macos` device kind: a Mac, over ssh (`host` in the profile) or this computer when the toolkit runs on macOS.

A Mac runs what a Linux board runs (ONNX, TFLite, ExecuTorch through the toolkit's worker) and Core ML for real:
`.mlpackage` files are timed through coremltools with the profile's compute units (`compute_units`, a list of
CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL; a sweep axis: one cell per unit, `--compute-units` overrides it), with
Core ML's own timers (last_predict_duration_in_nano_seconds, load_duration_in_nano_seconds) stored beside the wall
clock. `python -m devices parity NAME ARTIFACT` checks a Core ML artifact on the Mac against the PyTorch reference
(computed here) and updates its manifest's verdict, which export on Linux leaves at "not run: needs macOS".

Profile keys: description, compute_units (default ["CPU_ONLY", "ALL"]); with `host`: the ssh keys of the ssh kind
(port, user, identity_file, known_hosts, connect_timeout), python, workdir. Without `host` the profile means this
computer, which must be a Mac: elsewhere it is refused in one line.

Not run here: we have no Mac. What is tested on Linux: profile validation, the ssh command lines, the refusal,
the compute-units axis of the sweep. docs/devices.md lists what a Mac user runs to see the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devices.apple import COMPUTE_UNITS, check_units, refuse_off_macos
from devices.base import Kind
from devices.host import HostDevice, HostProfile
from devices.remote import SSH_KEYS, SshKeys, check_keys, parse_ssh_keys
from devices.ssh import DEFAULT_WORKDIR, SshDevice, SshProfile, check_workdir
from models.errors import ToolkitError

DEFAULT_UNITS = ("CPU_ONLY", "ALL")


@dataclass(frozen=True)
class MacProfile:
    kind: str = "macos"
    description: str = ""
    ssh: SshKeys | None = None  # None: this computer
    python: str | None = None
    workdir: str = DEFAULT_WORKDIR
    compute_units: tuple[str, ...] = DEFAULT_UNITS

    KEYS = {"kind": str, "description": str, **SSH_KEYS, "python": str, "workdir": str, "compute_units": list}

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> MacProfile:
        check_keys(prof, where, cls.KEYS)
        remote_only = [k for k in (*SSH_KEYS, "python", "workdir") if k in prof and k != "host"]
        if "host" not in prof and remote_only:
            raise ToolkitError(f"{where}: {', '.join(remote_only)} need(s) `host` (without it the profile means "
                               "this computer)")
        units = prof.get("compute_units", list(DEFAULT_UNITS))
        if not all(isinstance(u, str) for u in units):
            raise ToolkitError(f"{where}: compute_units must list names from {', '.join(COMPUTE_UNITS)}")
        return cls(kind="macos", description=prof.get("description", ""),
                   ssh=parse_ssh_keys(prof, where) if "host" in prof else None, python=prof.get("python"),
                   workdir=check_workdir(prof.get("workdir", DEFAULT_WORKDIR), where),
                   compute_units=tuple(check_units(units, f"{where}: compute_units")))


class _RemoteMac(SshDevice):
    kind = "macos"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "compute_units": list(self.compute_units)}


class _LocalMac(HostDevice):
    kind = "macos"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "compute_units": list(self.compute_units)}


def MacDevice(name: str, profile: MacProfile) -> Any:  # noqa: N802 - the kind's device class (a factory)
    """A Mac over ssh, or this computer when it is one; refused in one line on any other computer."""
    if profile.ssh is not None:
        dev: Any = _RemoteMac(name, SshProfile(kind="ssh", description=profile.description, ssh=profile.ssh,
                                                python=profile.python, workdir=profile.workdir, pin=False))
    else:
        why = refuse_off_macos(name)
        if why:
            raise ToolkitError(why)
        dev = _LocalMac(name, HostProfile(description=profile.description, pin=False))  # macOS has no affinity
    dev.compute_units = profile.compute_units
    return dev


KIND = Kind("macos", MacProfile, MacDevice)
