"""The resolution sweep: which input sizes make the subject model slower than the baselines, and by how much.

    python -m bench run --device host --models a,b --formats onnx,tflite --res 128,224,512 --iters 100
    python -m bench report | list | compare RUN_A RUN_B

Layers, each usable alone: bench/sweep/ (cells, run identity and resume, export-then-measure loop, executors),
bench/export_worker.py (exports in a separate process), bench/store.py (SQLite results store),
bench/stats.py (pure statistics), bench/labels.py (model, runtime and resolution labels), bench/analysis.py (rows
to pairs, ratio curves, crossovers and the answer), bench/plots.py (the PNGs), bench/writers.py (CSV, Markdown,
HTML), bench/report.py (renders a run's report folder from the store), bench/profile.py (where the time goes),
bench/why/ (`bench why`: the attribution sweep, its profiles and its report section).
Which family is the subject and which are baselines is the model registry's (models/family_*.py), never bench/'s.
Timing itself is the device's job (devices/); bench/ only asks a device to run an artifact and stores what comes
back.
"""
