"""A sweep's cells and the command line that defines them.

A cell is (model, overrides, format, converter, precision, resolution, device, threads; plus a runtime mode, Core ML
compute units and the optimized artifact where they apply). A sweep's cells are the product of its argument lists
(SweepArgs), less what its plan leaves out (bench/why/plan.py for `bench why`). `parse_args` validates the command
line's lists; anything unknown is one ToolkitError naming the valid ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import models
from bench.labels import model_label, runtime_label
from devices.rounds import DEFAULT_PASSES, DEFAULT_PER_ROUND, DEFAULT_ROUNDS, DEFAULT_SWITCH_WARMUP
from models import defaults
from models.errors import ToolkitError


@dataclass(frozen=True, order=True)
class Cell:
    model: str
    overrides: tuple[tuple[str, Any], ...]
    format: str
    converter: str
    precision: str
    height: int
    width: int
    device: str
    threads: int
    mode: str = ""  # an execution mode the format declares (FormatSpec.modes: onnx "parallel"); "" = its default
    units: str = ""  # Core ML compute units on a Mac or iPhone (a sweep axis there); "" everywhere else
    optimized: bool = False  # the `--optimize` artifact (export/optimize.py) instead of the plain one

    @property
    def key(self) -> str:
        fields = {"model": self.model, "overrides": dict(self.overrides), "format": self.format,
                  "converter": self.converter, "precision": self.precision, "height": self.height,
                  "width": self.width, "device": self.device, "threads": self.threads}
        if self.mode:  # keys of cells in the default mode stay what they were (stored runs resume)
            fields["mode"] = self.mode
        if self.units:  # only where it applies, so every other cell keeps its key
            fields["units"] = self.units
        if self.optimized:  # likewise: plain cells keep their keys
            fields["optimized"] = True
        return json.dumps(fields, sort_keys=True)

    @property
    def model_label(self) -> str:
        return model_label(self.model, dict(self.overrides))

    @property
    def res(self) -> tuple[int, int]:
        return (self.height, self.width)

    def label(self) -> str:
        mode = (f" {self.mode}" if self.mode else "") + (" optimized" if self.optimized else "")
        return (f"{self.model_label} {runtime_label(self.format, self.converter, self.precision, self.units)}{mode} "
                f"{models.format_resolution(self.res)} t{self.threads}")

@dataclass(frozen=True)
class SweepArgs:
    """What defines a sweep (and its run id). Lists are kept sorted: their order on the command line is moot."""

    device: str
    models: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    formats: tuple[str, ...]
    converters: tuple[str, ...]  # as asked; empty = each format's default
    precisions: tuple[str, ...]
    resolutions: tuple[tuple[int, int], ...]
    threads: tuple[int, ...]
    iterations: int  # timed iterations per cell at least: rounds x per_round
    warmup: int  # untimed runs of each artifact after loading
    rounds: int = DEFAULT_ROUNDS
    per_round: int = DEFAULT_PER_ROUND
    switch_warmup: int = DEFAULT_SWITCH_WARMUP  # untimed runs before every chunk
    max_rounds: int = 2 * DEFAULT_ROUNDS  # a group whose intervals stay wide gets rounds up to this many
    passes: int = DEFAULT_PASSES  # the rounds of a group are spread over this many passes over all groups
    compute_units: tuple[str, ...] = ()  # Core ML cells, one per unit (a device that runs Core ML sets them)
    modes: tuple[str, ...] = ("",)  # runtime execution modes ("" = each format's default; others where declared)
    plan: str = ""  # "" = the full product of the lists; "why" = bench/why/plan.py's subset (bench why)
    optimize: tuple[bool, ...] = (False,)  # plain and/or optimized artifacts (`--optimize off|on|both`)

    def canonical(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("modes", list(self.modes)), ("plan", self.plan),
                                   ("compute_units", list(self.compute_units)),
                                   ("optimize", [bool(o) for o in self.optimize]))
                 if v not in ([""], "", [], [False])}  # absent when default: the hashes of earlier runs stay valid
        return {**extra, "device": self.device, "models": [model_label(m, dict(o)) for m, o in self.models],
                "formats": list(self.formats), "converters": list(self.converters),
                "precisions": list(self.precisions), "resolutions": [models.format_resolution(r)
                                                                     for r in self.resolutions],
                "threads": list(self.threads), "iterations": self.iterations, "warmup": self.warmup,
                "rounds": self.rounds, "per_round": self.per_round, "switch_warmup": self.switch_warmup,
                "max_rounds": self.max_rounds, "passes": self.passes}

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()[:8]

    def cells(self) -> list[Cell]:
        from bench.why.plan import keep
        from export import FORMATS
        from export.quant import supports

        out = []
        for (name, ov), fmt, prec, res, th, mode, opt in itertools.product(
                self.models, self.formats, self.precisions, self.resolutions, self.threads, self.modes, self.optimize):
            spec = FORMATS[fmt]
            if mode and mode not in spec.modes or opt and (_is_probe(name) or prec == "int8"):
                continue  # instruments are timed as they are; an int8 graph is its quantizer's (no --optimize)
            able = [c.name for c in spec.converters if supports(spec, c, prec)]  # int8-only ones: int8 cells
            convs = [c for c in able if c in self.converters] or able[:1]
            units = self.compute_units if fmt == "coreml" and self.compute_units else ("",)
            for conv, u in itertools.product(convs, units):
                cell = Cell(name, ov, fmt, conv, prec, res[0], res[1], self.device, th, mode, u, opt)
                if keep(self.plan, cell, self.threads):
                    out.append(cell)
        return sorted(out)

def _is_probe(name: str) -> bool:
    return models.family_info(models.spec(name).family).role == "probe"

OPTIMIZE_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}

def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ToolkitError(f"--{what} is empty")
    return items

def round_settings(iters: int | None, rounds: int | None, per_round: int | None,
                   max_rounds: int | None) -> tuple[int, int, int]:
    """(rounds, per_round, max_rounds) from --iters / --rounds / --per-round / --max-rounds: any two of the first
    three fix the third (iters = rounds x per_round); alone, --iters keeps 10 rounds (or one, below 20)."""
    for flag, v in (("--iters", iters), ("--rounds", rounds), ("--per-round", per_round), ("--max-rounds", max_rounds)):
        if v is not None and (type(v) is not int or v < 1):
            raise ToolkitError(f"{flag} must be a whole number of at least 1, not {v!r}")
    if rounds is None:
        if per_round is not None and iters is not None:
            if iters % per_round:
                raise ToolkitError(f"--iters {iters} is not a multiple of --per-round {per_round}")
            rounds = iters // per_round
        elif per_round is not None:
            rounds = DEFAULT_ROUNDS
        else:
            rounds = DEFAULT_ROUNDS if (iters or 100) >= 2 * DEFAULT_ROUNDS else 1
    if per_round is None:
        total = iters if iters is not None else DEFAULT_ROUNDS * DEFAULT_PER_ROUND
        if total % rounds:
            raise ToolkitError(f"--iters {total} is not a multiple of --rounds {rounds}: pass --per-round instead")
        per_round = total // rounds
    elif iters is not None and iters != rounds * per_round:
        raise ToolkitError(f"--iters {iters} does not equal --rounds {rounds} x --per-round {per_round}")
    if rounds * per_round < 2:
        raise ToolkitError(f"a cell needs at least 2 timed iterations (statistics need two samples), not "
                           f"{rounds} x {per_round}")
    if max_rounds is None:
        max_rounds = 2 * rounds if rounds > 1 else 1
    if max_rounds < rounds:
        raise ToolkitError(f"--max-rounds {max_rounds} is below --rounds {rounds}")
    return rounds, per_round, max_rounds

def pass_count(rounds: int, passes: int | None) -> int:
    """How many passes a group's rounds are spread over: `passes` if given (it must divide the rounds), else the
    largest divisor of the rounds up to DEFAULT_PASSES (10 rounds: 5 passes of 2)."""
    if passes is None:
        return max(d for d in range(1, min(DEFAULT_PASSES, rounds) + 1) if rounds % d == 0)
    if type(passes) is not int or passes < 1 or rounds % passes:
        raise ToolkitError(f"--passes {passes!r} must be a whole number that divides --rounds {rounds}")
    return passes

def parse_args(*, device: str, models_arg: str, formats: str, res: str, iters: int | None = None, warmup: int = 10,
               threads: str | int = "1", converter: str | None = None, precision: str = "fp32",
               rounds: int | None = None, per_round: int | None = None, switch_warmup: int = DEFAULT_SWITCH_WARMUP,
               max_rounds: int | None = None, passes: int | None = None,
               compute_units: str | None = None, optimize: str = "off") -> SweepArgs:
    """Validate the command line's lists into SweepArgs; anything unknown is a ToolkitError naming the valid ones."""
    from export import FORMATS, PRECISIONS, format_spec

    parsed_models = []
    for item in _split(models_arg, "models"):
        name, *pairs = item.split(":")
        models.spec(name)  # unknown names list the valid ones
        ov: dict[str, Any] = {}
        for pair in pairs:
            k, sep, v = pair.partition("=")
            if not sep:
                raise ToolkitError(f"bad model override {pair!r} in {item!r}: expected name:key=value, "
                                   f"e.g. {defaults.SWEEP_MODELS[0]}:tokens=3")
            ov[k.strip()] = v.strip()
        parsed_models.append((name, tuple(sorted(models.check_overrides(name, ov).items()))))
    fmts = [f for f in _split(formats, "formats")]
    if fmts == ["all"]:
        fmts = list(FORMATS)
    for f in fmts:
        format_spec(f)
    resolutions = sorted({models.parse_resolution(r) for r in _split(res, "res")}, key=lambda r: (r[0] * r[1], r))
    for name, _ in parsed_models:
        for r in resolutions:
            models.check_resolution(name, r)
    convs = _split(converter, "converter") if converter else []
    for c in convs:
        if not any(c in {x.name for x in FORMATS[f].converters} for f in fmts):
            valid = sorted({x.name for f in fmts for x in FORMATS[f].converters})
            raise ToolkitError(f"no requested format has a converter {c!r}; valid: {', '.join(valid)}")
    precs = _split(precision, "precision")
    for p in precs:
        if p not in PRECISIONS:
            raise ToolkitError(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS)}")
    try:
        ths = sorted({int(t) for t in _split(str(threads), "threads")})
    except ValueError:
        raise ToolkitError(f"--threads takes whole numbers, not {threads!r}") from None
    if any(t < 1 for t in ths):
        raise ToolkitError("--threads must be at least 1")
    if iters is not None and iters < 2:
        raise ToolkitError(f"--iters must be at least 2 (statistics need two samples), not {iters}")
    if warmup < 0 or switch_warmup < 0:
        raise ToolkitError(f"--warmup and --switch-warmup cannot be negative ({warmup}, {switch_warmup})")
    n_rounds, k, top = round_settings(iters, rounds, per_round, max_rounds)
    if optimize not in OPTIMIZE_CHOICES:
        raise ToolkitError(f"--optimize takes {', '.join(OPTIMIZE_CHOICES)}, not {optimize!r}")
    units: tuple[str, ...] = ()
    if compute_units:
        from devices.apple import check_units

        units = tuple(sorted(set(check_units(_split(compute_units, "compute-units"), "--compute-units"))))
    return SweepArgs(device, tuple(sorted(set(parsed_models))), tuple(sorted(set(fmts))), tuple(sorted(set(convs))),
                     tuple(sorted(set(precs))), tuple(resolutions), tuple(ths), n_rounds * k, int(warmup),
                     n_rounds, k, int(switch_warmup), top, pass_count(n_rounds, passes), units,
                     optimize=OPTIMIZE_CHOICES[optimize])
