"""Runs on the Mac (`python -m devices.ios_bench REQUEST_JSON`): times Core ML packages on an attached iPhone.

Two ways, chosen by what the Mac has:
  * coremltools' on-device benchmarking (coremltools.models.ml_program.experimental: `Device`,
    `prepare_for_model_debugging` builds and signs a model-runner app with the team id, `MLModelBenchmarker` returns
    per-iteration samples of Core ML's own predict timer). The group is timed in interleaved rounds
    (devices/rounds.py) with every model loaded on the phone.
  * otherwise an XCTest harness rendered from devices/ios_template/ (devices/ios.py) per model, run with
    `xcodebuild test -destination id=UDID`; its `measured [...] values: [...]` line is parsed (devices/parsers.py).
    One burst per model (one round): XCTest cannot interleave models.
Prints one JSON line: {"ok": true, "method": ..., "members": [...]} (members as devices/worker.py returns them).

Written from coremltools 9's sources and Apple's documentation; not run (no Mac, no iPhone where it was written).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _benchmarker():
    try:
        from coremltools.models.ml_program.experimental import perf_utils, remote_device
    except ImportError:
        return None
    if not hasattr(perf_utils, "MLModelBenchmarker") or not hasattr(remote_device, "Device"):
        return None
    return perf_utils, remote_device


def _list() -> dict[str, Any]:
    tools = _benchmarker()
    method = "coremltools MLModelBenchmarker" if tools else "XCTest harness (xcodebuild test)"
    phones = []
    if tools:
        for d in tools[1].Device.get_devices():
            phones.append({"name": d.name, "udid": d.udid, "os": d.os_version, "state": str(d.state)})
    else:
        out = subprocess.run(["xcrun", "devicectl", "list", "devices", "--json-output", "/dev/stdout"],
                             capture_output=True, text=True, timeout=60).stdout
        try:
            for d in json.loads(out[out.index("{"):]).get("result", {}).get("devices", []):
                hw = d.get("hardwareProperties", {})
                phones.append({"name": d.get("deviceProperties", {}).get("name"), "udid": hw.get("udid")})
        except ValueError:
            pass
    return {"ok": True, "method": method, "devices": phones}


async def _measure_benchmarker(req: dict[str, Any], tools) -> dict[str, Any]:
    import coremltools as ct

    from devices.rounds import plan

    perf_utils, remote_device = tools
    phone = next((d for d in remote_device.Device.get_devices() if d.udid == req["udid"]), None)
    if phone is None:
        return {"ok": False, "error": f"iPhone {req['udid']} is not connected to this Mac"}
    creds = remote_device.AppSigningCredentials(development_team=req["team_id"])
    phone = await phone.prepare_for_model_debugging(credentials=creds)
    units = getattr(ct.ComputeUnit, req["units"])
    members: list[dict[str, Any]] = []
    for path in req["artifacts"]:
        mlpackage = next(Path(path).glob("*.mlpackage"))
        bench = perf_utils.MLModelBenchmarker(ct.models.MLModel(str(mlpackage), compute_units=units), device=phone)
        load = await bench.benchmark_load(iterations=1)
        first = await bench.benchmark_predict(iterations=1)
        if req["warmup"]:
            await bench.benchmark_predict(iterations=req["warmup"])
        members.append({"bench": bench, "samples": [], "rounds": [], "load_ms": load.samples[0],
                        "first_ms": first.samples[0]})
    the_plan = plan(len(members), req["rounds"], req["per_round"], req["switch_warmup"], req["seed"],
                    req["first_round"])
    for rnd, i in the_plan.chunks():
        m = members[i]
        if req["switch_warmup"]:
            await m["bench"].benchmark_predict(iterations=req["switch_warmup"])
        got = await m["bench"].benchmark_predict(iterations=req["per_round"])
        m["samples"] += list(got.samples)
        m["rounds"] += [rnd] * len(got.samples)
    return {"ok": True, "method": "coremltools MLModelBenchmarker", "members": [
        {"ok": True, "measurement": {"samples_ms": m["samples"], "rounds": m["rounds"], "load_ms": m["load_ms"],
                                     "first_ms": m["first_ms"], "warmup": req["warmup"], "threads": 1,
                                     "per_round": req["per_round"], "switch_warmup": req["switch_warmup"],
                                     "runtime_samples_ms": m["samples"], "runtime": f"coreml {req['units']} (iPhone)",
                                     "runtime_versions": {"coremltools": ct.__version__}}} for m in members]}


def _measure_xctest(req: dict[str, Any]) -> dict[str, Any]:
    from devices.ios import render_harness, xcodebuild_command
    from devices.parsers import parse

    out = []
    n = req["rounds"] * req["per_round"]
    for path in req["artifacts"]:
        manifest = json.loads((Path(path) / "manifest.json").read_text())
        mlpackage = Path(path) / manifest["file"]
        h, w = manifest["resolution"]
        with tempfile.TemporaryDirectory(prefix="toolkit-xctest-") as tmp:
            for rel, text in render_harness(mlpackage.name, units=req["units"], warmup=req["warmup"], iters=n,
                                            height=h, width=w).items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_text(text)
            shutil.copytree(mlpackage, Path(tmp) / "Tests/BenchTests" / mlpackage.name)
            proc = subprocess.run(xcodebuild_command(tmp, req["udid"], req["team_id"], f"{tmp}/R.xcresult"),
                                  cwd=tmp, capture_output=True, text=True, timeout=3600)
        try:
            r = parse(proc.stdout, "xctest", expected=n)
        except Exception as exc:  # noqa: BLE001 - this model's failure, one line
            tail = " ".join(proc.stderr.split())[-200:]
            out.append({"ok": False, "error": f"xcodebuild test: {exc}" + (f" ({tail})" if tail else "")})
            continue
        out.append({"ok": True, "measurement": {
            "samples_ms": r.samples_ms, "rounds": [req["first_round"]] * n, "load_ms": None, "first_ms": None,
            "warmup": req["warmup"], "threads": 1, "per_round": n, "switch_warmup": 0,
            "cpu_samples_ms": r.cpu_samples_ms or [], "runtime": f"coreml {req['units']} (iPhone, XCTest)"}})
    return {"ok": True, "method": "XCTest harness (xcodebuild test)", "members": out}


def main() -> None:
    req = json.loads(sys.argv[1])
    try:
        if req.get("op") == "list":
            reply = _list()
        else:
            tools = _benchmarker()
            reply = asyncio.run(_measure_benchmarker(req, tools)) if tools else _measure_xctest(req)
    except Exception as exc:  # noqa: BLE001 - one line back to the driver
        reply = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    print(json.dumps(reply))


if __name__ == "__main__":
    main()
