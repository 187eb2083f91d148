"""The `android` device kind: a phone over adb, timed by native benchmark programs running on the phone.

The timing loop runs on the phone, in the native program, never across adb: `benchmark_model` for .tflite, our
native ExecuTorch runner (devices/native/, built with the NDK) or `executor_runner` for .pte, and
`onnxruntime_perf_test` for .onnx. Each program and each model file is pushed once, content-addressed, under
`workdir/cache/`; a sweep's commands run in a per-session folder `workdir/runs/<id>/` removed at the end. A group
is timed in interleaved rounds through devices/rounds.run_in_chunks: one program call per chunk, the iteration
count exact (benchmark_model: `--num_runs=N --warmup_runs=W --min_secs=0 --warmup_min_secs=0`, then `count=` is
checked; executor_runner has no warm-up flag, so it runs W + N and the first W are dropped; onnxruntime_perf_test:
`-m times -r N`). Output is parsed by devices/parsers.py. Programs that print only aggregates give one value per
chunk (the chunk's median, else its mean) and the cell is stored with raw_samples = false: never invented samples.

Before every round the phone cools down: wait until its hottest CPU sensor is below `cooldown_c` (or, with no
temperature readable, thermal status 0), up to `cooldown_timeout_s`; the waits and the temperatures before and after
each cell are stored with it. `cores = "big"` pins with `taskset` to the cores of highest `cpu_capacity` (falling
back to `cpuinfo_max_freq`); the mask used is recorded.

Every adb call: `adb -s SERIAL ...`, an argument list, a timeout; shell commands are one string with each word
quoted once and `; echo RC=$?` appended (old adb returns 0 whatever the command did). adb's errors become one line
(devices/adb_parse.py). A phone that vanishes mid-sweep fails the group with stage "transport"; after a few in a row
the sweep stops trying it and the same command resumes later.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.adb_parse import AdbError, big_cores_mask, check_adb, parse_getprop, parse_thermal, shell_status
from devices.base import Kind, MeasureError, Measurement, OneBurst
from devices.remote import check_keys
from devices.rounds import plan, run_in_chunks
from models.common import brief
from models.errors import ToolkitError

DEFAULT_WORKDIR = "/data/local/tmp/mobile-deploy-toolkit"
DELEGATES = ("xnnpack", "gpu", "nnapi")
# format -> (profile key of its program, the parser's tool name), in order of preference
PROGRAMS = {"tflite": (("benchmark_model", "benchmark_model"),),
            "executorch": (("native_runner", "native"), ("executor_runner", "executor_runner")),
            "onnx": (("onnxruntime_perf_test", "onnxruntime_perf_test"),)}
_SERIAL = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole values only (fullmatch)
_GONE = ("not found", "no devices/emulators", "offline", "unauthorized", "authorizing", "more than one device")


def _quote(words: list[str]) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


@dataclass(frozen=True)
class AndroidProfile:
    kind: str = "android"
    description: str = ""
    serial: str = ""
    adb: str = "adb"
    workdir: str = DEFAULT_WORKDIR
    benchmark_model: str | None = None
    native_runner: str | None = None
    executor_runner: str | None = None
    onnxruntime_perf_test: str | None = None
    cores: str = "big"
    cooldown_c: float = 45.0
    cooldown_timeout_s: float = 180.0
    delegate: str = "xnnpack"

    KEYS = {"kind": str, "description": str, "serial": str, "adb": str, "workdir": str, "benchmark_model": str,
            "native_runner": str, "executor_runner": str, "onnxruntime_perf_test": str, "cores": str,
            "cooldown_c": (int, float), "cooldown_timeout_s": (int, float), "delegate": str}

    @classmethod
    def parse(cls, prof: dict[str, Any], where: str) -> AndroidProfile:
        check_keys(prof, where, cls.KEYS, required=("serial",))
        serial = prof["serial"]
        if not _SERIAL.fullmatch(serial):
            raise ToolkitError(f"{where}: serial {brief(serial)} is not an adb serial (`adb devices` lists them)")
        workdir = prof.get("workdir", DEFAULT_WORKDIR)
        if not workdir.startswith("/") or any(c in workdir for c in "\n\r\x00"):
            raise ToolkitError(f"{where}: workdir must be an absolute path on the phone, not {brief(workdir)}")
        cores = prof.get("cores", "big")
        if cores not in ("big", "all") and not re.fullmatch(r"(0x)?[0-9a-fA-F]{1,64}", cores):
            raise ToolkitError(f"{where}: cores must be \"big\", \"all\" or a hex mask such as \"f0\", not "
                               f"{brief(cores)}")
        delegate = prof.get("delegate", "xnnpack")
        if delegate not in DELEGATES:
            raise ToolkitError(f"{where}: delegate must be one of {', '.join(DELEGATES)}, not {brief(delegate)}")
        for key in ("cooldown_c", "cooldown_timeout_s"):
            if key in prof and (isinstance(prof[key], bool) or not 0 <= prof[key] <= 10_000):
                raise ToolkitError(f"{where}: {key} must be a number of at least 0, not {brief(prof[key])}")
        programs = {}
        for key in ("benchmark_model", "native_runner", "executor_runner", "onnxruntime_perf_test"):
            if prof.get(key):
                p = Path(prof[key]).expanduser()
                if not p.is_file():
                    raise ToolkitError(f"{where}: {key} {p} does not exist on this computer (the program is pushed "
                                       "to the phone from here; docs/devices.md says where to get it)")
                if p.stat().st_size == 0:
                    raise ToolkitError(f"{where}: {key} {p} is an empty file, not a program")
                programs[key] = str(p.resolve())
        return cls(kind="android", description=prof.get("description", ""), serial=serial,
                   adb=check_adb_program(prof.get("adb", "adb"), where), workdir=workdir.rstrip("/"),
                   cores=cores.lower().removeprefix("0x"),
                   cooldown_c=float(prof.get("cooldown_c", 45.0)),
                   cooldown_timeout_s=float(prof.get("cooldown_timeout_s", 180.0)), delegate=delegate, **programs)


def check_adb_program(adb: str, where: str) -> str:
    """The profile's `adb`: a program name (looked up on PATH when it runs) or the path of an executable file."""
    if not adb or adb != adb.strip() or any(c in adb for c in "\n\r\x00"):
        raise ToolkitError(f"{where}: adb must be the adb program's name or path, not {brief(adb)}")
    if "/" in adb:
        p = Path(adb).expanduser()
        if not p.is_file() or not os.access(p, os.X_OK):
            what = "a directory" if p.is_dir() else "not executable" if p.is_file() else "not there"
            raise ToolkitError(f"{where}: adb {p} is {what}: set adb to the adb program (apt install adb)")
        return str(p)
    return adb


class AdbTimeout(AdbError):
    """adb did not come back in time (the program on the phone may still be running: it is killed)."""

    stage = "timeout"


class Adb:
    """`adb -s SERIAL ...` with a timeout, errors as one line naming the device."""

    def __init__(self, device: str, serial: str, binary: str = "adb"):
        self.device, self.serial, self.binary = device, serial, binary

    def run(self, args: list[str], *, timeout: float = 60.0) -> str:
        argv = [self.binary, "-s", self.serial, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise AdbError(f"device {self.device}: no `{self.binary}` program on this computer; install adb "
                           "(apt install adb) or set `adb` in the profile") from None
        except subprocess.TimeoutExpired:
            raise AdbTimeout(f"device {self.device}: adb {args[0]} did not finish within {timeout:g} s") from None
        except (OSError, ValueError) as exc:  # a directory, no execute permission, a NUL byte in an argument
            raise AdbError(f"device {self.device}: cannot run `{self.binary}`: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
        err = proc.stderr.decode(errors="replace")
        try:
            check_adb(err, proc.returncode, self.serial)
        except AdbError as exc:
            raise AdbError(f"device {self.device}: {exc}") from None
        return proc.stdout.decode(errors="replace")

    def shell(self, command: str, *, timeout: float = 60.0) -> tuple[str, int]:
        """(output, exit status) of one shell command on the phone (already quoted word by word). The status is
        printed on a line of its own after a newline of ours, so output without a final newline keeps it apart
        (devices/adb_parse.shell_status takes the newline off again)."""
        return shell_status(self.run(["shell", f"{command}; rc=$?; echo; echo RC=$rc"], timeout=timeout))

    def push(self, local: str, remote: str, *, timeout: float = 600.0) -> None:
        self.run(["push", local, remote], timeout=timeout)


def _gone(exc: BaseException) -> bool:
    return isinstance(exc, AdbError) and any(g in str(exc) for g in _GONE)


class AndroidDevice(OneBurst):
    kind = "android"
    give_up_after = 3  # transport failures in a row before a sweep stops trying the phone

    def __init__(self, name: str, profile: AndroidProfile):
        self.name = name
        self.profile = profile
        self.adb = Adb(name, profile.serial, profile.adb)
        self._props: dict[str, str] | None = None
        self._cached: set[str] | None = None
        self._session: str | None = None
        self._mask: tuple[str | None, str] | None = None

    # ------------------------------------------------------------------------------------------ the phone
    def _sh(self, words: list[str] | str, what: str, *, timeout: float = 60.0,
            ok_codes: tuple[int, ...] = (0,)) -> str:
        out, rc = self.adb.shell(words if isinstance(words, str) else _quote(words), timeout=timeout)
        if rc not in ok_codes:
            tail = " ".join(out.split())[-300:]
            raise AdbError(f"device {self.name}: {what} failed on the phone (exit {rc})"
                           + (f": {tail}" if tail else ""))
        return out

    def props(self) -> dict[str, str]:
        """The phone's properties (`getprop`): its own words, kept as text (at most 100 characters a value; every
        writer escapes them, models/escape.py)."""
        if self._props is None:
            self._props = {k: v[:100] for k, v in parse_getprop(self._sh(["getprop"], "getprop")).items()}
        return self._props

    def _core_listing(self) -> str:
        out = self._sh("for f in /sys/devices/system/cpu/cpu[0-9]*/cpu_capacity; do [ -r \"$f\" ] && "
                       "echo \"$f:$(cat \"$f\")\"; done", "reading cpu_capacity", ok_codes=(0, 1))
        if out.strip():
            return out
        return self._sh("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do [ -r \"$f\" ] && "
                        "echo \"$f:$(cat \"$f\")\"; done", "reading cpuinfo_max_freq", ok_codes=(0, 1))

    def mask(self) -> tuple[str | None, str]:
        """(taskset mask or None, how it was chosen)."""
        if self._mask is None:
            c = self.profile.cores
            if c == "all":
                self._mask = (None, "all cores")
            elif c != "big":
                self._mask = (c, f"mask {c} from the profile")
            else:
                listing = self._core_listing()
                try:
                    m = big_cores_mask(listing)
                    src = "cpu_capacity" if "cpu_capacity" in listing else "cpuinfo_max_freq"
                    self._mask = (m, f"big cores by {src}: mask {m}")
                except AdbError:
                    self._mask = (None, "all cores (neither cpu_capacity nor cpuinfo_max_freq readable)")
        return self._mask

    def thermal(self) -> dict[str, Any]:
        """{status, cpu_c} now: dumpsys thermalservice, else the hottest thermal zone."""
        try:
            out, rc = self.adb.shell("dumpsys thermalservice", timeout=30)
            if rc == 0:
                t = parse_thermal(out)
                if t.cpu_max is not None or t.status is not None:
                    return {"status": t.status, "cpu_c": t.cpu_max, "source": "thermalservice"}
        except AdbError as exc:
            if _gone(exc):
                raise
        out = self._sh("for z in /sys/class/thermal/thermal_zone*; do [ -r \"$z/temp\" ] && "
                       "echo \"$(cat \"$z/type\") $(cat \"$z/temp\")\"; done", "reading thermal zones", ok_codes=(0, 1))
        temps = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and re.fullmatch(r"-?[0-9]{1,7}", parts[1]) and "cpu" in parts[0].lower():
                temps.append(int(parts[1]) / 1000)
        return {"status": None, "cpu_c": max(temps) if temps else None, "source": "thermal_zone"}

    def cool_down(self) -> dict[str, Any]:
        """Wait until the CPU is below cooldown_c (or thermal status 0 when no temperature is readable), up to the
        timeout; what was seen and how long it took."""
        t0 = time.monotonic()
        while True:
            state = self.thermal()
            cool = (state["cpu_c"] < self.profile.cooldown_c) if state["cpu_c"] is not None \
                else state["status"] in (0, None)
            waited = time.monotonic() - t0
            if cool or waited >= self.profile.cooldown_timeout_s:
                return {**state, "waited_s": round(waited, 1), "cool": cool}
            time.sleep(min(5.0, max(0.1, self.profile.cooldown_timeout_s - waited)))

    # ------------------------------------------------------------------------------------------ what it can do
    def program_for(self, fmt: str) -> tuple[str, str] | None:
        for key, tool in PROGRAMS.get(fmt, ()):
            path = getattr(self.profile, key)
            if path:
                return path, tool
        return None

    def can_run(self, fmt: str) -> str | None:
        if fmt == "coreml":
            return "needs an Apple device (Core ML): the ios or macos kind"
        if fmt not in PROGRAMS:
            return f"no benchmark program for {fmt} on android"
        if self.program_for(fmt) is None:
            names = " or ".join(k for k, _ in PROGRAMS[fmt])
            return f"no {names} in the profile"
        return None

    def describe(self) -> dict[str, Any]:
        p = self.props()
        mask, how = self.mask()
        return {"device": self.name, "kind": self.kind, "description": self.profile.description,
                "serial": self.profile.serial, "model": p.get("ro.product.model"),
                "manufacturer": p.get("ro.product.manufacturer"),
                "soc": " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x)
                or p.get("ro.board.platform") or p.get("ro.hardware"),
                "abi": p.get("ro.product.cpu.abi"), "sdk": p.get("ro.build.version.sdk"),
                "cores_used": how, "mask": mask, "delegate": self.profile.delegate,
                "programs": {fmt: Path(prog[0]).name for fmt in PROGRAMS if (prog := self.program_for(fmt))},
                "cpu_model": p.get("ro.soc.model") or p.get("ro.product.model")}

    def check(self) -> tuple[list[str], list[str]]:
        facts: list[str] = []
        try:
            state = self.adb.run(["get-state"], timeout=20).strip()
        except AdbError as exc:
            return facts, [str(exc)]
        if state != "device":
            return facts, [f"device {self.name}: adb says it is {state!r}, not ready"]
        d = self.describe()
        facts.append(f"reached {self.profile.serial}: {d['manufacturer']} {d['model']}, SoC {d['soc']}, ABI "
                     f"{d['abi']}, SDK {d['sdk']}; {d['cores_used']}")
        problems = []
        runnable = []
        for fmt in PROGRAMS:
            why = self.can_run(fmt)
            (runnable.append(fmt) if why is None else facts.append(f"{fmt}: not run ({why})"))
        facts.append(f"formats it can run: {', '.join(runnable) or 'none'}")
        if not runnable:
            problems.append(f"device {self.name}: no benchmark program in the profile (docs/devices.md, Android)")
        try:
            t = self.thermal()
            facts.append(f"thermal: status {t['status']}, CPU {t['cpu_c']} C ({t['source']})")
        except AdbError as exc:
            problems.append(str(exc))
        return facts, problems

    # ------------------------------------------------------------------------------------------ files
    def _push_cached(self, local: Path) -> str:
        """The file's path on the phone, pushed into workdir/cache/<sha256>/<name> unless already there."""
        cache = f"{self.profile.workdir}/cache"
        if self._cached is None:
            out = self._sh(f"mkdir -p {shlex.quote(cache)} && ls -1 {shlex.quote(cache)}", "listing the cache")
            self._cached = {ln.strip() for ln in out.splitlines() if ln.strip()}
        digest = hashlib.sha256(local.read_bytes()).hexdigest()[:32]
        remote = f"{cache}/{digest}/{local.name}"
        if digest not in self._cached:
            part = f"{cache}/{digest}.part"
            self._sh(_quote(["mkdir", "-p", part]), "making a cache folder")
            self.adb.push(str(local), f"{part}/{local.name}")
            self._sh(f"chmod 755 {shlex.quote(part + '/' + local.name)} && mv {shlex.quote(part)} "
                     f"{shlex.quote(cache + '/' + digest)}", "finishing a push")
            self._cached.add(digest)
        return remote

    def _run_dir(self) -> str:
        if self._session is None:
            session = f"{self.profile.workdir}/runs/{secrets.token_hex(4)}"
            self._sh(_quote(["mkdir", "-p", session]), "making the run folder")
            self._session = session
        return self._session

    # ------------------------------------------------------------------------------------------ measuring
    def command(self, tool: str, program: str, model: str, *, threads: int, warmup: int, iters: int) -> list[str]:
        """The program's argument list for exactly `iters` timed runs after `warmup` untimed ones."""
        d = self.profile.delegate
        if tool == "benchmark_model":
            extra = {"xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"]}[d]
            return [program, f"--graph={model}", f"--num_threads={threads}", f"--num_runs={iters}",
                    f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0", "--max_secs=100000", *extra]
        if tool == "native":
            return [program, "--model", model, "--threads", str(threads), "--warmup", str(warmup), "--iters",
                    str(iters)]
        if tool == "executor_runner":  # no warm-up flag: warm-up + timed runs in one process; the first is cold
            return [program, f"--model_path={model}", f"--num_executions={max(warmup, 1) + iters}",
                    f"--cpu_threads={threads}"]
        if tool == "onnxruntime_perf_test":  # one warm-up run is always made; -m is the test mode
            ep = {"xnnpack": "xnnpack", "gpu": "cpu", "nnapi": "nnapi"}[d]
            return [program, "-m", "times", "-r", str(iters), "-x", str(threads), "-e", ep, "-I", model]
        raise ToolkitError(f"unknown benchmark program {tool}")

    def _chunk(self, fmt: str, model_remote: str, program_remote: str, tool: str, *, threads: int, warmup: int,
               iters: int, timeout: float):
        from devices.parsers import parse

        argv = self.command(tool, program_remote, model_remote, threads=threads, warmup=warmup, iters=iters)
        mask, _ = self.mask()
        run_dir = self._run_dir()
        pidfile = f"{run_dir}/program.pid"
        # The program writes its pid where a timeout can find it (`exec` keeps the pid): adb going away does not
        # end a program on the phone, so a hung one is killed there, not left heating the phone under the next cells.
        words = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', pidfile, *(["taskset", mask] if mask else []), *argv]
        try:
            out = self._sh(f"cd {shlex.quote(run_dir)} && {_quote(words)} 2>&1", f"{tool}", timeout=timeout)
        except AdbTimeout:
            self._kill(pidfile)
            raise
        if tool == "executor_runner":
            r = parse(out, tool)
            samples = (r.samples_ms or [])[max(warmup, 1) - 1:]  # the cold first execution is not a sample
            if len(samples) != iters:
                raise ToolkitError(f"device {self.name}: executor_runner gave {len(r.samples_ms or []) + 1} "
                                   f"iterations, expected {max(warmup, 1) + iters}")
            return r, samples
        r = parse(out, tool, expected=iters)
        if r.raw_samples and r.samples_ms:
            return r, list(r.samples_ms)
        agg = r.median_ms if r.median_ms is not None else r.mean_ms
        if agg is None:
            raise ToolkitError(f"device {self.name}: {tool} printed no median or mean")
        return r, [agg]  # one aggregate per chunk, stored with raw_samples = false

    def _said(self, error: str) -> str:
        """A member's error (run_in_chunks: "Type: message") as one line naming this device once."""
        text = error.split(": ", 1)[-1]
        return text if text.startswith(f"device {self.name}: ") else f"device {self.name}: {text}"

    def _kill(self, pidfile: str) -> None:
        """Kill the program of a chunk that timed out, on the phone (best effort: the phone may be gone too)."""
        try:
            self.adb.shell(f"kill -9 \"$(cat {shlex.quote(pidfile)})\"", timeout=20)
        except AdbError:
            pass

    def run_group(self, artifacts: list[Any], *, rounds: int, per_round: int, warmup: int, switch_warmup: int,
                  threads: int, timeout: float, seed: int, first_round: int = 0,
                  units: str | None = None) -> list[Measurement | MeasureError]:
        """Push, then time the group chunk by chunk (devices/rounds.run_in_chunks) with a cool-down before every
        round. A phone that vanishes fails the whole group with stage "transport"."""
        import export

        try:
            self.adb.run(["get-state"], timeout=20)
            before = self.cool_down()
        except AdbError as exc:
            raise MeasureError(str(exc), "transport" if _gone(exc) else "run") from None
        members: list[dict[str, Any] | MeasureError] = []
        for a in artifacts:
            try:
                art = export.resolve(getattr(a, "dir", a))
                fmt = art.manifest["format"]
                why = self.can_run(fmt)
                if why:
                    members.append(MeasureError(f"device {self.name}: not run: {why}", "load"))
                    continue
                program, tool = self.program_for(fmt)
                members.append({"fmt": fmt, "tool": tool, "program": self._push_cached(Path(program)),
                                "model": self._push_cached(Path(art.file)), "first": True, "parsed": None})
            except AdbError as exc:
                if _gone(exc):
                    raise MeasureError(str(exc), "transport") from None
                members.append(MeasureError(str(exc), "push"))
            except ToolkitError as exc:
                members.append(MeasureError(str(exc), "load"))
        live = [m for m in members if isinstance(m, dict)]
        waits: list[dict[str, Any]] = [before]

        def chunk(m: dict[str, Any], iters: int, sw: int):
            r, samples = self._chunk(m["fmt"], m["model"], m["program"], m["tool"], threads=threads,
                                     warmup=warmup if m["first"] else sw, iters=iters, timeout=timeout)
            if m["first"]:
                m["parsed"], m["first"] = r, False
            m["aggregate"] = not (r.raw_samples and r.samples_ms)
            return samples, list(r.cpu_samples_ms or [])

        def cooldown(rnd: int) -> None:
            waits.append(self.cool_down())

        try:
            recs = run_in_chunks(live, plan(max(len(live), 1), rounds, per_round, switch_warmup, seed, first_round),
                                 chunk, cooldown) if live else []
            after = self.thermal()
        except AdbError as exc:
            raise MeasureError(str(exc), "transport" if _gone(exc) else "run") from None
        if recs and all(r["error"] and any(g in r["error"] for g in _GONE) for r in recs):
            raise MeasureError(self._said(recs[0]["error"]), "transport")
        mask, how = self.mask()
        state = {"temperature_before_c": before.get("cpu_c"), "temperature_after_c": after.get("cpu_c"),
                 "thermal_status_before": before.get("status"), "thermal_status_after": after.get("status"),
                 "cooldown_waits_s": [w["waited_s"] for w in waits], "cooldown_c": self.profile.cooldown_c,
                 "mask": mask, "cores": how, "delegate": self.profile.delegate}
        out: list[Measurement | MeasureError] = []
        it = iter(zip(live, recs))
        for m in members:
            if isinstance(m, MeasureError):
                out.append(m)
                continue
            m, rec = next(it)
            if rec["error"]:
                out.append(MeasureError(self._said(rec["error"]), rec.get("stage") or "run"))
                continue
            r = m["parsed"]
            out.append(Measurement(
                samples_ms=rec["samples_ms"], load_ms=r.load_ms, first_ms=r.first_ms, warmup=warmup,
                threads=threads, cpu_samples_ms=rec["cpu_samples_ms"] if len(rec["cpu_samples_ms"]) ==
                len(rec["samples_ms"]) else [], rounds=rec["rounds"], per_round=per_round,
                switch_warmup=switch_warmup, runtime=f"{m['tool']} ({r.variant})" if r.variant else m["tool"],
                runtime_versions={"program": Path(m["program"]).name}, peak_rss_mb=r.peak_memory_mb,
                raw_samples=not m.get("aggregate"), device_state=state))
        return out

    def close(self) -> None:
        """Remove this session's run folder on the phone (the cache stays)."""
        if self._session is not None:
            try:
                self._sh(_quote(["rm", "-rf", self._session]), "removing the run folder", timeout=30)
            except AdbError:
                pass
            self._session = None
        self._cached = None


KIND = Kind("android", AndroidProfile, AndroidDevice)
