"""The timing phase: the groups' interleaved rounds, in passes, each pass of each group stored at once; a group
whose intervals stay wide gets further passes up to --max-rounds; a device that stops answering is given up
(DeviceGone) and the same command resumes from the passes already stored."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from typing import Any

from bench import stats
from bench.sweep.cells import Cell, SweepArgs
from bench.sweep.context import DeviceGone, WorkContext
from bench.sweep.merge import absorb, wide_points
from bench.sweep.plan import group_cells, group_id, group_label
from bench.sweep.rows import summary
from export.hostlock import timing_cores
from models.escape import escape


def _group_seed(run_seed: int, cells: list[Cell], first_round: int) -> int:
    text = json.dumps([run_seed, first_round, [c.key for c in cells]])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)

def time_pass(device: Any, cells: list[Cell], paths: list[str], args: SweepArgs, run_seed: int, timeout: float,
              n_rounds: int, first_round: int, say: Any = None) -> list[Any]:
    """One pass over a group: `n_rounds` interleaved rounds numbered from `first_round`; per cell a Measurement or
    a MeasureError. A failure of the whole group (the worker hung or crashed) is retried member by member, so one
    bad artifact costs only its own cell."""
    from devices.base import MeasureError

    # The first pass warms each model up fully after loading; later passes load it again in the same (warm) worker,
    # where the first run plus the switch warm-up before every chunk suffice (the report's chunk check shows it).
    warmup = args.warmup if first_round == 0 else min(args.warmup, args.switch_warmup)

    def call(members: list[int]) -> list[Any]:
        sub = [cells[i] for i in members]
        units = {"units": cells[0].units} if cells[0].units else {}  # only devices that run Core ML take it
        return device.run_group([paths[i] for i in members], rounds=n_rounds, per_round=args.per_round,
                                warmup=warmup, switch_warmup=args.switch_warmup, threads=cells[0].threads,
                                timeout=timeout * len(members) * max(n_rounds / args.rounds, 0.2),
                                seed=_group_seed(run_seed, sub, first_round), first_round=first_round, **units)

    everyone = list(range(len(cells)))
    try:
        return call(everyone)
    except MeasureError as exc:
        if len(cells) == 1 or exc.stage == "transport":  # the device is unreachable: its members would be too
            return [exc] * len(cells)
        if say:
            say(f"  group   {group_label(cells[0])}: [{exc.stage}] {escape(str(exc), 'terminal')}; timing its "
                "members one by one", markup=False)
        results = []
        for i in everyone:
            try:
                results += call([i])
            except MeasureError as one:
                results.append(one)
        return results

def time_cells(work: WorkContext, todo: list[Cell], artifacts: dict[str, tuple[str, dict]], device: Any,
               progress: Any) -> None:
    """The measuring loop, in passes: every group (the cells compared with each other) gets `rounds / passes`
    interleaved rounds per pass, the groups of a pass in a fresh shuffled order, so each ratio's rounds are spread
    over the whole timing phase and meet the machine's slow changes too, not one window of a few seconds.

    Each pass of each group is stored at once (store.add_pass) and a resumed run goes on with the passes not stored
    yet. After the scheduled passes, a group with an interval still wider than +-stats.ADAPT_HALF_WIDTH gets
    further passes while it has run fewer than `max_rounds` rounds (the rule: docs/bench.md, "Rounds"); then its
    cells are stored whole. On a host device the loop holds the machine's timing cores.
    """
    from devices.base import MeasureError, Measurement, decode_result, encode_result

    store, args, opts, run_id = work.store, work.args, work.opts, work.run_id
    run_seed = (store.run(run_id) or {}).get("seed") or 0
    cores = timing_cores(f"run {run_id}", say=progress.console.print) if device.kind == "host" else \
        contextlib.nullcontext()
    with cores:  # on this machine: exclusive use of the cores (exports next door wait for the timed loops)
        measure = [c for c in todo if c.key in artifacts and not store.has_cell(run_id, c.key)]
        per_pass = args.rounds // args.passes
        per_cell = (args.iterations + args.warmup + args.passes * (1 + args.switch_warmup)
                    + args.rounds * args.switch_warmup)
        weight = {c.key: (artifacts[c.key][1].get("madds") or 1) * per_cell for c in measure}
        task = progress.add_task("measure", total=sum(weight.values()) or 1, cell="")
        mtask = progress.add_task("  cells", total=len(measure), cell="")
        state: dict[str, dict[str, Any]] = {}
        for g in group_cells(measure):
            gid = group_id(g)
            results: list[Any] = [None] * len(g)
            done = set()
            for pass_no, payload in store.passes(run_id, gid):
                results = absorb(results, [decode_result(m) for m in payload])
                done.add(pass_no)
            state[gid] = {"cells": g, "results": results, "done": done, "paths": [artifacts[c.key][0] for c in g]}
            for c in g:
                progress.advance(task, weight[c.key] * len(done) / args.passes)

        def finish(gid: str) -> None:
            st = state.pop(gid)
            g, results = st["cells"], st["results"]
            rows = []
            for cell, path, m in zip(g, st["paths"], results):
                manifest = artifacts[cell.key][1]
                if isinstance(m, Measurement):
                    rows.append((cell, {"status": "ok", "manifest": manifest, "artifact": path, "measurement": m,
                                        "session": gid}))
                else:
                    m = m if m is not None else MeasureError("not measured", "run")
                    rows.append((cell, {"status": "failed", "stage": getattr(m, "stage", "run"), "error": str(m),
                                        "manifest": manifest, "artifact": path}))
            work.save_group(rows)
            n_rounds = max((len(set(m.rounds)) for m in results if isinstance(m, Measurement)), default=0)
            progress.console.print(f"  group   {group_label(g[0])} ({len(g)} models): {n_rounds} rounds of "
                                   f"{args.per_round}", markup=False)
            for cell, m in zip(g, results):
                if isinstance(m, Measurement):
                    s = summary(m, cell.threads)
                    spread = f", rounds disagree {s.round_cv:.1%}" if s.round_cv is not None else \
                        f", cv {s.cv:.1%}" if s.cv is not None else ", one printed aggregate"
                    flag = "" if s.contention is None else f", wall/CPU {1 + s.contention:.2f}"
                    flag += "  UNSTABLE" if s.unstable else ""
                    progress.console.print(f"  ok      {cell.label()}: median {s.median:.2f} ms, mean {s.mean:.2f} ms"
                                           f"{spread}{flag}", markup=False)
                    work.result.measured += 1
                else:
                    progress.console.print(f"  failed  {cell.label()}: [{getattr(m, 'stage', 'run')}] "
                                           f"{escape(str(m), 'terminal')}", markup=False)
                progress.advance(mtask)

        give_up = getattr(device, "give_up_after", None)  # remote kinds: transport failures in a row tolerated
        lost: list[str] = []  # the transport failures since the last group that went through

        def run_pass(gid: str, pass_no: int) -> None:
            st = state[gid]
            g = st["cells"]
            alive = [i for i, m in enumerate(st["results"]) if m is None or isinstance(m, Measurement)]
            if alive:
                progress.update(task, cell=f"pass {pass_no + 1}: {group_label(g[0])} ({len(alive)} models)")
                new = time_pass(device, [g[i] for i in alive], [st["paths"][i] for i in alive], args, run_seed,
                                opts.timeout, per_pass, pass_no * per_pass, say=progress.console.print)
                if new and all(getattr(m, "stage", None) == "transport" for m in new):
                    # Not a pass: the device could not be reached. Its cells are stored failed (stage transport;
                    # `--retry-failed` measures them again, resuming from the passes already stored).
                    lost.append(str(new[0]))
                    for i, m in zip(alive, new):
                        st["results"][i] = m
                    finish(gid)
                    if give_up and len(lost) >= give_up:
                        raise DeviceGone(f"device {device.name} stopped answering ({len(lost)} transport failures "
                                         f"in a row; last: {lost[-1]})")
                    return
                lost.clear()
                full: list[Any] = [None] * len(g)
                for i, m in zip(alive, new):
                    full[i] = m
                with work.deferred.held():
                    store.add_pass(run_id, gid, pass_no, [encode_result(m) for m in full])
                st["results"] = absorb(st["results"], full)
            st["done"].add(pass_no)
            if pass_no < args.passes:
                for c in g:
                    progress.advance(task, weight[c.key] / args.passes)

        def is_wide(gid: str) -> list[str]:
            """wide_points of a group, computed once per number of passes it has had."""
            st = state[gid]
            if st.get("wide_at") != len(st["done"]):
                st["wide"], st["wide_at"] = wide_points(st["cells"], st["results"]), len(st["done"])
            return st["wide"]

        rng = random.Random(run_seed)
        pass_no = 0
        while state:
            extra = pass_no >= args.passes
            order = sorted(gid for gid, st in state.items() if pass_no not in st["done"])
            rng.shuffle(order)
            if extra:  # adaptive passes: only the groups whose intervals are still wide
                order = [gid for gid in order if is_wide(gid)]
                if order:
                    progress.console.print(f"  pass    {pass_no + 1}: {len(order)} group(s) with an interval wider "
                                           f"than +-{stats.ADAPT_HALF_WIDTH:.0%} get {per_pass} more round(s)",
                                           markup=False)
            for gid in order:
                if gid in state:  # a group can finish early (its device unreachable)
                    run_pass(gid, pass_no)
            if order and not extra:
                progress.console.print(f"  pass    {pass_no + 1}/{args.passes}: {len(order)} group(s), {per_pass} "
                                       "round(s) each", markup=False)
            pass_no += 1
            if pass_no >= args.passes:
                capped = (pass_no + 1) * per_pass > args.max_rounds
                for gid in [gid for gid in state if capped or (extra and gid not in order)
                            or not is_wide(gid)]:
                    finish(gid)
