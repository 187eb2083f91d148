"""The device interface every kind implements, and the records it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from models.errors import ToolkitError


class MeasureError(ToolkitError):
    """A cell that could not be measured; `stage` says where: load, run, timeout or crash."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


@dataclass
class Measurement:
    """What one timed cell produced on a device (all times in milliseconds). Only the samples, load and first-run
    times are required: every kind can report those. What a kind cannot see stays None (never invented)."""

    samples_ms: list[float]  # one per timed iteration, in order
    load_ms: float | None  # creating the runtime session / interpreter (None: the program does not say)
    first_ms: float | None  # the first inference after loading (not part of warm-up or samples)
    warmup: int
    threads: int
    cpus: list[int] | None = None  # cores the measuring process was pinned to (None: not pinned / not known)
    peak_rss_mb: float | None = None  # peak resident memory of the measuring process during the cell
    overhead_us: float | None = None  # the harness's own per-iteration cost (an empty callable, median)
    loadavg: float | None = None  # 1-minute load average of the machine when the cell started
    cpu_samples_ms: list[float] = field(default_factory=list)  # process CPU time of each timed iteration
    rounds: list[int] = field(default_factory=list)  # the round of each sample (devices/rounds.py)
    per_round: int | None = None  # timed iterations per chunk
    switch_warmup: int | None = None  # untimed iterations before every chunk
    runtime_samples_ms: list[float] = field(default_factory=list)  # the runtime's own timer (Core ML's predict)
    raw_samples: bool = True  # False: one aggregate per chunk (a program that prints only its median / mean)
    device_state: dict[str, Any] = field(default_factory=dict)  # a phone's temperatures, cool-down waits, core mask
    runtime: str = ""
    runtime_versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_result(m: Measurement | MeasureError | None) -> dict[str, Any] | None:
    """A member's result as JSON-able data (the store's passes table, the Ray executor's replies)."""
    if m is None:
        return None
    if isinstance(m, Measurement):
        return {"ok": True, "measurement": m.as_dict()}
    return {"ok": False, "stage": getattr(m, "stage", "run"), "error": str(m)}


def decode_result(d: dict[str, Any] | None) -> Measurement | MeasureError | None:
    if d is None:
        return None
    return Measurement(**d["measurement"]) if d.get("ok") else MeasureError(d.get("error", "?"), d.get("stage", "run"))


class Device(Protocol):
    """A place to run artifacts: only what every kind (this machine, a board over ssh, a phone over adb) can honour.
    Policy of one kind (the host's pinning, a phone's cool-down) lives in that kind's profile."""

    name: str
    kind: str

    def can_run(self, fmt: str) -> str | None:
        """None when the device can run artifacts of `fmt`, else the reason (e.g. "needs macOS")."""

    def describe(self) -> dict[str, Any]:
        """What the device says about itself: model, CPU, cores, OS, runtime versions (stored with every run)."""

    def run_group(self, artifacts: list[Any], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, timeout: float, seed: int, first_round: int = 0) -> list[Measurement | MeasureError]:
        """Time artifacts that will be compared, together, in interleaved rounds (devices/rounds.py): each loaded
        and run `warmup` times, then `rounds` rounds of `switch_warmup` untimed + `per_round` timed iterations of
        every member in a fresh order per round (from `seed`), on the device's own clock. One result per artifact,
        in order: its Measurement (samples with their rounds) or the MeasureError of that member alone. A failure
        of the whole group (the device vanished, the worker hung past `timeout`) raises MeasureError."""

    def run(self, artifact: Any, *, iterations: int, warmup: int, threads: int, timeout: float) -> Measurement:
        """Time one artifact in one burst: `warmup` untimed runs, then `iterations` timed ones (a group of one,
        one round)."""

    def close(self) -> None: ...


class OneBurst:
    """`run` for every kind: one artifact in one burst is a group of one with one round."""

    def run(self, artifact: Any, *, iterations: int = 100, warmup: int = 10, threads: int = 1,
            timeout: float = 300.0) -> Measurement:
        """Time one artifact (an Artifact or its directory): `warmup` untimed runs, then `iterations` timed ones."""
        if iterations < 2:
            raise ToolkitError(f"iterations must be at least 2, not {iterations}")
        (result,) = self.run_group([artifact], rounds=1, per_round=iterations, warmup=warmup,  # type: ignore
                                   switch_warmup=0, threads=threads, timeout=timeout, seed=0)
        if isinstance(result, MeasureError):
            raise result
        return result


@dataclass(frozen=True)
class Kind:
    """A device kind: its profile dataclass (with a `parse(dict, where)` classmethod) and its device class."""

    name: str
    profile: type
    device: type


