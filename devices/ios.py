"""The `ios` device kind: an iPhone attached to a Mac, reached through a `macos` profile (over ssh or local).

`.mlpackage` files are timed on the phone with Core ML compute units as on the Mac. The Mac runs
`python -m devices.ios_bench` (the toolkit's sources copied there as for any ssh device), which uses coremltools'
on-device benchmarking where the Mac's coremltools has it (`coremltools.models.ml_program.experimental`: it builds
and signs a model-runner app with `xcrun devicectl` and returns per-iteration samples of Core ML's own predict
timer), timing the group in interleaved rounds with every model loaded on the phone; otherwise a generated XCTest
harness (a Swift package rendered from devices/ios_template/ with `iterationCount = N`) run with
`xcodebuild test -destination id=UDID`, read from the per-iteration `values: [...]` of its `measured [...]` line
(devices/parsers.py; never the rounded `average:`). The XCTest path times each model in one burst (one round).

Profile keys: mac (the macos profile to go through; required), udid (required), team_id (signing; required by
both paths), compute_units (default ["ALL"]), description.

Not run here: we have no Mac and no iPhone. Tested on Linux: profile validation, the template rendering, the
xcodebuild command line, parsing its output, the refusal when the Mac profile means this (non-Mac) computer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.apple import COMPUTE_UNITS, check_units
from devices.base import Kind, MeasureError, Measurement, OneBurst
from devices.remote import check_keys
from models.common import brief
from models.errors import ToolkitError

TEMPLATE = Path(__file__).resolve().parent / "ios_template"
_UDID = re.compile(r"[0-9A-Fa-f-]{20,64}")  # whole values only (fullmatch: `$` would let a final newline in)
_TEAM = re.compile(r"[A-Z0-9]{10}")
SWIFT_UNITS = {"CPU_ONLY": "cpuOnly", "CPU_AND_GPU": "cpuAndGPU", "CPU_AND_NE": "cpuAndNeuralEngine", "ALL": "all"}


@dataclass(frozen=True)
class IosProfile:
    kind: str = "ios"
    description: str = ""
    mac: str = ""
    udid: str = ""
    team_id: str = ""
    compute_units: tuple[str, ...] = ("ALL",)

    KEYS = {"kind": str, "description": str, "mac": str, "udid": str, "team_id": str, "compute_units": list}

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> IosProfile:
        check_keys(prof, where, cls.KEYS, required=("mac", "udid", "team_id"))
        if not _UDID.fullmatch(prof["udid"]):
            raise ToolkitError(f"{where}: udid {brief(prof['udid'])} is not a device identifier (`xcrun devicectl list "
                               "devices` on the Mac lists them)")
        if not _TEAM.fullmatch(prof["team_id"]):
            raise ToolkitError(f"{where}: team_id {brief(prof['team_id'])} is not an Apple development team id (10 "
                               "capital letters and digits)")
        units = prof.get("compute_units", ["ALL"])
        return cls(kind="ios", description=prof.get("description", ""), mac=prof["mac"], udid=prof["udid"],
                   team_id=prof["team_id"], compute_units=tuple(check_units(units, f"{where}: compute_units")))


# ---------------------------------------------------------------------------------------------------- pure parts
def render_harness(model_file: str, *, units: str, warmup: int, iters: int, height: int, width: int,
                   input_name: str = "input") -> dict[str, str]:
    """The XCTest package's files (relative path -> text) for one model; the model itself is copied beside them into
    Tests/BenchTests/."""
    if units not in COMPUTE_UNITS:
        raise ToolkitError(f"unknown Core ML compute units {units!r}")
    if iters < 1 or warmup < 0:
        raise ToolkitError(f"bad iteration counts: warmup {warmup}, iterations {iters}")
    stem, _, ext = model_file.rpartition(".")
    values = {"MODEL_FILE": model_file, "MODEL_STEM": stem, "MODEL_EXT": ext, "UNITS": units,
              "UNITS_SWIFT": SWIFT_UNITS[units], "WARMUP": str(warmup), "ITERS": str(iters), "HEIGHT": str(height),
              "WIDTH": str(width), "INPUT": input_name}
    out = {}
    for src in sorted(TEMPLATE.rglob("*")):
        if src.is_file():
            text = src.read_text()
            for k, v in values.items():
                text = text.replace(f"@{k}@", v)
            left = re.search(r"@[A-Z_]+@", text)
            if left:
                raise ToolkitError(f"template {src.name} has a placeholder left: {left[0]}")
            out[str(src.relative_to(TEMPLATE)).removesuffix(".in")] = text
    return out


def xcodebuild_command(package_dir: str, udid: str, team_id: str, result_bundle: str) -> list[str]:
    """`xcodebuild test` on the phone for the generated package (signing with the team; results in a bundle that
    `xcrun xcresulttool get test-results metrics` can read)."""
    return ["xcodebuild", "test", "-scheme", "ToolkitBench-Package", "-destination", f"id={udid}",
            "-resultBundlePath", result_bundle, "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={team_id}",
            "CODE_SIGN_STYLE=Automatic"]


class IosDevice(OneBurst):
    kind = "ios"
    give_up_after = 3

    def __init__(self, name: str, profile: IosProfile):
        self.name = name
        self.profile = profile
        self.compute_units = profile.compute_units
        self.profiles_file: str | None = None  # set by devices.get: where the mac profile is looked up
        self._mac: Any = None

    def mac(self) -> Any:
        if self._mac is None:
            import devices

            mac = devices.get(self.profile.mac, self.profiles_file)
            if mac.kind != "macos":
                raise ToolkitError(f"device {self.name}: mac = {self.profile.mac!r} is a {mac.kind} profile, not "
                                   "macos")
            self._mac = mac
        return self._mac

    def can_run(self, fmt: str) -> str | None:
        return None if fmt == "coreml" else "an iPhone runs Core ML only here (the other formats: android kind)"

    def describe(self) -> dict[str, Any]:
        return {"device": self.name, "kind": self.kind, "description": self.profile.description,
                "udid": self.profile.udid, "through": self.profile.mac, "compute_units": list(self.compute_units),
                "mac": self.mac().describe()}

    def check(self) -> tuple[list[str], list[str]]:
        try:
            facts, problems = self.mac().check()
        except ToolkitError as exc:
            return [], [f"device {self.name}: through {self.profile.mac}: {exc}"]
        out = self._on_mac({"op": "list"}, timeout=120)
        phones = out.get("devices", [])
        if not any(d.get("udid") == self.profile.udid for d in phones):
            problems.append(f"device {self.name}: iPhone {self.profile.udid} is not connected to {self.profile.mac} "
                            f"(connected: {', '.join(d.get('name', '?') for d in phones) or 'none'})")
        facts.append(f"benchmarking on the phone through: {out.get('method', '?')}")
        return facts, problems

    def _on_mac(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        mac = self.mac()
        arg = json.dumps(request)
        if hasattr(mac, "ssh"):
            text = mac.ssh.run(mac._python_command("devices.ios_bench", arg), what="the iPhone benchmark",
                               timeout=timeout)
        else:
            proc = subprocess.run([sys.executable, "-m", "devices.ios_bench", arg], capture_output=True, text=True,
                                  timeout=timeout)
            if proc.returncode:
                raise ToolkitError(f"device {self.name}: {' '.join(proc.stderr.split())[-300:]}")
            text = proc.stdout
        try:
            reply = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ToolkitError(f"device {self.name}: no answer from the Mac ({text[-200:]!r})") from None
        if not reply.get("ok"):
            raise ToolkitError(f"device {self.name}: {reply.get('error', 'unknown error')}")
        return reply

    def run_group(self, artifacts: list[Any], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, timeout: float, seed: int, first_round: int = 0,
                  units: str | None = None) -> list[Measurement | MeasureError]:
        mac = self.mac()
        paths = [mac.push(Path(getattr(a, "dir", a))) if hasattr(mac, "push") else str(getattr(a, "dir", a))
                 for a in artifacts]
        request = {"op": "measure", "udid": self.profile.udid, "team_id": self.profile.team_id,
                   "units": units or self.compute_units[0], "artifacts": paths, "rounds": rounds,
                   "per_round": per_round, "warmup": warmup, "switch_warmup": switch_warmup, "seed": seed,
                   "first_round": first_round}
        try:
            reply = self._on_mac(request, timeout=timeout * max(1, len(artifacts)) + 600)
        except ToolkitError as exc:
            raise MeasureError(str(exc), getattr(exc, "stage", "run")) from None
        return [Measurement(**m["measurement"]) if m.get("ok") else MeasureError(m.get("error", "?"), "run")
                for m in reply["members"]]

    def close(self) -> None:
        if self._mac is not None:
            self._mac.close()
            self._mac = None


KIND = Kind("ios", IosProfile, IosDevice)
