"""What every parser of devices/parsers.py shares: the result record, its one error, the bounds and the number
readers. Pure functions; no I/O.

The parsers read text that anybody may have written (a saved file handed to `bench import`, a phone's output), so
they hold to three rules, each enforced here or in `check_result`:
  * time linear in the input: patterns are anchored on a literal, bounded to one line (`[ \\t]`, never `\\s` after
    `^`), with no two quantifiers that can share characters; free-form parts are split with str methods;
  * every count is bounded before anything is allocated from it (MAX_COUNT, MAX_SAMPLES, MAX_THREADS), and a
    whole number is read from at most MAX_DIGITS digits (Python refuses 4300 and SQLite stores 64 bits);
  * JSON is read with its nesting, its integers and its constants (NaN, Infinity) bounded (`load_json`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from models.errors import ToolkitError

# printf's %f / %g / %e of a finite number; possessive, so a long run of digits is read once, never backtracked into
NUM = r"[-+]?+(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+"
_NUM_RE = re.compile(NUM)
MAX_COUNT = 100_000_000  # timed iterations a program may report (bench import --iters has the same bound)
MAX_SAMPLES = 100_000  # per-iteration samples one cell keeps (a saved output with more is not one cell's)
MAX_THREADS = 1024
MAX_DIGITS = 12  # digits of a whole number (counts, threads, bytes): more is never a real count
MAX_JSON_DEPTH = 32
MAX_TEXT = 200  # characters of a free-text value kept from an output (a test name, a version)


class ParseError(ToolkitError):
    """The text is not a complete, sane output of the program it was taken for (one line)."""


@dataclass
class ToolResult:
    """One benchmark program's result for one model. Fields the program did not print stay None."""

    tool: str  # one of TOOLS
    variant: str  # which build or form of the output, e.g. "tflite classic", "litert compiled-model"
    count: int  # timed iterations the program reports
    samples_ms: list[float] | None  # one per timed iteration, in order (None: the program prints aggregates only)
    raw_samples: bool
    mean_ms: float | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p5_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    load_ms: float | None = None  # loading / initialising the model (benchmark_model's Init, ORT's session)
    first_ms: float | None = None  # the first inference after loading
    warmup_ms: float | None = None  # average warm-up iteration
    warmup_runs: int | None = None
    peak_memory_mb: float | None = None
    delegate: str | None = None
    threads: int | None = None
    cpu_samples_ms: list[float] | None = None  # process CPU time per timed iteration (native, xctest)
    extra: dict[str, Any] = field(default_factory=dict)  # what else the program printed (QPS, CPU %, test, ...)

    def aggregates(self) -> dict[str, float | int]:
        """The printed figures that are set, by name (for storing beside an aggregate-only cell)."""
        names = ("count", "mean_ms", "median_ms", "min_ms", "max_ms", "std_ms", "p5_ms", "p90_ms", "p95_ms", "p99_ms")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


# --------------------------------------------------------------------------------------------- numbers
def number(text: str, what: str) -> float:
    """A finite number as a program printed it (%f, %g: `1.24027e+06`), else ParseError naming `what`."""
    t = text.strip()
    if not _NUM_RE.fullmatch(t):
        raise ParseError(f"unparsable number {t[:30]!r} for {what}")
    v = float(t)
    if not math.isfinite(v):
        raise ParseError(f"number {t[:30]!r} for {what} is not finite")
    return v


def whole(text: str, what: str, hi: int = MAX_COUNT) -> int:
    """A whole number from 0 to `hi` as printed (`50`, `5e+01`); longer than MAX_DIGITS digits is refused unread."""
    t = text.strip()
    if len(t) > MAX_DIGITS + 8:
        raise ParseError(f"{what} is {t[:30]!r}..., not a count")
    v = number(t, what)
    if v != int(v) or not 0 <= v <= hi:
        raise ParseError(f"{what} is {t[:30]!r}, not a whole number from 0 to {hi}")
    return int(v)


def digits(text: str, what: str, hi: int = MAX_COUNT) -> int:
    """A run of digits captured by `(\\d+)` as an int from 0 to `hi` (at most MAX_DIGITS digits are converted)."""
    if len(text) > MAX_DIGITS or not 0 <= int(text) <= hi:
        raise ParseError(f"{what} {text[:30]}{'...' if len(text) > 30 else ''} is beyond {hi}")
    return int(text)


def search(pattern: str, text: str, what: str, *, required: str | None = None) -> float | None:
    """The number captured by the last match of `pattern` (group 1); None, or ParseError(required) if absent."""
    found = re.findall(pattern, text, re.MULTILINE)
    if not found:
        if required:
            raise ParseError(required)
        return None
    return number(found[-1] if isinstance(found[-1], str) else found[-1][0], what)


def lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def check_count(tool: str, count: int, expected: int | None) -> None:
    if count <= 0:
        raise ParseError(f"{tool} reports count={count}: no timed iteration ran")
    if count > MAX_COUNT:
        raise ParseError(f"{tool} reports {count} timed iterations, more than the {MAX_COUNT} a cell can hold")
    if expected is not None and count != expected:
        raise ParseError(f"{tool} ran {count} timed iterations, {expected} were expected")


def ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def short_text(value: Any, what: str) -> str:
    """A free-text value of an output (a version, a test name): a string or number, at most MAX_TEXT characters."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParseError(f"{what} is not a string")
    text = str(value)
    if len(text) > MAX_TEXT:
        raise ParseError(f"{what} is {len(text)} characters long, not a name")
    return text


# --------------------------------------------------------------------------------------------- JSON
def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ParseError(f"a JSON integer of {len(text)} digits ({text[:12]}...): not a count or a time")
    return int(text)


def _json_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ParseError(f"the JSON number {text[:30]} is not finite")
    return v


def _json_constant(name: str) -> float:
    raise ParseError(f"the JSON holds {name}, which is not a number")


def load_json(text: str, what: str) -> Any:
    """JSON with integers of at most 20 digits, finite numbers only and at most MAX_JSON_DEPTH levels of nesting;
    anything else (broken, truncated, too deep) is one ParseError naming `what`."""
    try:
        value = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except RecursionError:
        raise ParseError(f"{what} is nested too deeply to be a program's output") from None
    except ValueError:  # json.JSONDecodeError is one
        raise ParseError(f"truncated or broken JSON ({what})") from None
    _depth(value, what)
    return value


def _depth(value: Any, what: str) -> None:
    """ParseError if `value` nests deeper than MAX_JSON_DEPTH (iterative: a deep value cannot exhaust the stack)."""
    todo = [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (dict, list)):
            if d > MAX_JSON_DEPTH:
                raise ParseError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v) if isinstance(x, (dict, list)))
