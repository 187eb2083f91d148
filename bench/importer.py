"""`python -m bench import`: saved output of native benchmark programs (benchmark_model, executor_runner, our native
runner, onnxruntime_perf_test, an XCTest) as the cells of a run, so the report, its ratios and crossover come out
the same way as for a measured sweep.

One file is one cell (model, format, resolution, device, threads, as the user names them; the program's output says
how it ran). The text is parsed by devices/parsers.py. A program that prints per-iteration times gives a normal
cell with raw samples, in one round (the rounds of the device, if any, are not known); one that prints only
aggregates gives a cell with `raw_samples = 0` holding the printed median / mean / percentiles and no samples (none
is made up), which the report marks. Each file is stored in one transaction together with its sha256, so the same
file imported twice adds nothing, and a bad file (another program's output, truncated, a zero count, an unparsable
number) is one line and imports nothing. The run records the device name and every imported file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import models
from bench.analysis import IMPORTED
from bench.store import Store
from devices import parsers
from models.common import check_name, git_commit, os_error_line
from models.errors import ToolkitError

MAX_BYTES = 16 << 20  # a saved benchmark output is kilobytes (a logcat dump a few MB); anything larger is not one
# The format a program can only have run (None: any; our native runner and an XCTest app run several).
TOOL_FORMATS = {"benchmark_model": "tflite", "executor_runner": "executorch", "onnxruntime_perf_test": "onnx",
                "native": None, "xctest": None}
UNKNOWN_CONVERTER = "unknown"


@dataclass(frozen=True)
class Outcome:
    file: str
    status: str  # added | duplicate | bad
    line: str  # what to print (one line)


@dataclass
class ImportResult:
    run_id: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "bad"]


@dataclass(frozen=True)
class Target:
    """What the user says the files measured (checked before any file is read)."""

    tool: str
    model: str
    overrides: tuple[tuple[str, Any], ...]
    fmt: str
    converter: str
    precision: str
    res: tuple[int, int]
    device: str
    threads: int | None
    expected: int | None


def check_target(*, tool: str, model: str, fmt: str, res: str, device: str, converter: str | None = None,
                 precision: str = "fp32", threads: int | None = None, expected: int | None = None) -> Target:
    """The command line's names, validated like the sweep's: a known tool, model (with overrides), format,
    converter and precision; a resolution the model takes; a device name that is a safe name."""
    from export import FORMATS, PRECISIONS, format_spec

    if tool not in parsers.TOOLS:
        raise ToolkitError(f"unknown tool {tool!r}; valid: {', '.join(parsers.TOOLS)}")
    name, ov = models.split_model_arg(model)
    models.spec(name)  # an unknown model lists the valid ones
    overrides = tuple(sorted(models.check_overrides(name, ov).items()))
    format_spec(fmt)
    need = TOOL_FORMATS[tool]
    if need is not None and fmt != need:
        raise ToolkitError(f"{tool} runs {need} artifacts only, not {fmt}")
    convs = [c.name for c in FORMATS[fmt].converters]
    if converter is not None and converter not in convs:
        raise ToolkitError(f"format {fmt} has no converter {converter!r}; valid: {', '.join(convs)}")
    if precision not in PRECISIONS:
        raise ToolkitError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    h, w = models.check_resolution(name, models.parse_resolution(res))
    check_name(device, "device name")
    return Target(tool, name, overrides, fmt, converter or (convs[0] if len(convs) == 1 else UNKNOWN_CONVERTER),
                  precision, (h, w), device, threads, expected)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _read(path: Path) -> tuple[str, str]:
    """(text, sha256) of a saved output; ToolkitError (one line) when it cannot be read as text.

    Only a regular file is read, and at most MAX_BYTES + 1 bytes of it: it is opened without blocking (a FIFO would
    wait for a writer forever) and checked on the open descriptor (no swap between a check and the read), so a
    FIFO, /dev/zero, a socket or a file that grows while it is read is one line, never a hang or all of memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ToolkitError(os_error_line(exc, path, "read the file") if isinstance(exc, OSError)
                           else f"{path!r} is not a file name") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ToolkitError(f"{path} is a directory, not a saved output")
        if not stat.S_ISREG(mode):
            raise ToolkitError(f"{path} is not a regular file (a FIFO, a device or a socket): save the program's "
                               "output to a file and import that")
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ToolkitError(os_error_line(exc, path, "read the file")) from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise ToolkitError(f"{path} is larger than {MAX_BYTES >> 20} MB: not one benchmark program's output")
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolkitError(f"{path} is not text (UTF-8): save the program's output as printed") from None
    return text, hashlib.sha256(data).hexdigest()


def cell_for(t: Target, result: parsers.ToolResult, run_id: str, store: Store, file: str,
             sha256: str) -> dict[str, Any]:
    """The cells-table row of one parsed output: a normal cell when the program printed samples (two or more), an
    aggregate-only one (raw_samples = 0) otherwise."""
    from bench import sweep
    from devices.base import Measurement

    if t.threads is not None and result.threads is not None and t.threads != result.threads:
        raise parsers.ParseError(f"the output says it ran {result.threads} thread(s), --threads says {t.threads}")
    threads = t.threads if t.threads is not None else result.threads if result.threads is not None else 0
    cell = sweep.Cell(t.model, t.overrides, t.fmt, t.converter, t.precision, t.res[0], t.res[1], t.device, threads)
    size = store.known_size(t.model, json.dumps(dict(t.overrides), sort_keys=True), *t.res)
    raw = result.raw_samples and result.samples_ms is not None and len(result.samples_ms) >= 2
    m = None
    if raw:
        m = Measurement(result.samples_ms, result.load_ms, result.first_ms, result.warmup_runs, threads,
                        peak_rss_mb=result.peak_memory_mb, cpu_samples_ms=result.cpu_samples_ms or [],
                        runtime=result.tool, runtime_versions={result.tool: result.variant})
    counts = SimpleNamespace(iterations=result.count, warmup=result.warmup_runs)  # what cell_row reads of a sweep
    row = sweep.cell_row(run_id, 0, cell, args=counts, status="ok", size=size, measurement=m, artifact=file)
    source = {"tool": result.tool, "variant": result.variant, "file": file, "sha256": sha256,
              "aggregates": result.aggregates(), "delegate": result.delegate, "first_ms": result.first_ms,
              "warmup_ms": result.warmup_ms, "extra": result.extra}
    row.update(raw_samples=int(raw), source=json.dumps(source, sort_keys=True, default=str), seq=None,
               iterations=result.count)
    if not raw:
        agg = result.aggregates()
        mean, std = agg.get("mean_ms"), agg.get("std_ms")
        row.update(mean_ms=mean, median_ms=agg.get("median_ms"), min_ms=agg.get("min_ms"), max_ms=agg.get("max_ms"),
                   std_ms=std, p90_ms=agg.get("p90_ms"), cv=std / mean if std is not None and mean else None,
                   load_ms=result.load_ms, first_ms=result.first_ms, peak_rss_mb=result.peak_memory_mb,
                   runtime_versions=json.dumps({result.tool: result.variant}), n_rounds=None, unstable=None)
    return row


def default_run_id(device: str) -> str:
    """`<device>-import`; for a device name too long for that (run ids are at most 64 characters), its first 48
    characters and a hash of the whole name, so the id is still the device's own and the same every time."""
    rid = f"{device}-import"
    if len(rid) <= 64:
        return rid
    return f"{device[:48]}-{hashlib.sha256(device.encode()).hexdigest()[:8]}-import"


def _what(tool: str, model: str, overrides: dict[str, Any], fmt: str, res: tuple[int, int], device: str) -> str:
    return f"{tool} output of {models.model_label(model, overrides)} {fmt} {models.format_resolution(res)} on {device}"


def _again(store: Store, before: dict[str, Any], t: Target, name: str) -> Outcome:
    """A file imported before (its sha256 is known): a duplicate when it was imported as the same cell, else refused
    (a file is one cell), saying both times as what."""
    cell = store.cell(before["run_id"], before["cell_key"]) or {}
    was = _what(before["tool"], cell.get("model", "?"), cell.get("overrides") or {}, cell.get("format", "?"),
                (cell.get("height") or 0, cell.get("width") or 0), cell.get("device", "?"))
    now = _what(t.tool, t.model, dict(t.overrides), t.fmt, t.res, t.device)
    same = (before["tool"], cell.get("model"), cell.get("overrides") or {}, cell.get("format"), cell.get("converter"),
            cell.get("precision"), (cell.get("height"), cell.get("width")), cell.get("device")) == \
        (t.tool, t.model, dict(t.overrides), t.fmt, t.converter, t.precision, t.res, t.device) and \
        (t.threads is None or t.threads == cell.get("threads"))
    when = str(before["imported"])[:19]
    if same:
        return Outcome(name, "duplicate", f"{name}: already imported into run {before['run_id']} as {was} ({when}); "
                                          "nothing added")
    return Outcome(name, "bad", f"{name}: already imported into run {before['run_id']} as {was} ({when}); not "
                                f"imported again as {now} (a file is one cell)")


def _run_record(t: Target, run_id: str, argv: list[str] | None) -> dict[str, Any]:
    return {"run_id": run_id, "created": _now(), "args_hash": hashlib.sha256(
                json.dumps({"import": t.device}).encode()).hexdigest()[:8],
            "args": {"imported": True, "device": t.device}, "argv": argv, "seed": 0, "device": t.device,
            "environment": {"kind": IMPORTED, "device": t.device}, "git_commit": git_commit()}


def import_files(store: Store, target: Target, files: list[Path], *, run_id: str | None = None,
                 argv: list[str] | None = None) -> ImportResult:
    """Import each file as one cell of `run_id` (default `<device>-import`, created if new). A bad file is one
    line and imports nothing; the others are imported."""
    run_id = check_name(run_id or default_run_id(target.device), "run id")
    existing = store.run(run_id)
    if existing is not None:
        env = existing.get("environment") or {}
        if env.get("kind") != IMPORTED:
            raise ToolkitError(f"run {run_id} is a measured sweep, not an imported run: pass another --run")
        if existing["device"] != target.device:
            raise ToolkitError(f"run {run_id} holds results of device {existing['device']!r}, not "
                               f"{target.device!r}: a run is one device; pass another --run")
    record = _run_record(target, run_id, argv)
    out = ImportResult(run_id)
    for path in files:
        name = str(path)
        try:
            text, sha = _read(path)
            before = store.imported(sha)
            if before is not None:
                out.outcomes.append(_again(store, before, target, name))
                continue
            result = parsers.parse(text, target.tool, target.expected)
            row = cell_for(target, result, run_id, store, path.name, sha)
        except ToolkitError as exc:
            out.outcomes.append(Outcome(name, "bad", f"{name}: {exc}; nothing imported"))
            continue
        status = store.add_import(record, row, sha, path.name, target.tool, _now())
        if status == "duplicate":
            out.outcomes.append(Outcome(name, "duplicate", f"{name}: already imported; nothing added"))
        elif status == "cell exists":
            out.outcomes.append(Outcome(name, "bad", f"{name}: run {run_id} has this cell already (from another "
                                        "file); nothing imported: import it into another --run to keep both"))
        else:
            kind = "raw samples" if row["raw_samples"] else "aggregates only"
            what = (f"{models.model_label(target.model, dict(target.overrides))} {target.fmt} "
                    f"{models.format_resolution(target.res)} on {target.device}")
            out.outcomes.append(Outcome(name, "added", f"{name}: {result.tool} ({result.variant}), {result.count} "
                                        f"timed iterations, {kind} -> {what}, run {run_id}"))
    return out
