"""The native ExecuTorch runner: `et-bench` (runner.cpp + CMakeLists.txt here), built and driven from Python.

    build(out=None) -> Path          configure and build with cmake against the installed executorch package, into a
                                     cache folder keyed by the sources and the executorch version (a second build is
                                     instant); `make native` / `python -m devices.native build`
    find_binary(path=None) -> Path   an explicit binary, or the `make native` build; missing: one line saying so
    command(binary, model, ...)      the argument list of one run
    parse_output(text) -> NativeRun  the program's one JSON line, checked (pure)
    run(binary, model, ...)          one run as a subprocess, with a deadline
    NativeProgram                    one .pte of a host group timed through et-bench, chunk by chunk (devices/worker.py)

Why a program of our own: no runner binary comes with the pip wheel (DEVICES.md), `executor_runner` has no warm-up
and logs its times as text, and a phone or board cannot run executorch.runtime at all. The same source builds here
(this machine's wheel) and for Android with the NDK (docs/devices.md, "Native ExecuTorch runner"). This package is
not a device kind (no KIND): the host, and later a board's worker, use it for .pte members when a profile says
`runner = "native"`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ToolkitError

HERE = Path(__file__).resolve().parent
SOURCES = ("runner.cpp", "CMakeLists.txt")
BINARY = "et-bench"
TOOL_VERSION = 1  # runner.cpp's kToolVersion: the JSON line this module reads
RUNTIME = "executorch (native runner)"
EXIT_USAGE, EXIT_LOAD = 2, 3  # runner.cpp's exit codes besides 1 (a failed forward)


@dataclass(frozen=True)
class NativeRun:
    """What one et-bench run reported (times in ms)."""

    samples_ms: list[float]
    cpu_samples_ms: list[float]
    load_ms: float
    first_ms: float
    warmup: int
    threads: int
    overhead_us: float | None = None
    peak_rss_mb: float | None = None
    executorch: str = ""
    input_shape: list[int] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- the JSON line
def parse_output(text: str, *, iters: int | None = None, where: str = "et-bench") -> NativeRun:
    """The program's stdout as a NativeRun: exactly one JSON object line from et-bench of our TOOL_VERSION, with
    `iters` samples when given. Anything else is a ToolkitError naming what is wrong."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ToolkitError(f"{where} printed {len(lines)} lines on stdout; one JSON line expected")
    try:
        obj = json.loads(lines[0])
    except ValueError as exc:
        raise ToolkitError(f"{where} printed no valid JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("tool") != BINARY:
        raise ToolkitError(f"{where} printed JSON that is not et-bench's")
    if obj.get("tool_version") != TOOL_VERSION:
        raise ToolkitError(f"{where} is et-bench version {obj.get('tool_version')!r}; this toolkit reads version "
                           f"{TOOL_VERSION}: rebuild it (make native)")

    def number(key: str, required: bool = True) -> float | None:
        v = obj.get(key)
        if v is None and not required:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ToolkitError(f"{where}: {key} must be a non-negative number, not {v!r}")
        return float(v)

    def numbers(key: str) -> list[float]:
        v = obj.get(key)
        if not isinstance(v, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) and x >= 0
                                              for x in v):
            raise ToolkitError(f"{where}: {key} must be a list of non-negative numbers")
        return [float(x) for x in v]

    samples, cpu = numbers("samples_ms"), numbers("cpu_samples_ms")
    if len(samples) != len(cpu):
        raise ToolkitError(f"{where}: {len(samples)} samples but {len(cpu)} CPU samples")
    if iters is not None and len(samples) != iters:
        raise ToolkitError(f"{where}: {len(samples)} samples for {iters} iterations")
    for key in ("warmup", "threads"):
        if type(obj.get(key)) is not int:
            raise ToolkitError(f"{where}: {key} must be a whole number, not {obj.get(key)!r}")
    shapes = {k: (obj.get(k) or {}).get("shape", []) if isinstance(obj.get(k), dict) else [] for k in ("input",
                                                                                                     "output")}
    return NativeRun(samples_ms=samples, cpu_samples_ms=cpu, load_ms=number("load_ms"), first_ms=number("first_ms"),
                     warmup=obj["warmup"], threads=obj["threads"], overhead_us=number("overhead_us", False),
                     peak_rss_mb=number("peak_rss_mb", False), executorch=str(obj.get("executorch", "")),
                     input_shape=list(shapes["input"]), output_shape=list(shapes["output"]))


def command(binary: str | Path, model: str | Path, *, threads: int, warmup: int, iters: int,
            input_file: str | Path | None = None, output_file: str | Path | None = None) -> list[str]:
    """The argument list of one et-bench run (never a shell string)."""
    cmd = [str(binary), "--model", str(model), "--threads", str(int(threads)), "--warmup", str(int(warmup)),
           "--iters", str(int(iters))]
    if input_file is not None:
        cmd += ["--input", str(input_file)]
    if output_file is not None:
        cmd += ["--output", str(output_file)]
    return cmd


# --------------------------------------------------------------------------------------------- building
def executorch_package() -> Path:
    """The installed executorch package folder (found without importing it), resolved through links."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise ToolkitError("the native runner builds against the executorch package, which is not installed here "
                           "(make setup)")
    pkg = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (pkg / "share" / "cmake" / "executorch-config.cmake").is_file():
        raise ToolkitError(f"{pkg} has no share/cmake/executorch-config.cmake: this executorch ships no C++ runtime")
    return pkg


def executorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        return "unknown"


def build_key() -> str:
    """What a build depends on: the sources, the executorch version and where its package lies."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    h.update(f"{executorch_version()}\0{executorch_package()}".encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """The toolkit's cache folder (the Makefile's VENV_CACHE): $VENV_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    env = os.environ.get("VENV_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mobile-deploy-toolkit"


def default_dir() -> Path:
    return cache_root() / f"native-{build_key()}"


def missing_tools() -> list[str]:
    """The build tools not on PATH, as `program (apt package)`."""
    need = [("cmake", "cmake", ("cmake",)), ("a C++ compiler", "g++", ("c++", "g++", "clang++"))]
    return [f"{what} (apt install {pkg})" for what, pkg, progs in need if not any(shutil.which(p) for p in progs)]


def host_machine() -> str:
    import platform

    return platform.machine()


def build(out: str | Path | None = None, arch: str | None = None) -> Path:
    """Build et-bench (once per sources and executorch version) and return its path; a current build is reused.
    `arch` another machine's (aarch64): cross-compiled against that platform's wheel (devices/native/cross.py)."""
    if arch is not None and arch != host_machine():
        from devices.native.cross import build_cross

        return build_cross(arch, out)
    folder = Path(out).resolve() if out is not None else default_dir()
    binary = folder / BINARY
    key = build_key()
    stamp = folder / "stamp.json"
    if _current(binary, stamp, key):
        return binary
    missing = missing_tools()
    if missing:
        raise ToolkitError(f"building the native runner needs {' and '.join(missing)}")
    with build_lock(folder):
        if _current(binary, stamp, key):
            return binary
        stamp.unlink(missing_ok=True)
        tree, log = folder / "build", folder / "build.log"
        steps = [["cmake", "-S", str(HERE), "-B", str(tree), "-DCMAKE_BUILD_TYPE=Release",
                  f"-Dexecutorch_DIR={executorch_package() / 'share' / 'cmake'}",
                  f"-DCMAKE_RUNTIME_OUTPUT_DIRECTORY={folder}"],
                 ["cmake", "--build", str(tree), "--parallel", str(os.cpu_count() or 1)]]
        run_steps(steps, log, "building the native runner")
        probe = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise ToolkitError(f"the native runner built at {binary} does not start: "
                               f"{(probe.stderr or probe.stdout).strip()[-300:]}")
        stamp.write_text(json.dumps({"key": key, "executorch": executorch_version(), "version": probe.stdout.strip()}))
    return binary


@contextlib.contextmanager
def build_lock(folder: Path):
    """The build folder, created, held for the whole build: a second build of it waits, then finds it current."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "w")  # noqa: SIM115 - held for the whole build
    except OSError as exc:
        raise ToolkitError(f"cannot create the build folder {folder}: {exc.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_steps(steps: list[list[str]], log: Path, doing: str) -> None:
    """Build commands one after the other, their output into `log`; the first failure is one line."""
    with open(log, "w") as f:
        for step in steps:
            f.write("$ " + " ".join(step) + "\n")
            f.flush()
            proc = subprocess.run(step, stdout=f, stderr=subprocess.STDOUT, check=False)
            if proc.returncode != 0:
                raise ToolkitError(f"{doing} failed at `{' '.join(step[:2])}` (exit {proc.returncode}): "
                                   f"{_last_error(log)}; full log: {log}")


def _current(binary: Path, stamp: Path, key: str) -> bool:
    try:
        return binary.is_file() and json.loads(stamp.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[0][:300]


def find_binary(path: str | Path | None = None, arch: str | None = None) -> Path:
    """The et-bench to run: `path` when given (a profile's native_runner), else the current `make native` build
    (for `arch`, another machine's: the current `make native ARCH=...` build)."""
    if path is not None:
        p = Path(path).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ToolkitError(f"native runner {p} is not an executable file")
        return p
    if arch is not None and arch != host_machine():
        from devices.native.cross import find_cross

        return find_cross(arch)
    try:
        binary = default_dir() / BINARY
    except ToolkitError as exc:
        raise ToolkitError(f"no native ExecuTorch runner: {exc}") from None
    if not _current(binary, binary.parent / "stamp.json", build_key()):
        raise ToolkitError("the native ExecuTorch runner is not built for these sources: run `make native`")
    return binary


# --------------------------------------------------------------------------------------------- running
def run(binary: str | Path, model: str | Path, *, threads: int, warmup: int, iters: int, timeout: float,
        input_file: str | Path | None = None, output_file: str | Path | None = None) -> NativeRun:
    """One et-bench run. Raises MeasureError: stage "load" (missing or corrupt program), "run" (a failed forward,
    bad output), "timeout" (killed after `timeout` s) or "crash" (killed by a signal), with its one error line."""
    from devices.base import MeasureError

    cmd = command(binary, model, threads=threads, warmup=warmup, iters=iters, input_file=input_file,
                  output_file=output_file)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        except OSError as exc:
            raise MeasureError(f"cannot start {binary}: {exc.strerror}", "load") from None
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if status is None:
        raise MeasureError(f"et-bench gave no answer within {timeout:g} s on {model}; killed", "timeout")
    if status < 0:
        raise MeasureError(f"et-bench was killed by signal {-status} on {model}" + _tail(stderr), "crash")
    if status != 0:
        line = _tail(stderr).removeprefix(": ") or f"et-bench exited with status {status}"
        raise MeasureError(line, "load" if status in (EXIT_LOAD, EXIT_USAGE) else "run")
    try:
        return parse_output(stdout, iters=iters)
    except ToolkitError as exc:
        raise MeasureError(str(exc), "run") from None


def _tail(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return f": {lines[-1][:400]}" if lines else ""


def outputs(binary: str | Path, model: str | Path, x: Any, *, threads: int = 1, timeout: float = 600.0) -> Any:
    """The program's first output for every input of x (N, 3, H, W) as float32 (N, classes): one et-bench run per
    input (`--iters 1 --warmup 0 --input --output`), the same path a parity check on a board without executorch's
    Python runtime takes."""
    import numpy as np

    from devices.base import MeasureError

    x = np.ascontiguousarray(x, dtype=np.float32)
    out = []
    with tempfile.TemporaryDirectory(prefix="et-bench-outputs-") as tmp:
        src, dst = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        for xi in x:
            src.write_bytes(xi.tobytes())
            dst.unlink(missing_ok=True)
            run(binary, model, threads=threads, warmup=0, iters=1, timeout=timeout, input_file=src, output_file=dst)
            if not dst.is_file():
                raise MeasureError(f"et-bench wrote no output for {model}", "run")
            out.append(np.fromfile(dst, dtype=np.float32))
    return np.stack(out)


class NativeProgram:
    """One .pte timed by et-bench, one process per call: a load call (load_ms, first_ms, the member's peak memory),
    then one call per chunk of the round protocol (`--warmup switch_warmup --iters per_round`). The input (the same
    array the Python runner would feed) is written once to a raw float32 file that every call reads."""

    def __init__(self, binary: str | Path, model: str | Path, x: Any, *, threads: int, timeout: float):
        import numpy as np

        self.binary, self.model, self.threads, self.timeout = Path(binary), Path(model), threads, timeout
        fd, name = tempfile.mkstemp(prefix="et-bench-input-", suffix=".f32")
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        self.input_file = Path(name)
        self.peak_mb: float | None = None
        self.executorch = ""  # the runtime version et-bench reports (a board has no executorch package to ask)

    def call(self, warmup: int, iters: int) -> NativeRun:
        r = run(self.binary, self.model, threads=self.threads, warmup=warmup, iters=iters, timeout=self.timeout,
                input_file=self.input_file)
        if r.peak_rss_mb is not None:
            self.peak_mb = max(self.peak_mb or 0.0, r.peak_rss_mb)
        self.executorch = r.executorch or self.executorch
        return r

    def versions(self) -> dict[str, str]:
        ours = executorch_version()
        return {"executorch": self.executorch if ours == "unknown" and self.executorch else ours,
                BINARY: f"{TOOL_VERSION} ({self.binary})"}

    def close(self) -> None:
        self.input_file.unlink(missing_ok=True)
