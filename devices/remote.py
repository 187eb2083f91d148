"""The remote half of devices/: a machine reached with the OpenSSH client (a Linux board, a Mac).

Transport: the `ssh` binary with argument lists, so the user's ssh_config, agents and jump hosts keep working:

    ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=F -o ConnectTimeout=N
        -o ControlMaster=auto -o ControlPath=DIR/%C -o ControlPersist=120 [-p P] [-l U] [-i K] -- HOST 'COMMAND'

A host key is never accepted on our behalf: an unknown or changed key is one line telling the user to check the
key and add it (`ssh-keyscan` prints it; compare its fingerprint out of band). Nothing the user wrote becomes part
of a local shell command (there is no local shell); the remote command is one string the remote shell parses, so
each word of it is quoted once with shlex.quote (`remote_command`). One multiplexed connection (ControlMaster)
serves a device's whole session, so a cell pays no handshake; `close()` ends it.

What runs there: the toolkit's own worker (devices/worker.py and what it imports: the models/, export/ and devices/
Python sources, a few hundred KB) is copied into a fresh per-session folder under the device's workdir at the
first use and removed at close, so a board never runs a stale copy. It speaks the same JSON-lines protocol over
the ssh channel as it does over a pipe on the host (devices/subproc.py). Artifacts are pushed once per device into
a content-addressed cache (`WORKDIR/artifacts/<key>/`, the key from the model file's sha256 and its manifest), so a
second sweep pushes nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.common import ROOT, brief
from models.errors import ToolkitError

SOURCE_PACKAGES = ("models", "export", "devices")  # what the worker imports (it never imports torch)
_SAFE_HOST = re.compile(r"[A-Za-z0-9_.:%\[\]@-]{1,255}")  # whole values only (fullmatch)
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")


class RemoteError(ToolkitError):
    """A remote call that failed; `stage` says where (transport, push, run) and `hint` what to do."""

    def __init__(self, message: str, stage: str = "transport"):
        super().__init__(message)
        self.stage = stage


# ---------------------------------------------------------------------------------------------------- quoting
def remote_command(words: list[str]) -> str:
    """One string for the remote shell: each word quoted once (the ssh client joins its arguments with spaces and
    the remote shell splits them again, so an unquoted word with a space or `;` would be re-parsed there)."""
    return " ".join(shlex.quote(str(w)) for w in words)


def shell_and(*commands: list[str]) -> str:
    """Several commands, each quoted word by word, joined with `&&` (the only shell syntax we send)."""
    return " && ".join(remote_command(c) for c in commands)


# ---------------------------------------------------------------------------------------------------- profile keys
@dataclass(frozen=True)
class SshKeys:
    """The connection keys of an ssh-reached profile (ssh and macos kinds)."""

    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None  # default: the user's ~/.ssh/known_hosts (whatever ssh_config says)
    connect_timeout: int = 10


SSH_KEYS = {"host": str, "port": int, "user": str, "identity_file": str, "known_hosts": str,
            "connect_timeout": int}


def check_keys(prof: dict[str, Any], where: str, types: dict[str, type], required: tuple[str, ...] = ()) -> None:
    """Unknown keys and wrong types, one line each naming the key, the profile and the file."""
    for key in prof:
        if key not in types:
            raise ToolkitError(f"{where}: unknown key {brief(key)}; valid keys: {', '.join(types)}")
    for key in required:
        if key not in prof:
            raise ToolkitError(f"{where}: missing key {key!r}")
    names = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", (int, float): "a number"}
    for key, typ in types.items():
        if key in prof:
            v = prof[key]
            ok = isinstance(v, typ) and not (typ is not bool and isinstance(v, bool))
            if not ok:
                raise ToolkitError(f"{where}: {key} must be {names.get(typ, 'of another type')}, not {brief(v)}")


def parse_ssh_keys(prof: dict[str, Any], where: str) -> SshKeys:
    host = prof["host"]
    if not host or not _SAFE_HOST.fullmatch(host) or host.startswith("-"):
        raise ToolkitError(f"{where}: host {brief(host)} is not a host name or address")
    user = prof.get("user")
    if user is not None and not _USER.fullmatch(user):
        raise ToolkitError(f"{where}: user {brief(user)} is not a user name")
    port = prof.get("port", 22)
    if not 1 <= port <= 65535:
        raise ToolkitError(f"{where}: port must be 1-65535, not {port}")
    timeout = prof.get("connect_timeout", 10)
    if not 1 <= timeout <= 600:
        raise ToolkitError(f"{where}: connect_timeout must be 1-600 seconds, not {timeout}")
    files = {}
    for key in ("identity_file", "known_hosts"):
        if prof.get(key) is not None:
            p = Path(prof[key]).expanduser()
            if not p.is_file():
                raise ToolkitError(f"{where}: {key} {p} does not exist")
            files[key] = str(p)
    return SshKeys(host=host, port=port, user=user, connect_timeout=timeout, **files)


# ---------------------------------------------------------------------------------------------------- errors
_SSH_ERRORS = (  # (substring of ssh's stderr, what it means, what to do); first match wins
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "its host key has CHANGED since it was added to known_hosts",
     "if the board was reinstalled, remove the old key (ssh-keygen -R {host}) and add the new one after checking "
     "its fingerprint; otherwise do not connect"),
    ("Host key verification failed", "its host key is not in known_hosts (we never accept one automatically)",
     "check the key's fingerprint and add it: ssh-keyscan -p {port} {host} >> {known_hosts}"),
    ("No ED25519 host key is known", "its host key is not in known_hosts", "add it after checking its fingerprint"),
    ("Permission denied", "authentication failed", "check user and identity_file (or your ssh agent)"),
    ("Connection refused", "nothing accepts ssh connections there", "is the board on and sshd running?"),
    ("Connection timed out", "the connection timed out", "is the board on this network?"),
    ("Operation timed out", "the connection timed out", "is the board on this network?"),
    ("Could not resolve hostname", "its host name does not resolve", "check host in the profile"),
    ("No route to host", "there is no route to it", "check the network"),
    ("Network is unreachable", "the network is unreachable", "check the network"),
    ("Connection closed", "the connection closed", "the board may have rebooted or dropped off the network"),
    ("Connection reset", "the connection was reset", "the board may have rebooted or dropped off the network"),
    ("Broken pipe", "the connection broke", "the board may have rebooted or dropped off the network"),
    ("closed by remote host", "the connection was closed by the board", "the board may have rebooted"),
)


def classify_ssh(stderr: str, device: str, keys: SshKeys) -> str:
    """ssh's own failure (exit status 255) as one line naming the device and what to do."""
    where = f"{keys.user + '@' if keys.user else ''}{keys.host}:{keys.port}"
    for needle, what, todo in _SSH_ERRORS:
        if needle in stderr:
            todo = todo.format(host=keys.host, port=keys.port, known_hosts=keys.known_hosts or "~/.ssh/known_hosts")
            return f"device {device} ({where}): {what}; {todo}"
    tail = " ".join(stderr.split())[-300:]
    return f"device {device} ({where}): ssh failed" + (f": {tail}" if tail else "")


def remote_failure(stderr: str, code: int, device: str, what: str) -> str:
    """A remote command's own failure (not ssh's) as one line: a missing program, a full disk, or its stderr."""
    text = " ".join(stderr.split())
    if "No space left on device" in text:
        return f"device {device}: {what} failed: the board's disk is full; free space there or set workdir"
    if code == 127 or "not found" in text or "No such file or directory" in text and "python" in text.lower():
        return f"device {device}: {what} failed: a program is missing there ({text[-200:]})"
    return f"device {device}: {what} failed (exit {code})" + (f": {text[-300:]}" if text else "")


# ---------------------------------------------------------------------------------------------------- transport
class Ssh:
    """A device's ssh connection: argument lists for the OpenSSH client over one multiplexed master connection."""

    def __init__(self, device: str, keys: SshKeys, binary: str = "ssh"):
        self.device = device
        self.keys = keys
        self.binary = binary
        self._control_dir: str | None = None
        self._home: str | None = None

    def options(self) -> list[str]:
        k = self.keys
        if self._control_dir is None:
            # A short path of our own (a unix socket path is limited to ~100 bytes): the multiplexed connection.
            self._control_dir = tempfile.mkdtemp(prefix="mdt-ssh-")
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={k.connect_timeout}",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=120",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR",
                "-p", str(k.port)]
        if k.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={k.known_hosts}"]
        if k.user:
            opts += ["-l", k.user]
        if k.identity_file:
            opts += ["-i", k.identity_file, "-o", "IdentitiesOnly=yes"]
        return opts

    def argv(self, command: str) -> list[str]:
        """The local argument list running `command` (already quoted for the remote shell) on the device."""
        if shutil.which(self.binary) is None:
            raise RemoteError(f"device {self.device}: no `{self.binary}` program on this computer; install the "
                              "OpenSSH client (apt install openssh-client)")
        return [self.binary, *self.options(), "--", self.keys.host, command]

    def run(self, command: str, *, what: str, input: bytes | None = None, timeout: float = 120.0,
            stage: str = "run") -> str:
        """Run a remote command; its stdout, or RemoteError as one line (stage "transport" when ssh itself failed)."""
        try:
            proc = subprocess.run(self.argv(command), input=input, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"device {self.device}: {what} did not finish within {timeout:g} s", "timeout") \
                from None
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            raise RemoteError(classify_ssh(err, self.device, self.keys), "transport")
        if proc.returncode != 0:
            raise RemoteError(remote_failure(err, proc.returncode, self.device, what), stage)
        return proc.stdout.decode(errors="replace")

    def home(self) -> str:
        if self._home is None:
            out = self.run('printf "%s" "$HOME"', what="reading $HOME").strip()
            if not out.startswith("/"):
                raise RemoteError(f"device {self.device}: its $HOME is not an absolute path ({out!r})")
            self._home = out
        return self._home

    def expand(self, path: str) -> str:
        """A profile's remote path with `~/` resolved against the device's $HOME (then plain quoting suffices)."""
        if path == "~" or path.startswith("~/"):
            return self.home() + path[1:]
        return path

    def close(self) -> None:
        """End the multiplexed connection (if one was opened) and remove its socket folder."""
        if self._control_dir is None:
            return
        if shutil.which(self.binary):
            try:
                subprocess.run([self.binary, *self.options(), "-O", "exit", "--", self.keys.host],
                               capture_output=True, timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                pass
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None


# ---------------------------------------------------------------------------------------------------- what we push
def source_tar() -> bytes:
    """The worker's sources (models/, export/, devices/: Python files and the device profiles) as a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for pkg in SOURCE_PACKAGES:
            for path in sorted((ROOT / pkg).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    tar.add(path, arcname=str(path.relative_to(ROOT)))
    return buf.getvalue()


def artifact_key(directory: Path) -> str:
    """A pushed artifact's name in the device's cache: its manifest and its model file's recorded sha256 (or, for a
    bare file, the file's own sha256)."""
    h = hashlib.sha256()
    manifest = directory / "manifest.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    else:
        for p in sorted(directory.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(directory)).encode())
                h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:32]


def tar_dir(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(directory.iterdir()):
            tar.add(p, arcname=p.name)  # a .mlpackage is a folder: added whole
    return buf.getvalue()


def new_session_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"
