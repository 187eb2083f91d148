"""Where ExecuTorch's lowering spends its time, plain against optimized: a CPU profile (cProfile on the process's
CPU clock, so a busy machine slows it but does not shift the shares), not a wall-clock race.

    python -m bench.lowering --model mobileformer_294m --res 128 [--out reports/lowering]

For each of the plain and the optimized graph (export --optimize) of the model it exports the .pte once (forced,
parity off, into a temporary artifacts folder) under the profiler and writes lowering.md beside lowering.json:
the CPU seconds of the whole export and of its stages (capture, ATen rewrites, to_edge + partition + lower,
to_executorch), the edge graph's node count, and the passes and functions that take the most CPU time. A change to
the lowering is then argued from where the time goes (docs/export.md, "Where export time goes").
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models.errors import ToolkitError, cli_main

STAGES = {"capture": "export/core.py:capture", "aten_rewrites": "export/executorch.py:_aten_rewrites",
          "to_edge_and_lower": "exir/program/_program.py:to_edge_transform_and_lower",
          "to_executorch": "exir/program/_program.py:to_executorch"}
TOP = 20


def _cumulative(stats: pstats.Stats, name: str, path_part: str = "") -> float:
    return sum(v[3] for (f, _, fn), v in stats.stats.items() if fn == name and path_part in f)


def profile_one(model: str, res: str, optimize: bool, out_root: Path) -> dict[str, Any]:
    import export

    prof = cProfile.Profile(time.process_time)
    t0 = time.process_time()
    prof.enable()
    try:
        art = export.export(model, "executorch", res, out=out_root, force=True, parity=False, optimize=optimize)
    finally:
        prof.disable()
    total = time.process_time() - t0
    stats = pstats.Stats(prof)
    stages = {k: _cumulative(stats, fn.rpartition(":")[2], fn.rpartition(":")[0]) for k, fn in STAGES.items()}
    passes = {}
    for (f, _, fn), v in stats.stats.items():
        if fn == "call" and "executorch" in f and "_passes" in f or fn == "call" and "exir/passes" in f:
            passes[f"{Path(f).stem}.call"] = passes.get(f"{Path(f).stem}.call", 0.0) + v[3]
    own = sorted(((v[2], f"{Path(f).name}:{ln} {fn}") for (f, ln, fn), v in stats.stats.items()), reverse=True)
    return {"model": model, "optimized": optimize, "cpu_seconds": round(total, 2),
            "stages_cpu_seconds": {k: round(v, 2) for k, v in stages.items()},
            "edge_nodes": (art.manifest.get("graph") or {}).get("nodes"),
            "passes_cpu_seconds": {k: round(v, 2) for k, v in sorted(passes.items(), key=lambda kv: -kv[1])[:TOP]},
            "top_own_cpu_seconds": [[name, round(t, 2)] for t, name in own[:TOP]]}


def render(results: list[dict[str, Any]]) -> str:
    from bench.writers import md_table

    lines = ["# ExecuTorch lowering: where the CPU time goes (plain vs optimized graph)", ""]
    stages = list(STAGES)
    lines += md_table(["graph", "edge nodes", "CPU s (whole export)", *[f"{s} CPU s" for s in stages]],
                      [["optimized" if r["optimized"] else "plain", r["edge_nodes"] or "", f"{r['cpu_seconds']:.1f}",
                        *[f"{r['stages_cpu_seconds'][s]:.1f}" for s in stages]] for r in results])
    for r in results:
        lines += ["", f"## {r['model']}, {'optimized' if r['optimized'] else 'plain'} graph: passes (cumulative CPU s)",
                  ""]
        lines += md_table(["pass", "CPU s"], [[k, f"{v:.2f}"] for k, v in r["passes_cpu_seconds"].items()])
        lines += ["", "Functions by their own CPU time:", ""]
        lines += md_table(["function", "CPU s"], [[n, f"{t:.2f}"] for n, t in r["top_own_cpu_seconds"]])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lowering", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobileformer_294m", help="registered model (default: %(default)s)")
    ap.add_argument("--res", default="128", help="N or HxW (default: %(default)s)")
    ap.add_argument("--out", default="reports/lowering", help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    import models

    models.check_resolution(args.model, args.res)
    results = []
    with tempfile.TemporaryDirectory(prefix="lowering-") as tmp:
        for optimize in (False, True):
            print(f"profiling the {'optimized' if optimize else 'plain'} lowering of {args.model} at {args.res} ...",
                  flush=True)
            r = profile_one(args.model, args.res, optimize, Path(tmp))
            lower = r["stages_cpu_seconds"]["to_edge_and_lower"]
            print(f"  {r['cpu_seconds']:.1f} CPU s; to_edge_and_lower {lower:.1f} CPU s; {r['edge_nodes']} edge nodes",
                  flush=True)
            results.append(r)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "lowering.json").write_text(json.dumps(results, indent=1))
        (out / "lowering.md").write_text(render(results))
    except OSError as exc:
        raise ToolkitError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"written: {out / 'lowering.md'}, {out / 'lowering.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "bench.lowering"))
