"""`bench why`: why the subject slows down on small images (decisions: docs/why.md).

    plan.py       which cells the why sweep times (the subject's ablations, the feedback path, the probes) and how
                  a cell's runtime mode reaches the runtime; pure, no torch
    run.py        the command: its arguments, the sweep (bench/sweep/), the profiled pass, the report section
    worker.py     the profiling process (`python -m bench.why.worker`), one profiled pass per cell
    store.py      the profiles, in the results store beside the cells
    analysis.py   a run's rows and profiles -> components, fits, peaks, feedback path, agreement (pure)
    sentences.py  the section's sentences and headline table, from that analysis (pure)
    report.py     why.csv, fit.csv, the plots and the Markdown section, beside a run's report

The names of analysis.py and sentences.py are re-exported here: `from bench import why; why.analyse_why(a)`. The
other modules are imported by name (`from bench.why import plan`); this file imports none of them, so the plan can
be imported by the sweep without the command, and the command can import the sweep.
"""

from bench.why.analysis import (
    AGREEMENT_BOUND,
    OUTSIDE_OPERATORS,
    PER_UNIT,
    Component,
    Why,
    analyse_why,
)
from bench.why.sentences import (
    agreement_sentences,
    component_efficiency,
    component_fit_sentences,
    component_sentences,
    feedback_sentences,
    fit_sentences,
    headline,
    landing_sentences,
    overhead_sentences,
)

__all__ = ["AGREEMENT_BOUND", "OUTSIDE_OPERATORS", "PER_UNIT", "Component", "Why", "agreement_sentences",
           "analyse_why", "component_efficiency", "component_fit_sentences", "component_sentences",
           "feedback_sentences", "fit_sentences", "headline", "landing_sentences", "overhead_sentences"]
