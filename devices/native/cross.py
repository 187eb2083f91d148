"""et-bench for another Linux machine (an aarch64 board): cross-compiled here against that platform's executorch wheel.

    build_cross(arch, out=None, say=print) -> Path   the bundle's et-bench: bundle/et-bench + bundle/lib/*.so
    find_cross(arch) -> Path                         the current build's et-bench, or one line saying to build it
    bundle_of(binary) -> Path                        the folder to push to a board (binary + its libraries)

The recipe is the host build's (the same runner.cpp and CMakeLists.txt, `find_package(executorch)` with the
package's variables) with three differences: the compiler is the cross compiler (`aarch64-linux-gnu-g++`, through a
CMake toolchain file written into the build folder), `executorch_DIR` is the `share/cmake` folder of the executorch
wheel *for that platform* (fetched with `pip download --platform manylinux_..._aarch64 --no-deps`, cached, and
unpacked: its `lib/*.so` are aarch64 builds of the same 1.5.1 runtime), and the binary's run path is `$ORIGIN/lib`,
because it runs on the board from a folder that holds it and the wheel's libraries (`bundle/`), not from this
machine's site-packages. No torch is involved on either side: the wheel's runtime libraries need only libc,
libstdc++ and libgcc. When qemu-user is installed, the built binary is started once here under
`qemu-aarch64-static -L /usr/aarch64-linux-gnu` (`--version`) to prove it loads; the stamp records whether it was.
The same recipe with the NDK's toolchain file and an ExecuTorch built for Android is the Android build
(docs/devices.md says what differs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from models.errors import ToolkitError


@dataclass(frozen=True)
class Target:
    machine: str  # uname -m on the board
    triple: str  # the cross compiler's prefix
    apt: str  # the Debian package of the cross compiler
    qemu: str  # qemu-user binary that can start the result here
    sysroot: str  # the cross libc (qemu -L)


TARGETS = {"aarch64": Target("aarch64", "aarch64-linux-gnu", "g++-aarch64-linux-gnu", "qemu-aarch64-static",
                             "/usr/aarch64-linux-gnu")}
ALIASES = {"arm64": "aarch64"}
RPATH = "$ORIGIN/lib"  # the bundle's libraries, beside the binary
TOOLCHAIN_STEPS = 1  # bump when the toolchain file or the cmake flags below change (they are part of the build key)
SDK_GLIBC = (2, 36)  # the cross toolchain's glibc (Debian 12): the binary needs at least this on the board


def target(arch: str) -> Target:
    name = ALIASES.get(arch, arch)
    if name not in TARGETS:
        raise ToolkitError(f"no cross build for architecture {arch!r}; known: {', '.join(TARGETS)} (or this "
                           "machine's own)")
    return TARGETS[name]


def _key(t: Target) -> str:
    from devices.native import HERE, SOURCES, executorch_version

    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    h.update(json.dumps([executorch_version(), asdict(t), RPATH, TOOLCHAIN_STEPS]).encode())
    return h.hexdigest()[:16]


def default_dir(t: Target) -> Path:
    from devices.native import cache_root

    return cache_root() / f"native-{t.machine}-{_key(t)}"


def sdk(t: Target, say=print) -> Path:
    """The executorch wheel for the target, unpacked (its `executorch/` folder with lib, include, share/cmake)."""
    from devices import wheels
    from devices.native import cache_root, executorch_version

    version = executorch_version()
    folder = cache_root() / f"et-sdk-{t.machine}-{version}"
    if (folder / "executorch" / "share" / "cmake" / "executorch-config.cmake").is_file():
        return folder / "executorch"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheel_dir = wheels.fetch([f"executorch=={version}"], machine=t.machine, python=py, glibc=SDK_GLIBC,
                             no_deps=True, what=f"the executorch {version} wheel", say=say)
    found = sorted(wheel_dir.glob("executorch-*.whl"))
    if not found:
        raise ToolkitError(f"no executorch wheel in {wheel_dir}")
    part = folder.with_name(f"{folder.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    with zipfile.ZipFile(found[0]) as z:
        for name in z.namelist():
            if name.startswith(("executorch/lib/", "executorch/include/", "executorch/share/")):
                z.extract(name, part)
    try:
        part.rename(folder)
    except OSError:  # another build unpacked it first
        shutil.rmtree(part, ignore_errors=True)
    return folder / "executorch"


def missing_tools(t: Target) -> list[str]:
    need = [("cmake", "cmake"), (f"{t.triple}-g++", t.apt)]
    return [f"{prog} (apt install {pkg})" for prog, pkg in need if shutil.which(prog) is None]


def _toolchain_file(t: Target, folder: Path) -> Path:
    path = folder / f"toolchain-{t.machine}.cmake"
    path.write_text("\n".join([
        "# written by devices/native/cross.py: cross-compile for a Linux board",
        "set(CMAKE_SYSTEM_NAME Linux)", f"set(CMAKE_SYSTEM_PROCESSOR {t.machine})",
        f"set(CMAKE_C_COMPILER {t.triple}-gcc)", f"set(CMAKE_CXX_COMPILER {t.triple}-g++)",
        f"set(CMAKE_FIND_ROOT_PATH {t.sysroot})", "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)", "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)", ""]))
    return path


def build_cross(arch: str, out: str | Path | None = None, say=print) -> Path:
    """Cross-compile et-bench for `arch` (once per sources and executorch version); the bundle's binary."""
    from devices.native import BINARY, HERE, _current, build_lock, run_steps

    t = target(arch)
    folder = Path(out).resolve() if out is not None else default_dir(t)
    binary, stamp, key = folder / "bundle" / BINARY, folder / "stamp.json", _key(t)
    if _current(binary, stamp, key):
        return binary
    missing = missing_tools(t)
    if missing:
        raise ToolkitError(f"cross-compiling the native runner for {t.machine} needs {' and '.join(missing)}")
    package = sdk(t, say)
    with build_lock(folder):
        if _current(binary, stamp, key):
            return binary
        stamp.unlink(missing_ok=True)
        shutil.rmtree(folder / "bundle", ignore_errors=True)
        (folder / "bundle" / "lib").mkdir(parents=True)
        tree, log = folder / "build", folder / "build.log"
        steps = [["cmake", "-S", str(HERE), "-B", str(tree), "-DCMAKE_BUILD_TYPE=Release",
                  f"-DCMAKE_TOOLCHAIN_FILE={_toolchain_file(t, folder)}",
                  f"-Dexecutorch_DIR={package / 'share' / 'cmake'}", f"-DET_BENCH_RPATH={RPATH}",
                  f"-DCMAKE_RUNTIME_OUTPUT_DIRECTORY={folder / 'bundle'}"],
                 ["cmake", "--build", str(tree), "--parallel", str(os.cpu_count() or 1)]]
        say(f"cross-compiling {BINARY} for {t.machine} with {t.triple}-g++ against {package}")
        run_steps(steps, log, f"cross-compiling the native runner for {t.machine}")
        for lib in sorted((package / "lib").glob("*.so")):
            shutil.copy2(lib, folder / "bundle" / "lib" / lib.name)
        version, started = None, "not started here: no " + t.qemu
        if shutil.which(t.qemu):
            probe = subprocess.run([t.qemu, "-L", t.sysroot, str(binary), "--version"], capture_output=True,
                                   text=True, check=False, timeout=120)
            if probe.returncode != 0:
                raise ToolkitError(f"the native runner built for {t.machine} at {binary} does not start under "
                                   f"{t.qemu}: {(probe.stderr or probe.stdout).strip()[-300:]}")
            version, started = probe.stdout.strip(), f"{t.qemu} -L {t.sysroot}"
        stamp.write_text(json.dumps({"key": key, "arch": t.machine, "version": version, "started": started,
                                     "sdk": str(package)}))
    return binary


def find_cross(arch: str) -> Path:
    from devices.native import BINARY, _current

    t = target(arch)
    folder = default_dir(t)
    binary = folder / "bundle" / BINARY
    if not _current(binary, folder / "stamp.json", _key(t)):
        raise ToolkitError(f"the native ExecuTorch runner for {t.machine} is not built for these sources: run "
                           f"`make native ARCH={t.machine}`")
    return binary


def bundle_of(binary: Path) -> Path:
    """The folder to push: the binary's own when it runs from `$ORIGIN/lib` (a bundle), else the binary alone is
    not enough (a host build points at this machine's site-packages)."""
    folder = Path(binary).parent
    if not (folder / "lib").is_dir():
        raise ToolkitError(f"{binary} is not a bundle (no lib/ beside it): build one with "
                           "`python -m devices.native build --arch ARCH`")
    return folder
