"""The resolution sweep: which input sizes make Mobile-Former slower than MobileNetV3 and MobileViT, and by how much.

    python -m bench run --device host --models a,b --formats onnx,tflite --res 128,224,512 --iters 100
    python -m bench report | list | compare RUN_A RUN_B

Layers, each usable alone: bench/sweep.py (cells, run identity and resume, export-then-measure loop),
bench/export_worker.py (exports in a separate process), bench/store.py (SQLite results store),
bench/stats.py (pure statistics), bench/report.py (CSV, Markdown, HTML, plots). Timing itself is the device's job
(devices/); bench/ only asks a device to run an artifact and stores what comes back.
"""
