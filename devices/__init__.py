"""Devices: where an exported artifact runs and how long it takes there.

    devices.get(name, profiles_file=None) -> Device   (profiles in devices/devices.toml; "host" is built in)
    device.can_run(fmt) -> reason | None
    device.run_group(artifacts, rounds=, per_round=, warmup=, switch_warmup=, threads=, timeout=, seed=)
        -> [Measurement | MeasureError]   (the round protocol: devices/rounds.py)
    device.run(artifact, iterations=, warmup=, threads=, timeout=) -> Measurement   (one burst)

A Device knows nothing of sweeps or reports (bench/ does); it times the artifacts it is given and returns raw
per-iteration latencies, each with its round, plus what was measured around them. A device kind is one module of
this package that defines `KIND` (its profile dataclass and device class): `host` (devices/host.py: the runtimes
installed on this machine, timed in a persistent worker process), `ssh` (a Linux board), `macos` (a Mac, ssh or
local), `android` (a phone over adb, timed by native programs on it), `ios` (an iPhone through a Mac). A profile
naming another kind is an error, not a silent fallback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from devices.base import Device, Kind, MeasureError, Measurement
from models.common import check_name
from models.errors import ToolkitError, unknown
from models.registry import Registry

__all__ = ["Device", "Kind", "MeasureError", "Measurement", "KINDS", "PROFILES", "get", "profiles", "list_devices"]

PROFILES = Path(__file__).resolve().parent / "devices.toml"


KINDS: Registry[Kind] = Registry("device kind")


def _discover_kinds() -> None:
    """Every module in devices/ that defines KIND is one device kind: adding a kind is adding a file."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _NOT_KINDS or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"devices.{info.name}")
        kind = getattr(mod, "KIND", None)
        if kind is not None:
            KINDS.register(kind.name, kind)


# the measuring process and its pipe protocol, the ssh plumbing, parsers and programs run on devices: no KIND there
_NOT_KINDS = {"base", "worker", "subproc", "remote", "probe", "parsers", "parse_base", "parse_raw", "adb_parse",
              "ios_bench", "verify", "apple", "native"}


MAX_PROFILES_BYTES = 1 << 20  # a profiles file is a few KB


def _read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILES_BYTES + 1)
        if len(raw) > MAX_PROFILES_BYTES:
            raise ToolkitError(f"device profiles {path} are larger than {MAX_PROFILES_BYTES >> 20} MB: not a profiles "
                               "file")
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ToolkitError(f"device profiles {path} are not valid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ToolkitError(f"device profiles {path} are not valid TOML: values nested too deeply") from None
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


def get(name: str, user: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Device:
    """The device of a profile; unknown names list the known ones, a malformed profile is one line naming the key.
    `overrides` are profile keys set from the command line."""
    profs = profiles(user)
    if name not in profs:
        raise unknown("device", name, profs)
    prof = dict(profs[name])
    where = f"device profile [{name}] in {prof.pop('_file', 'the built-in defaults')}"
    for key, value in prof.items():  # no program argument or path can hold a NUL byte
        if any(isinstance(x, str) and "\x00" in x for x in (value if isinstance(value, list) else [value])):
            raise ToolkitError(f"{where}: {key} holds a NUL byte")
    prof.update(overrides or {})
    if not KINDS:
        _discover_kinds()
    kind = prof.get("kind", "host")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ToolkitError(f"{where}: kind {kind!r} is not implemented (implemented: {', '.join(KINDS)})")
    k = KINDS.get(kind)
    dev = k.device(name, k.profile.parse(prof, where))
    if hasattr(dev, "profiles_file"):  # a kind that goes through another profile (an iPhone through its Mac)
        dev.profiles_file = user
    return dev
