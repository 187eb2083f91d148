"""The sentences and the headline table of the report section "Why <subject> slows down on small images", each
computed from a run's Why (bench/why/analysis.py): what a component costs against its MAdds, the fixed cost, the
share of the measured peak, the feedback path, where a difference lands by profile, and how well the two methods
agree."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import models
from bench import fit as fitting
from bench.why.analysis import AGREEMENT_BOUND, OUTSIDE_OPERATORS, Component, Why
from models.common import median


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}" if abs(v) >= 0.095 else f"{v:.1%}"


def _ci(c: Component) -> str:
    return f"{c.ms:.2f} ms (95% CI {c.ms_low:.2f}-{c.ms_high:.2f})"


def component_sentences(w: Why) -> list[str]:
    """Per model and runtime: what each component costs at the smallest and the largest resolution, against its
    MAdds, with the paper's accuracy gain priced in milliseconds."""
    out = []
    diffs = [c for c in w.components if c.method == "difference"]
    for (model, rt) in sorted({(c.model, c.runtime) for c in diffs}):
        rows = sorted((c for c in diffs if c.model == model and c.runtime == rt), key=lambda c: c.height * c.width)
        parts = []
        for comp in dict.fromkeys(c.component for c in rows):
            cs = [c for c in rows if c.component == comp]
            lo, hi = cs[0], cs[-1]
            acc = _accuracy(model, comp)
            price = ""
            if acc and lo.ms > 0:
                price = f"; {lo.ms / acc:.2f} ms per top-1 point at {lo.height}" + (
                    f" and {hi.ms / acc:.2f} ms at {hi.height}" if hi is not lo and hi.ms > 0 else "") + \
                    f" ({acc:+.1f} points in the paper)"
            span = (f"{_ci(lo)} = {_pct(lo.share_latency)} of the latency at {lo.height}x{lo.width}"
                    + (f" and {_ci(hi)} = {_pct(hi.share_latency)} at {hi.height}x{hi.width}" if hi is not lo else ""))
            madds = _pct(lo.share_madds) + (f" and {_pct(hi.share_madds)}" if hi is not lo and
                                            _pct(hi.share_madds) != _pct(lo.share_madds) else "")
            parts.append(f"{_name(comp)}: {span}, against {madds} of the MAdds{price}")
        out.append(f"On {rt}, {model}: " + "; ".join(parts) + ".")
    return out


def _accuracy(model: str, comp: str) -> float | None:
    name = model.partition(":")[0]
    ab = models.family_info(models.spec(name).family).ablations
    if ab is None:
        return None
    d = next((d for d in ab.differences if d.component == comp), None)
    return d.accuracy if d else None


def _name(comp: str) -> str:
    return {"dyrelu": "dynamic ReLU", "former_bridges": "Former + bridges"}.get(comp, comp.replace("_", " "))


def _fmt_format(runtime: str) -> str:
    """The format of a runtime label ("tflite/litert-torch t1" -> "tflite")."""
    return runtime.split()[0].split("/")[0]


def headline(w: Why) -> tuple[list[str], list[list[str]]]:
    """The section's headline table for each subject: per runtime (the ablations' thread count, default mode) and
    resolution, the cost of Former + bridges and of dynamic ReLU, the fixed cost, the share of the measured peak and
    what breaking the feedback path buys with two threads (default mode and, where timed, the parallel mode)."""
    diffs = [c for c in w.components if c.method == "difference" and not c.component.startswith("per_")]
    cols = sorted({(c.model, c.runtime, c.height, c.width) for c in diffs},
                  key=lambda k: (k[0], k[1], k[2] * k[3]))
    if not cols:
        return [], []
    models_ = list(dict.fromkeys(k[0] for k in cols))
    header = [""] + [(f"{k[0]} " if len(models_) > 1 else "") + f"{k[1]} {k[2]}" +
                     (f"x{k[3]}" if k[2] != k[3] else "") for k in cols]

    def comp_cell(k, name):
        c = next((c for c in diffs if (c.model, c.runtime, c.height, c.width) == k and c.component == name), None)
        if c is None:
            return ""
        madds = f", MAdds {_pct(c.share_madds)}" if c.share_madds is not None else ""
        return f"{c.ms:.2f} ms ({c.ms_low:.2f} to {c.ms_high:.2f}) = {_pct(c.share_latency)}{madds}"

    def fixed_cell(k):
        f = next((f for f in w.fits if f["model"] == k[0] and f["runtime"] == k[1]), None)
        pt = None if f is None else next((p for p in f["points"] if (p["height"], p["width"]) == k[2:]), None)
        if pt is None:
            return "needs two resolutions"
        return (f"{f['fixed_ms']:.2f} ms ({f['fixed_low_ms']:.2f} to {f['fixed_high_ms']:.2f}) = "
                f"{_pct(pt['fixed_share'])}")

    def peak_cell(k):
        e = next((e for e in w.efficiency if (e["model"], e["runtime"], e["height"], e["width"]) == k), None)
        peak = w.peaks.get(k[1])
        if e is None or e["share_peak"] is None or not peak:
            return ""
        return f"{_pct(e['share_peak'])} of {peak:.1f} GMAdd/s"

    def feedback_cell(k, mode):
        f = next((f for f in w.feedback if f["model"] == k[0] and f["format"] == _fmt_format(k[1])
                  and f["threads"] == 2 and f["mode"] == mode and (f["height"], f["width"]) == k[2:]), None)
        if f is None:
            return ""
        return f"{f['saved'].value:+.2f} ms, {f['share'].value:+.1%} ({f['share'].low:+.1%} to {f['share'].high:+.1%})"

    rows = [["Former + bridges (= share of latency, of MAdds)", *[comp_cell(k, "former_bridges") for k in cols]],
            ["dynamic ReLU", *[comp_cell(k, "dyrelu") for k in cols]],
            ["fixed cost (share at this size)", *[fixed_cell(k) for k in cols]],
            ["achieved share of the measured peak", *[peak_cell(k) for k in cols]],
            ["breaking the feedback path, 2 threads, default mode", *[feedback_cell(k, "default") for k in cols]]]
    modes = sorted({f["mode"] for f in w.feedback if f["mode"] != "default" and f["threads"] == 2})
    rows += [[f"breaking the feedback path, 2 threads, {m} mode", *[feedback_cell(k, m) for k in cols]]
             for m in modes]
    return header, [r for r in rows if any(r[1:])]


def fit_sentences(w: Why) -> list[str]:
    out = []
    for f in w.fits:
        if f["overrides"] or f["role"] not in ("subject", "baseline"):
            continue
        pts = sorted(f["points"], key=lambda p: p["gmadds"])
        lo, hi = pts[0], pts[-1]
        eff = [e for e in w.efficiency if e["model"] == f["model"] and e["runtime"] == f["runtime"]]
        eff = {(e["height"], e["width"]): e for e in eff}
        el, eh = eff.get((lo["height"], lo["width"])), eff.get((hi["height"], hi["width"]))
        peak = ""
        if f["peak_gmadds_per_s"] and el and eh:
            peak = (f"; it runs at {el['gmadds_per_s']:.1f} GMAdd/s = {_pct(el['share_peak'])} of the measured peak "
                    f"({f['peak_gmadds_per_s']:.1f} GMAdd/s) at {lo['height']}x{lo['width']} and "
                    f"{_pct(eh['share_peak'])} at {hi['height']}x{hi['width']}")
            if f["ms_per_gmadd"] > 0:
                marginal = 1 / f["ms_per_gmadd"] * 1e3
                peak += (f"; each further MAdd runs at {marginal:.1f} GMAdd/s "
                         f"({_pct(marginal / f['peak_gmadds_per_s'])} of the peak)")
            else:
                peak += "; in this run its latency did not grow with its MAdds (no marginal rate)"
        out.append(f"On {f['runtime']}, {f['model']}: fixed cost {f['fixed_ms']:.2f} ms (95% CI "
                   f"{f['fixed_low_ms']:.2f}-{f['fixed_high_ms']:.2f}) plus {f['ms_per_gmadd']:.2f} ms per GMAdd: "
                   f"the fixed part is {_pct(lo['fixed_share'])} of the latency at {lo['height']}x{lo['width']} and "
                   f"{_pct(hi['fixed_share'])} at {hi['height']}x{hi['width']}{peak}.")
    return out


def overhead_sentences(w: Why) -> list[str]:
    """Where a profile names a cost outside the operators (ExecuTorch: the delegate's time no operator event
    covers), set it beside the fitted fixed cost of the same model and runtime."""
    out = []
    for f in w.fits:
        if f["overrides"] or f["role"] not in ("subject", "baseline"):
            continue
        rest = sorted((c for c in w.components if c.method == "profile" and c.model == f["model"]
                       and c.runtime == f["runtime"] and c.component.startswith(OUTSIDE_OPERATORS)),
                      key=lambda c: c.height * c.width)
        if len(rest) < 2:
            continue
        at = " and ".join(f"{c.ms:.2f} ms at {c.height}x{c.width}" for c in (rest[0], rest[-1]))
        out.append(f"On {f['runtime']}, {f['model']}: the profile's time outside the operators ({rest[0].component}) "
                   f"is {at}, beside a fitted fixed cost of {f['fixed_ms']:.2f} ms (95% CI {f['fixed_low_ms']:.2f}-"
                   f"{f['fixed_high_ms']:.2f}).")
    return out


def _series(items: list[dict[str, Any]], *fields: str) -> list[tuple[tuple, list[dict[str, Any]]]]:
    """Items grouped by `fields`, each group ordered by pixel count (smallest resolution first)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        groups[tuple(it[f] for f in fields)].append(it)
    return [(k, sorted(v, key=lambda it: it["height"] * it["width"])) for k, v in sorted(groups.items())]


def component_efficiency(w: Why) -> list[dict[str, Any]]:
    """Per difference component and cell: its MAdds over its time, against the runtime's peak."""
    out = []
    for c in w.components:
        if c.method != "difference" or not c.madds or c.ms <= 0 or c.component.startswith("per_"):
            continue
        ach = fitting.achieved_gmadds_per_s(c.madds, c.ms)
        peak = w.peaks.get(c.runtime)
        out.append({"model": c.model, "runtime": c.runtime, "height": c.height, "width": c.width,
                    "component": c.component, "gmadds": c.madds / 1e9, "ms": c.ms, "gmadds_per_s": ach,
                    "share_peak": ach / peak if peak else None})
    return out


def component_fit_sentences(w: Why) -> list[str]:
    """Why a component does not shrink with the image: its own fixed part (Theil-Sen of its ms over its MAdds)."""
    out = []
    for key, rows in _series(component_efficiency(w), "model", "runtime", "component"):
        if len(rows) < 2 or len({e["gmadds"] for e in rows}) < 2:
            continue
        fixed, slope = fitting.theil_sen([e["gmadds"] for e in rows], [e["ms"] for e in rows])
        lo, hi = rows[0], rows[-1]
        out.append(f"On {key[1]}, {_name(key[2])} of {key[0]}: {lo['ms']:.2f} ms for {lo['gmadds'] * 1e3:.1f} M "
                   f"MAdds at {lo['height']}x{lo['width']} ({_pct(lo['share_peak'])} of the peak) and "
                   f"{hi['ms']:.2f} ms for {hi['gmadds'] * 1e3:.1f} M at {hi['height']}x{hi['width']} "
                   f"({_pct(hi['share_peak'])}); {hi['gmadds'] / lo['gmadds']:.1f}x the MAdds cost "
                   f"{hi['ms'] / lo['ms']:.1f}x the time, "
                   + (f"and {fixed:.2f} ms of it does not scale with the MAdds ({_pct(fixed / lo['ms'])} of it at "
                      f"{lo['height']}x{lo['width']})." if fixed > 0 else
                      "so none of it is a fixed cost: its time grows faster than its MAdds, and it runs further "
                      "from the peak as the image grows."))
    return out


def feedback_sentences(w: Why) -> list[str]:
    out = []
    for key, rows in _series(w.feedback, "model", "runtime"):
        parts = [f"{f['saved'].value:+.2f} ms ({f['share'].value:+.1%}, 95% CI {f['share'].low:+.1%} to "
                 f"{f['share'].high:+.1%}) at {f['height']}x{f['width']}" for f in rows]
        t, mode = rows[0]["threads"], rows[0]["mode"]
        out.append(f"On {key[1]} ({t} thread(s), {mode} execution mode), breaking the feedback path of {key[0]} "
                   f"changes its latency by " + ", ".join(parts) + " (positive = the what-if is faster).")
    for m in w.modes:
        g, d = m["gain"], m.get("saved")
        verdict = ("faster" if g.low > 0 else "slower" if g.high < 0 else "no different, within the noise,")
        paired = f"{d.value:+.2f} ms, " if d is not None else ""
        out.append(f"{m['model']} ({m['variant']}) on {m['format']} with {m['threads']} thread(s) at "
                   f"{m['height']}x{m['width']}: the {m['mode']} execution mode is {verdict} than the default mode: "
                   f"{paired}{g.value:+.1%} (95% CI {g.low:+.1%} to {g.high:+.1%}; positive = the {m['mode']} mode "
                   f"is faster), paired round by round (the medians over all rounds are {m['mode_ms']:.2f} and "
                   f"{m['default_ms']:.2f} ms; a round-by-round pairing cancels the drift the medians carry).")
    return out


def landing_sentences(w: Why) -> list[str]:
    """Where a difference lands, by profile: the components whose time changes between the two cells, and what
    the optimizer did differently (fused activations, layout reorders) where the runtime says."""
    out = []
    for x in w.agreement:
        if x.get("method") != "profile difference":
            continue
        top = [(c, v) for c, v in x["shift"].items() if abs(v) >= 0.05 * max(abs(x["profile_ms"]), 1e-9)][:4]
        parts = ", ".join(f"{c} {v:+.2f} ms" for c, v in top)
        g_with, g_without = x["graphs"]
        graph = ""
        if g_with.get("convs") and g_without.get("convs"):
            fw, fo = g_with["convs_fused_activation"], g_without["convs_fused_activation"]
            fused = (f"onnxruntime fuses the activation into {fo} of {g_without['convs']} convolutions of "
                     f"{x['cells'][1]} but {fw} of {g_with['convs']} of {x['cells'][0]}" if fw != fo else
                     f"both graphs fuse the activation into {fw} of {g_with['convs']} convolutions")
            graph = (f"; {fused}, and {x['cells'][0]} has {g_with['layout_reorders']} layout reorders against "
                     f"{g_without['layout_reorders']}")
        out.append(f"On {x['runtime']} at {x['height']}x{x['width']}, {_name(x['component'])} of {x['model']} "
                   f"({x['difference_ms']:.2f} ms by difference) is {x['profile_ms']:.2f} ms by the difference of "
                   f"the two cells' profiles, landing on {parts}{graph}.")
    return out


def agreement_sentences(w: Why) -> list[str]:
    out = []
    if w.agreement:
        inside = sum(x["inside"] for x in w.agreement)
        dev = median(abs(x["profile_ms"] - x["difference_ms"]) / abs(x["difference_ms"]) for x in w.agreement
                     if x["difference_ms"])
        out.append(f"Difference vs profile on the host: {inside} of {len(w.agreement)} profiled component times lie "
                   f"inside the difference method's 95% interval; they differ by {dev:.0%} in the median.")
    if w.closure:
        good = sum(c["ok"] for c in w.closure)
        worst = max(w.closure, key=lambda c: abs(c["profiled_ms"] / c["median_ms"] - 1))
        out.append(f"Profiled components add up to the cell's measured median within {AGREEMENT_BOUND:.0%} in "
                   f"{good} of {len(w.closure)} profiled cells; the worst is {worst['model']} {worst['runtime']} "
                   f"{worst['height']}x{worst['width']} ({worst['tool']}: {worst['profiled_ms']:.2f} ms profiled vs "
                   f"{worst['median_ms']:.2f} ms timed).")
        paired = [c for c in w.closure if c.get("plain_ms")]
        if paired:
            good = sum(bool(c["ok_plain"]) for c in paired)
            drift = median(abs(c["plain_ms"] / c["median_ms"] - 1) for c in paired)
            worst = max(paired, key=lambda c: abs(c["profiled_ms"] / c["plain_ms"] - 1))
            out.append(f"Against unprofiled runs of the same artifact interleaved with the profiled ones (the same "
                       f"moment of the machine), the profiled components add up within {AGREEMENT_BOUND:.0%} in "
                       f"{good} of {len(paired)} cells; the worst is {worst['model']} {worst['runtime']} "
                       f"{worst['height']}x{worst['width']} ({worst['profiled_ms']:.2f} ms profiled vs "
                       f"{worst['plain_ms']:.2f} ms unprofiled). Those unprofiled runs differ from the timed medians "
                       f"by {drift:.0%} in the median cell: that much of the gap is the machine's drift between the "
                       f"timing and the profiling, not the profiler.")
    return out
