"""Pure helpers for talking to a phone over adb (used by the android device kind): what adb's errors mean, the
exit code of a shell command on old devices, the phone's thermal state, its big cores and its properties.

No I/O here: each function takes the text adb printed and returns a value or raises AdbError (one line).
The facts behind them: /work/shared/DEVICES.md, "adb".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devices.parse_base import NUM
from models.errors import ToolkitError


class AdbError(ToolkitError):
    """adb could not do what was asked (one line saying why and what to do)."""


# substring adb prints -> what it means (the serial, when known, is filled in); the order matters: the first wins
_ADB_ERRORS = (
    ("more than one device/emulator", "more than one device/emulator is connected: name one with its serial "
                                      "(adb -s SERIAL; `adb devices` lists them)"),
    ("no devices/emulators found", "no devices/emulators found: connect the phone with USB debugging on"),
    ("device still authorizing", "device {serial} is still authorizing: accept the USB debugging prompt on the "
                                 "phone and try again"),
    ("device unauthorized", "device {serial} is unauthorized: accept the USB debugging prompt on the phone (or "
                            "revoke and re-allow USB debugging)"),
    ("device offline", "device {serial} is offline: reconnect the cable or run `adb reconnect`"),
)
_NOT_FOUND = re.compile(r"device '([^']*)' not found")


def adb_error_line(stderr: str, returncode: int, serial: str | None = None) -> str | None:
    """One clear line for adb's failure, or None when adb succeeded (exit 0 and no `error:` line).

    Args:
        stderr: what adb printed on stderr (its errors: `error: <message>`, push/pull: `adb: error: ...`).
        returncode: adb's exit status.
        serial: the serial adb was given with -s (named in the line).
    """
    text = stderr.replace("\r", "")
    if returncode == 0 and "error:" not in text:
        return None
    who = f"'{serial}'" if serial else "(no serial given)"
    feature = re.search(r"failed to get feature set: (.*)", text)
    prefix = "adb push/pull: " if feature else ""
    body = feature.group(1) if feature else text
    m = _NOT_FOUND.search(body)
    if m:
        return prefix + f"device '{m.group(1)}' not found: `adb devices` lists the connected serials"
    for needle, line in _ADB_ERRORS:
        if needle in body:
            return prefix + line.format(serial=who)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    first = re.sub(r"^(adb: )?error: ", "", first)
    return prefix + f"adb failed (exit {returncode})" + (f": {first[:200]}" if first else "")


def check_adb(stderr: str, returncode: int, serial: str | None = None) -> None:
    """Raise AdbError with adb_error_line(...) when adb failed."""
    line = adb_error_line(stderr, returncode, serial)
    if line is not None:
        raise AdbError(line)


def shell_status(output: str) -> tuple[str, int]:
    """Split `adb shell 'CMD; echo RC=$?'` output into (CMD's output, its exit code); `\\r\\n` of old devices is
    made `\\n`. Old adb returns 0 whatever the command did, hence the marker."""
    text = output.replace("\r\n", "\n").replace("\r", "")
    m = re.search(r"(?:^|\n)RC=(\d{1,3})\n?\Z", text)
    if not m:
        raise AdbError("the shell command's exit code is missing (no RC= line: the connection dropped?)")
    return text[:m.start()], int(m.group(1))


# --------------------------------------------------------------------------------------------- thermal
TEMPERATURE_TYPES = {0: "cpu", 1: "gpu", 2: "battery", 3: "skin"}


@dataclass(frozen=True)
class Temperature:
    name: str
    type: int  # 0 CPU, 1 GPU, 2 battery, 3 skin, ... (android.os.Temperature)
    celsius: float
    status: int


@dataclass(frozen=True)
class Thermal:
    """`dumpsys thermalservice`: the throttling status (0 none ... 6 shutdown) and the HAL's live temperatures."""

    status: int | None
    temperatures: list[Temperature] = field(default_factory=list)

    @property
    def cpu_max(self) -> float | None:
        """The hottest CPU sensor (mType=0), degrees Celsius."""
        cpu = [t.celsius for t in self.temperatures if t.type == 0]
        return max(cpu) if cpu else None


_TEMP = re.compile(rf"Temperature\{{mValue=({NUM}), mType=(-?\d{{1,4}}), mName=([^,\n]{{0,100}}), "
                   r"mStatus=(-?\d{1,4})\}")
CELSIUS = (-100.0, 400.0)  # what a sensor can read; outside it (or not a number) the reading is left out


def parse_thermal(text: str) -> Thermal:
    """Thermal Status and the `Current temperatures from HAL:` block (the `Cached temperatures:` block before it is
    stale and ignored)."""
    status = re.search(r"Thermal Status: (\d{1,3})\b", text)
    temps: list[Temperature] = []
    in_hal = False
    for line in text.replace("\r", "").splitlines():
        stripped = line.strip()
        if stripped.startswith("Current temperatures from HAL"):
            in_hal = True
            continue
        if in_hal and stripped.endswith(":") and not stripped.startswith("Temperature{"):
            break  # the next block (cooling devices, ...)
        if in_hal:
            m = _TEMP.search(stripped)
            if m and CELSIUS[0] <= float(m.group(1)) <= CELSIUS[1]:
                temps.append(Temperature(m.group(3), int(m.group(2)), float(m.group(1)), int(m.group(4))))
    if status is None and not temps:
        raise AdbError("not `dumpsys thermalservice` output (no 'Thermal Status' line, no HAL temperatures)")
    return Thermal(int(status.group(1)) if status else None, temps)


# --------------------------------------------------------------------------------------------- cores, properties
def big_cores_mask(listing: str) -> str:
    """The hex mask (for `taskset`) of the cores with the highest cpu_capacity, or cpuinfo_max_freq, from a listing
    with one core per line naming `cpuN` and ending in its value, e.g. `grep . /sys/devices/system/cpu/cpu*/
    cpu_capacity` (`/sys/devices/system/cpu/cpu7/cpu_capacity:1024`) or `cpu7 2850000`. All cores equal: all."""
    values: dict[int, int] = {}
    for line in listing.replace("\r", "").splitlines():
        m = re.search(r"cpu(\d{1,4})\b", line)
        value = re.split(r"[:\s]", line.strip())[-1]
        if m and value.isascii() and value.isdigit() and len(value) <= 12 and int(m.group(1)) < 4096 \
                and m.end() < len(line.strip()):
            values[int(m.group(1))] = int(value)
    if not values:
        raise AdbError("no 'cpuN ... value' lines in the core listing (cpu_capacity / cpuinfo_max_freq unreadable?)")
    top = max(values.values())
    return format(sum(1 << cpu for cpu, v in values.items() if v == top), "x")


def parse_getprop(text: str) -> dict[str, str]:
    """`adb shell getprop` (`[ro.product.model]: [Pixel 7]` per line) as a dict."""
    props = dict(re.findall(r"^\[([^\]\n]{1,200})\]: \[(.{0,2000})\][ \t]*$", text.replace("\r", ""), re.MULTILINE))
    if not props and text.strip():
        raise AdbError("not getprop output (no '[key]: [value]' lines)")
    return props
