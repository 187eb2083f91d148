"""What a machine says about itself, as one JSON object (`python -m devices.probe [WORKDIR]`).

Run on a board or a Mac through ssh (devices/ssh.py) with the toolkit's sources copied there; it needs only the
Python standard library, never torch. It reports the CPU model, cores, memory, OS, Python, which runtime packages
are installed (found by their distribution metadata, without importing them: importing executorch's Python
runtime would pull in torch) and the free disk under WORKDIR. `devices check` turns the answer into problems.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Arm Ltd's (implementer 0x41) core part numbers, as lscpu names them: an aarch64 /proc/cpuinfo has no model name.
ARM_PARTS = {0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72",
             0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77",
             0xD41: "Cortex-A78", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD48: "Cortex-X2",
             0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3", 0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4"}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        for key in ("model name", "Model", "Hardware", "cpu model"):
            for line in text.splitlines():
                if line.split(":")[0].strip() == key and ":" in line:
                    return line.split(":", 1)[1].strip()
        fields = {ln.split(":")[0].strip(): ln.split(":", 1)[1].strip() for ln in text.splitlines() if ":" in ln}
        if fields.get("CPU implementer") == "0x41" and "CPU part" in fields:
            part = int(fields["CPU part"], 16)
            return f"Arm {ARM_PARTS.get(part, f'part 0x{part:03x}')} (r{int(fields.get('CPU variant', '0'), 16)}" \
                   f"p{fields.get('CPU revision', '0')})"
    except (OSError, ValueError):
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return platform.processor() or platform.machine()


def _board_model() -> str | None:
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model", "/sys/class/dmi/id/product_name"):
        try:
            text = Path(p).read_bytes().decode(errors="replace").strip("\x00\n ")
            if text:
                return text
        except OSError:
            continue
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "hw.model"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


# The Linux aarch64 feature bits (arch/arm64/include/uapi/asm/hwcap.h) that decide which kernels XNNPACK, MLAS and
# LiteRT pick: NEON (asimd), half-precision arithmetic (asimdhp, ARMv8.2 FP16), dot product, SVE, int8 / bf16 matmul.
AARCH64_HWCAP = {0: "fp", 1: "asimd", 8: "atomics", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve",
                 23: "asimdfhm"}
AARCH64_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}


def _hwcaps() -> list[str] | None:
    """What the kernel (or qemu-user) tells this process the CPU can do, from getauxval; aarch64 Linux only."""
    if platform.machine() != "aarch64" or sys.platform != "linux":
        return None
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        caps, caps2 = getauxval(16), getauxval(26)  # AT_HWCAP, AT_HWCAP2
    except (OSError, AttributeError):
        return None
    return ([name for bit, name in AARCH64_HWCAP.items() if caps >> bit & 1]
            + [name for bit, name in AARCH64_HWCAP2.items() if caps2 >> bit & 1])


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe(workdir: str | None = None) -> dict[str, Any]:
    from export.core import FORMATS

    free = None
    if workdir:
        p = Path(workdir)
        while not p.exists() and p.parent != p:
            p = p.parent
        try:
            free = round(shutil.disk_usage(p).free / 2**30, 2)
        except OSError:
            free = None
    packages = sorted({pkg for s in FORMATS.values() for pkg in s.runtime_packages} | {"numpy"})
    return {
        "board": _board_model(), "cpu_model": _cpu_model(), "cores": os.cpu_count(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_gb(), "os": platform.platform(), "system": platform.system(),
        "machine": platform.machine(), "python": platform.python_version(), "python_path": sys.executable,
        "libc": "-".join(platform.libc_ver()) or None, "hwcaps": _hwcaps(),
        **({"qemu_cpu": os.environ["QEMU_CPU"]} if os.environ.get("QEMU_CPU") else {}),
        "packages": {pkg: _version(pkg) for pkg in packages}, "torch": _version("torch"),
        "formats": {f: {"runtime": s.runtime, "packages": list(s.runtime_packages)} for f, s in FORMATS.items()},
        "free_gb": free, "workdir": workdir,
    }


def main() -> None:
    print(json.dumps(probe(sys.argv[1] if len(sys.argv) > 1 else None)))


if __name__ == "__main__":
    main()
