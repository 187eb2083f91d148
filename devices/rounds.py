"""The round protocol: how a device times a group of artifacts that will be compared with each other.

Why: a ratio of two cells timed minutes apart carries the machine's drift between those minutes (a shared VM's
speed wanders, a phone heats up and clocks down), and no interval computed from one burst can see it. So the cells
that are compared (same device, runtime, precision, threads and resolution: a Mobile-Former variant and its
baselines) are timed together: `rounds` rounds, each running every member for `per_round` timed iterations, in a
fresh random order per round, with `switch_warmup` untimed iterations before every chunk (a model just switched in
runs cold for a few iterations: its weights are out of the caches). Every sample carries its round, so a ratio can be
taken per round, between two chunks that met the same machine.

This module is pure (no I/O, no runtime imports): the host's worker runs the plan in one process with every member
loaded; a kind that can only time one artifact per call (a phone's native benchmark program) runs it chunk by chunk
through `run_in_chunks`, with its cool-down hook between rounds. Both give the same records.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_ROUNDS = 10
DEFAULT_PER_ROUND = 10  # 10 x 10 = the 100 timed iterations per cell users ask for
# Untimed iterations before every chunk. Measured on this machine with --switch-warmup 0 (docs/bench.md, "Rounds"):
# the first timed iteration after a switch is the cold one; from the third on a chunk is at its steady speed.
DEFAULT_SWITCH_WARMUP = 2
# A sweep spreads a group's rounds over passes over all groups (bench/sweep/timing.py): 10 rounds = 5 passes of 2, so a
# ratio's rounds sample the whole timing phase, not one window of seconds (docs/bench.md, "Rounds").
DEFAULT_PASSES = 5


@dataclass(frozen=True)
class RoundPlan:
    """Who runs when: `orders[r]` is the members' order in round r (indices into the group)."""

    rounds: int
    per_round: int
    switch_warmup: int
    orders: tuple[tuple[int, ...], ...]
    first_round: int = 0  # the round number of orders[0] (extra rounds continue a group's numbering)

    def chunks(self) -> list[tuple[int, int]]:
        """(round number, member index) in the order they run."""
        return [(self.first_round + r, i) for r, order in enumerate(self.orders) for i in order]


def plan(members: int, rounds: int, per_round: int, switch_warmup: int, seed: int, first_round: int = 0) -> RoundPlan:
    """A fresh random order of the members for every round, from `seed` (recorded, so a plan can be replayed)."""
    if members < 1 or rounds < 1 or per_round < 1 or switch_warmup < 0:
        raise ValueError(f"bad round plan: members={members} rounds={rounds} per_round={per_round} "
                         f"switch_warmup={switch_warmup}")
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(range(members))
        rng.shuffle(order)
        orders.append(tuple(order))
    return RoundPlan(rounds, per_round, switch_warmup, tuple(orders), first_round)


def run_in_chunks(artifacts: Sequence[Any], the_plan: RoundPlan,
                  chunk: Callable[[Any, int, int], tuple[list[float], list[float]]],
                  cooldown: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run a plan with a device that times one artifact per call.

    `chunk(artifact, iterations, warmup)` returns (wall samples ms, CPU samples ms, or [] where unknown) of one
    chunk; `cooldown(round)` runs before every round after the first (a phone waits for its CPU to cool there).
    Returns one record per member: samples_ms, cpu_samples_ms, rounds (the round of each sample), error (None, or
    the first exception's text: a member that failed once is not run again; the others go on) and stage (the
    exception's `stage` attribute, e.g. "timeout", where it has one).
    """
    out = [{"samples_ms": [], "cpu_samples_ms": [], "rounds": [], "error": None, "stage": None} for _ in artifacts]
    last_round = None
    for rnd, i in the_plan.chunks():
        if rnd != last_round and last_round is not None and cooldown is not None:
            cooldown(rnd)
        last_round = rnd
        rec = out[i]
        if rec["error"] is not None:
            continue
        try:
            wall, cpu = chunk(artifacts[i], the_plan.per_round, the_plan.switch_warmup)
        except Exception as exc:  # noqa: BLE001 - one member's failure is that member's error
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["stage"] = getattr(exc, "stage", None)
            continue
        rec["samples_ms"] += list(wall)
        rec["cpu_samples_ms"] += list(cpu)
        rec["rounds"] += [rnd] * len(wall)
    return out
