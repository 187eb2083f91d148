"""Wheels for another machine, fetched on this one with pip and cached: what `devices provision` installs on a board
(offline, from a folder pushed there) and what the native runner's cross build links against.

    platform_tags(machine, glibc) -> ["manylinux_2_17_aarch64", ..., "manylinux_2_36_aarch64", "manylinux2014_..."]
    fetch(requirements, machine=, python=, glibc=, say=) -> Path   a folder holding every wheel, cached by its inputs

Why on the host: a board resolving and downloading from PyPI itself needs the internet there and is slow where the
CPU is slow (under emulation pip's own start-up and resolution take minutes); `pip download` with `--platform`,
`--python-version`, `--implementation cp` and `--only-binary=:all:` picks the same files the board's pip would, and
the board's pip (with --no-index) still checks every wheel's tags against itself. pip 23 does not widen a
`manylinux_2_X` platform to the older ones it includes, so every tag from manylinux_2_17 up to the board's glibc
is given (plus the legacy manylinux2014 alias).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from models.errors import ToolkitError

MACHINES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
OLDEST_GLIBC_MINOR = 17  # manylinux2014 = manylinux_2_17: no older manylinux wheel is worth asking for


def cache_root() -> Path:
    from devices.native import cache_root as root

    return root()


def machine_name(machine: str) -> str:
    """A machine as Linux names it (`uname -m`): aarch64 for arm64, x86_64 for amd64."""
    m = MACHINES.get(str(machine).lower())
    if m is None:
        raise ToolkitError(f"no wheels are fetched for machine {machine!r}; known: aarch64, x86_64")
    return m


def platform_tags(machine: str, glibc: tuple[int, int]) -> list[str]:
    """Every manylinux platform tag a Linux machine with this glibc accepts, oldest first."""
    m = machine_name(machine)
    major, minor = glibc
    if major != 2 or minor < OLDEST_GLIBC_MINOR:
        raise ToolkitError(f"glibc {major}.{minor} is older than any manylinux wheel accepts (2.17)")
    return [f"manylinux_2_{i}_{m}" for i in range(OLDEST_GLIBC_MINOR, minor + 1)] + [f"manylinux2014_{m}"]


def parse_glibc(text: str) -> tuple[int, int]:
    """"2.36" (platform.libc_ver()'s version) as (2, 36)."""
    found = re.match(r"^(\d+)\.(\d+)", str(text or ""))
    if not found:
        raise ToolkitError(f"cannot tell the board's glibc version from {text!r} (not a glibc Linux?)")
    return int(found.group(1)), int(found.group(2))


def fetch(requirements: list[str], *, machine: str, python: str, glibc: tuple[int, int], no_deps: bool = False,
          what: str = "wheels", say=print) -> Path:
    """Download the wheels of `requirements` (pinned lines, as in a requirements file) for a Linux machine with this
    Python (e.g. "3.11") and glibc, with their dependencies, into a cache folder named by those inputs; a second call
    returns the folder at once (`no_deps`: these wheels alone). A failure is one line with pip's last error."""
    m = machine_name(machine)
    if not re.fullmatch(r"3\.\d{1,2}", str(python)):
        raise ToolkitError(f"the board's Python version {python!r} is not of the form 3.N")
    lines = sorted({ln.split("#")[0].strip() for ln in requirements if ln.split("#")[0].strip()})
    key = hashlib.sha256(json.dumps([lines, m, python, list(glibc), no_deps]).encode()).hexdigest()[:12]
    folder = cache_root() / f"wheels-{m}-cp{python.replace('.', '')}-{key}"
    stamp = folder / "complete.json"
    if stamp.is_file():
        return folder
    part = folder.with_name(f"{folder.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    reqs = part / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-input", "--progress-bar", "off", "--only-binary=:all:",
           "--implementation", "cp", "--python-version", python, "-d", str(part), "-r", str(reqs)]
    if no_deps:
        cmd.append("--no-deps")
    for tag in platform_tags(m, glibc):
        cmd += ["--platform", tag]
    say(f"fetching {what} for {m} / CPython {python} / glibc {glibc[0]}.{glibc[1]} with pip on this machine")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(part, ignore_errors=True)
        errors = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("ERROR")]
        tail = (errors or [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"])[-1]
        raise ToolkitError(f"fetching {what} for {m} failed: {tail[:300]}")
    wheels = sorted(p.name for p in part.glob("*.whl"))
    (part / "complete.json").write_text(json.dumps({"wheels": wheels, "seconds": round(time.monotonic() - t0, 1)}))
    try:
        part.rename(folder)
    except OSError:  # another process finished the same folder first
        shutil.rmtree(part, ignore_errors=True)
    say(f"{len(wheels)} wheels in {folder} ({time.monotonic() - t0:.1f} s)")
    return folder


def requirement_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]
