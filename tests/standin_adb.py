#!/usr/bin/env python3
"""STAND-IN for `adb` with a phone attached: the only stand-in in the suite. It replaces the phone, nothing that runs
here: pushed programs really run on this machine (the native ExecuTorch runner built here), with real taskset.

The phone's filesystem is the folder $STANDIN_ADB_ROOT: `/data/local/tmp/...` and the `/sys/...` files the android
kind reads map into it, `getprop` and `dumpsys thermalservice` are scripts in its bin/ (the CPU temperature comes
from the file `temp_c` there, so a test can heat the phone). The attached serial is $STANDIN_ADB_SERIAL; the file
`gone` in the root makes the phone vanish (adb's own error lines, exit 1). Every call is appended to `calls.log`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("STANDIN_ADB_ROOT", "/nonexistent-standin-phone"))
SERIAL = os.environ.get("STANDIN_ADB_SERIAL", "standin-phone")
MAPPED = ("/data/local/tmp", "/sys/devices/system/cpu", "/sys/class/thermal")


def local(path: str) -> str:
    for prefix in MAPPED:
        path = path.replace(prefix, str(ROOT) + prefix)
    return path


def fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def main(argv: list[str]) -> None:
    with open(ROOT / "calls.log", "a") as log:
        log.write(" ".join(argv) + "\n")
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if serial is None:
        fail("error: more than one device/emulator")
    gone = (ROOT / "gone").exists()
    cmd, args = argv[0], argv[1:]
    if serial != SERIAL or gone:
        if cmd in ("push", "pull"):
            fail(f"adb: error: failed to get feature set: device '{serial}' not found")
        fail(f"error: device '{serial}' not found")
    if cmd == "get-state":
        print("device")
    elif cmd == "push":
        src, dst = args
        Path(local(dst)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, local(dst))
        print(f"{src}: 1 file pushed, 0 skipped.")
    elif cmd == "shell":
        env = dict(os.environ, PATH=f"{ROOT / 'bin'}:{os.environ.get('PATH', '')}")
        proc = subprocess.run(["sh", "-c", local(" ".join(args))], env=env, capture_output=True, text=True)
        sys.stdout.write(proc.stdout.replace(str(ROOT), ""))
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    else:
        fail(f"adb: unknown command {cmd}")


def make_phone(root: Path, *, capacities: dict[int, int], temp_c: float = 38.0, model: str = "Stand-in Phone") -> None:
    """Lay out a stand-in phone's filesystem under `root`."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    for cpu, cap in capacities.items():
        d = root / f"sys/devices/system/cpu/cpu{cpu}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu_capacity").write_text(f"{cap}\n")
    (root / "temp_c").write_text(str(temp_c))
    props = {"ro.product.model": model, "ro.product.manufacturer": "Toolkit", "ro.soc.manufacturer": "StandIn",
             "ro.soc.model": "SI-1", "ro.product.cpu.abi": "x86_64", "ro.build.version.sdk": "34"}
    getprop = root / "bin/getprop"
    getprop.write_text("#!/bin/sh\n" + "".join(f"echo '[{k}]: [{v}]'\n" for k, v in props.items()))
    dumpsys = root / "bin/dumpsys"
    dumpsys.write_text(f"""#!/bin/sh
t=$(cat '{root}/temp_c')
echo 'IsStatusOverride: false'
echo 'Thermal Status: 0'
echo 'Cached temperatures:'
echo '\tTemperature{{mValue=99.0, mType=0, mName=CPU0, mStatus=0}}'
echo 'Current temperatures from HAL:'
echo "\tTemperature{{mValue=$t, mType=0, mName=CPU0, mStatus=0}}"
echo '\tTemperature{{mValue=30.0, mType=2, mName=battery, mStatus=0}}'
echo 'Current cooling devices from HAL:'
""")
    for f in (getprop, dumpsys):
        f.chmod(0o755)


if __name__ == "__main__":
    main(sys.argv[1:])
