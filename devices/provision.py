"""`python -m devices provision NAME` for the ssh kinds: a venv on the board with the runtimes it needs.

The board's own Python is asked for its machine, version and glibc; the wheels of devices/requirements-board.txt
(every version pinned) are fetched on this computer for exactly that (devices/wheels.py, cached), pushed once into
the board's content-addressed cache and installed there with `pip install --no-index --find-links`. The board's pip
still checks every wheel's tags against itself, so a wheel that does not fit is refused there, not installed. No
index, no internet and no resolution on the board: a board without internet provisions the same way, and a slow
(or emulated) CPU does not spend minutes in pip's resolver. `--online` is the other way: the board's pip downloads
from the index itself. Each step's seconds are printed (docs/devices.md has what they were on the emulated board).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devices.remote import RemoteError, classify_ssh, remote_command, shell_and

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-board.txt"

# What provision asks the board's Python (its answer picks the wheels) and the pins --with-executorch adds.
ABOUT_PYTHON = ("import json, platform, sys; print(json.dumps({'machine': platform.machine(), "
                "'python': '%d.%d' % sys.version_info[:2], 'glibc': platform.libc_ver()[1]}))")
EXECUTORCH_PINS = ("torch==2.14.1", "executorch==1.5.1")


def provision(dev: Any, *, with_executorch: bool = False, online: bool = False, say: Any = print) -> str:
    """Create WORKDIR/venv on the device from devices/requirements-board.txt: the wheels fetched here for the
    device's machine, Python and glibc, pushed once and installed offline (`online`: the device's pip uses the
    index itself). pip's output streams through; each step's seconds are said."""
    from devices import wheels

    base = dev.ssh.expand(dev.profile.python or "python3")
    venv = f"{dev.workdir}/venv"
    lines = wheels.requirement_lines(REQUIREMENTS) + (list(EXECUTORCH_PINS) if with_executorch else [])
    times: dict[str, float] = {}
    t0 = time.monotonic()
    out = dev.ssh.run(remote_command([base, "-c", ABOUT_PYTHON]), what=f"asking its Python ({base})")
    try:
        about = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RemoteError(f"device {dev.name}: its Python ({base}) printed no answer ({out[-200:]!r})") from None
    times["ask"] = time.monotonic() - t0
    pip = [f"{venv}/bin/pip", "install", "--no-input", "--progress-bar", "off", "--disable-pip-version-check"]
    if online:
        reqs = f"{dev.workdir}/requirements-board.txt"
        dev.ssh.run(shell_and(["mkdir", "-p", dev.workdir], ["sh", "-c", 'cat > "$1"', "sh", reqs]),
                    what="copying the requirements", input=("\n".join(lines) + "\n").encode())
        install = [*pip, "-r", reqs]
    else:
        t = time.monotonic()
        folder = wheels.fetch(lines, machine=about["machine"], python=about["python"],
                              glibc=wheels.parse_glibc(about["glibc"]), what=f"the wheels of {dev.name}", say=say)
        times["fetch"] = time.monotonic() - t
        t = time.monotonic()
        say(f"provision {dev.name}: pushing {len(list(folder.glob('*.whl')))} wheels (once; cached there)")
        remote = dev.push(folder)
        times["push"] = time.monotonic() - t
        install = [*pip, "--no-index", "--find-links", remote, "-r", f"{remote}/requirements.txt"]
    say(f"provision {dev.name}: creating {venv} with {base} (Python {about['python']}, {about['machine']}, "
        f"glibc {about['glibc']})")
    for label, step in (("venv", [base, "-m", "venv", venv]), ("install", install)):
        t = time.monotonic()
        _stream(dev, step, label)
        times[label] = time.monotonic() - t
    say(f"provision {dev.name}: done in {time.monotonic() - t0:.0f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + ")")
    return f"{venv}/bin/python"


def _stream(dev: Any, words: list[str], label: str) -> None:
    """One remote command with its stdout on ours (pip's progress); a failure is one line."""
    proc = subprocess.run(dev.ssh.argv(remote_command(words)), stdout=sys.stdout, stderr=subprocess.PIPE,
                          timeout=3600)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode == 255:
        raise RemoteError(classify_ssh(err, dev.name, dev.profile.ssh))
    if proc.returncode != 0:
        raise RemoteError(f"device {dev.name}: provisioning failed at {label} (exit {proc.returncode}): "
                          f"{' '.join(err.split())[-300:]}", "provision")

