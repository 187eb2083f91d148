"""System programs a test needs (sshd, adb, cmake, a C++ compiler): installed with apt when the suite may (as root, or
in CI), else the test skips with one line saying what to install. In CI (`CI` set) a missing program is a failure,
never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

_TRIED: set[str] = set()


def _may_install() -> bool:
    return bool(os.environ.get("CI")) or (hasattr(os, "geteuid") and os.geteuid() == 0)


def _find(program: str) -> str | None:
    if os.sep in program:
        return program if Path(program).exists() else None
    return shutil.which(program)


def need_program(program: str, package: str) -> str:
    """The path of `program` (a name on PATH or an absolute path), apt-installing `package` when allowed."""
    found = _find(program)
    if found:
        return found
    if _may_install() and package not in _TRIED and shutil.which("apt-get"):
        _TRIED.add(package)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                    package]):
            subprocess.run(sudo + cmd, env=env, capture_output=True, timeout=900)
        found = _find(program)
        if found:
            return found
    message = f"{program} is missing: install it (apt install {package}) to run this test"
    if os.environ.get("CI"):
        pytest.fail(message + " [CI: system programs must be installable, tests may not skip]")
    pytest.skip(message)
