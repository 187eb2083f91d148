"""Programs a test needs from the system (cmake, a C++ compiler, later sshd and adb): `need_program`.

    from _system import need_program      # tests/ is on sys.path under pytest (no __init__.py here)
    cmake = need_program("cmake", "cmake")

Where the program is on PATH, its path is returned. Where it is missing and the suite may install it (running as
root, or in CI: the CI variable is set), it is installed with `apt-get install -y --no-install-recommends` (after an
`apt-get update` if the first attempt fails) and its path returned. Otherwise the test is skipped with one line
saying what to install. In CI a test never skips for a missing program: it fails, with apt's last line.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_TRIED: dict[str, str | None] = {}  # apt package -> None (installed) or the reason it could not be, per session


def need_program(name: str, apt_package: str, *, alternatives: tuple[str, ...] = ()) -> str:
    """The path of `name` (or of one of `alternatives`, e.g. "c++" for "g++"), installing `apt_package` when
    allowed; skips the calling test (fails it in CI) when the program cannot be had."""
    found = _which(name, alternatives)
    if found:
        return found
    ci = bool(os.environ.get("CI"))
    if ci or _is_root():
        reason = _apt_install(apt_package)
        found = _which(name, alternatives)
        if found:
            return found
        line = f"{name} is missing and `apt-get install {apt_package}` did not provide it: {reason or 'no error'}"
        if ci:
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
    pytest.skip(f"install {name} (apt install {apt_package}) to run this test")


def _which(name: str, alternatives: tuple[str, ...]) -> str | None:
    return next((p for p in map(shutil.which, (name, *alternatives)) if p), None)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(package: str) -> str | None:
    """Install one apt package (once per session); None when apt succeeded, else its last line."""
    if package in _TRIED:
        return _TRIED[package]
    if shutil.which("apt-get") is None:
        _TRIED[package] = "apt-get is not available here"
        return _TRIED[package]
    sudo = [] if _is_root() else (["sudo", "-n"] if shutil.which("sudo") else [])
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", package]
    proc = _run(install, env)
    if proc.returncode != 0:  # a fresh machine or container has no package lists yet
        _run([*sudo, "apt-get", "update"], env)
        proc = _run(install, env)
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    _TRIED[package] = None if proc.returncode == 0 else (lines[-1] if lines else f"exit {proc.returncode}")
    return _TRIED[package]


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", f"{type(exc).__name__}: {exc}")
