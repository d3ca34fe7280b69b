"""Find, start, watch and stop a real tritonserver, and remove what it leaves behind
(docs/triton-behaviour.md: "Health, failures and lifecycle"; "A real server to test against").

The server runs in its own session so stopping it also stops its stubs. Every python-family backend gets a
shared-memory prefix unique to this run, which is how its /dev/shm regions are found afterwards;
/tmp/python_env_* directories are matched by creation during the run (Triton hard-codes that template).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from stubforge.core import cache, fsutil
from stubforge.errors import StubforgeError

SHM_DIR = Path("/dev/shm")
ENV_TEMPLATE = "/tmp/python_env_*"
STUB_COMM = "triton_python_b"  # the kernel's 15-character comm of triton_python_backend_stub


class ServerError(StubforgeError):
    """The server cannot be found or started."""


@dataclass
class ServerInstall:
    """Where the server binary, its backends and its caches are, and the libraries it needs."""

    binary: Path
    backends: Path
    caches: Path | None
    library_path: list[str] = field(default_factory=list)
    pytriton: Path | None = None  # the installed package root, for its prebuilt stubs

    @property
    def prebuilt_stubs(self) -> Path | None:
        if self.pytriton is None:
            return None
        path = self.pytriton / "tritonserver" / "python_backend_stubs"
        return path if path.is_dir() else None


_MISSING_LIBRARY = re.compile(r"error while loading shared libraries: ([^:\s]+)")


def exit_hint(code: int | None, log: str, log_path: Path) -> str:
    """What to do about a server that exited before it was live, from its exit code and log."""
    missing = _MISSING_LIBRARY.search(log)
    if code == 127 and missing:
        library = missing.group(1)
        # auditwheel renames what it bundles to NAME-<8 hex>.so...: a library of a wheel's .libs directory.
        bundled = re.search(r"-[0-9a-f]{8}\.so", library) is not None
        if bundled or library.startswith(("libcudart", "libcublas", "libnvrtc", "libcuda", "libnccl")):
            return (
                f"the server cannot find {library}: a tritonserver copied out of the nvidia-pytriton wheel needs "
                "the wheel's site-packages/nvidia_pytriton.libs on LD_LIBRARY_PATH (or pass the binary inside "
                "the installed wheel: stubforge finds that directory itself, or use --pytriton)"
            )
        return f"the server cannot find {library}: put the directory holding it on LD_LIBRARY_PATH"
    return f"its log is {log_path}"


def from_binary(binary: Path) -> ServerInstall:
    """--tritonserver PATH: the binary, or the install root holding bin/tritonserver."""
    if binary.is_dir():
        binary = binary / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(
            f"--tritonserver {binary}: no such file",
            hint="pass the tritonserver binary, e.g. /opt/tritonserver/bin/tritonserver, or use --pytriton",
        )
    root = binary.resolve().parent.parent
    libs: list[str] = []
    pytriton = None
    # nvidia-pytriton's layout: site-packages/pytriton/tritonserver/bin/tritonserver + site-packages/*.libs
    if root.name == "tritonserver" and root.parent.name == "pytriton":
        pytriton = root.parent
        wheel_libs = root.parent.parent / "nvidia_pytriton.libs"
        if wheel_libs.is_dir():
            libs.append(str(wheel_libs))
    caches = root / "caches"
    return ServerInstall(
        binary=_executable(binary),
        backends=root / "backends",
        caches=caches if caches.is_dir() else None,
        library_path=libs,
        pytriton=pytriton,
    )


def _executable(binary: Path) -> Path:
    """An unzipped wheel loses the exec bit: run a cached copy then, never chmod the user's files."""
    if os.access(binary, os.X_OK):
        return binary
    digest = cache.sha256_of(binary)[:16]
    copy = cache.root() / "servers" / digest / "tritonserver"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        fsutil.copy_atomic(binary, copy, mode=0o755)
    return copy


def find_pytriton() -> ServerInstall:
    """--pytriton: the tritonserver inside nvidia-pytriton, in this environment or the first python3's."""
    candidates: list[Path] = []
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    for python in _python3_candidates():
        try:
            out = subprocess.run(
                [
                    python,
                    "-c",
                    "import importlib.util as u; s = u.find_spec('pytriton'); "
                    "print(s.submodule_search_locations[0] if s else '')",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                cwd="/",
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            candidates.append(Path(out))
    for package in candidates:
        binary = package / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return from_binary(binary)
    raise ServerError(
        "no nvidia-pytriton installation with a tritonserver found (looked in stubforge's environment, "
        "$VIRTUAL_ENV and the first python3 on PATH)",
        hint="pip install nvidia-pytriton==0.7.0 (Triton 2.51, r24.10), or pass --tritonserver PATH",
    )


def _python3_candidates() -> list[str]:
    found = []
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and (Path(venv) / "bin" / "python3").exists():
        found.append(str(Path(venv) / "bin" / "python3"))
    on_path = shutil.which("python3")
    if on_path and on_path not in found:
        found.append(on_path)
    return found


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class StubProcess:
    pid: int
    model: str  # the model directory name, from the stub's model path argument
    instance: str
    libpython: str | None
    numpy: str | None  # the numpy package dir mapped into the stub, when loaded
    exe: str | None


class RunningServer:
    """One tritonserver process with its ports, log and the resources it created."""

    def __init__(
        self,
        install: ServerInstall,
        repository: Path | str,
        backends: Path,
        log_path: Path,
        env: dict[str, str],
        python_backends: list[str],
        cwd: Path | None = None,
    ) -> None:
        self.install = install
        self.repository = repository  # a local directory, or the URL of an object-store repository
        self.backends = backends
        self.env = env
        self.log_path = log_path
        self.token = f"stubforge_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.envs_before = set(glob.glob(ENV_TEMPLATE))
        self.envs_in_use: set[str] = set()  # extracted env dirs its stubs ran from (remember_envs)
        args = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            # One load at a time: releases with `parallel_extraction_race` (r24.10 among them) corrupt tarball
            # envs of several python-family backends extracted in parallel; stubforge loads sequentially anyway.
            "--model-load-thread-count=1",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--log-verbose=1",
        ]
        if install.caches is not None:
            args.append(f"--cache-directory={install.caches}")
        for name in python_backends:
            args.append(f"--backend-config={name},shm-region-prefix-name={self.token}_{name}_")
        self.args = args
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd or repository),
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise ServerError(
                f"{install.binary} cannot be started: {exc.strerror}",
                hint="pass the tritonserver binary of this machine's architecture (--tritonserver PATH)",
            ) from exc

    @property
    def local_repository(self) -> Path | None:
        return self.repository if isinstance(self.repository, Path) else None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_offset(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_live(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v2/health/live"
        while time.monotonic() < deadline:
            if not self.alive():
                log = self.log_since(0)
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} before it was live",
                    hint=exit_hint(self.process.returncode, log, self.log_path),
                    details=_tail(log, 30),
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise ServerError(
            f"tritonserver was not live after {timeout:.0f} s",
            hint=f"its log is {self.log_path}",
            details=_tail(self.log_since(0), 30),
        )

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def dead_stubs(self) -> int:
        """Stub launches that exited but were not reaped: releases with `hangs_on_dead_stub` wait for them forever."""
        count = 0
        for child in self.children():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    count += 1
            except psutil.NoSuchProcess:
                continue
        return count

    def stubs(self) -> list[StubProcess]:
        found = []
        for child in self.children():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                argv = child.cmdline()
                exe = child.exe()
                if len(argv) == 12 and _is_emulator(argv[0]):
                    # binfmt_misc with the P flag runs `qemu-<arch> FILE ARGV0 ARGS...`: the stub is FILE.
                    exe, argv = argv[1], argv[2:]
                if len(argv) != 10 or not Path(argv[0]).name.startswith("triton_python_backend_stub"):
                    continue
                maps = [m.path for m in child.memory_maps(grouped=True)]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            model_path = Path(argv[1])
            model = model_path.parent.parent.name
            libpython = next((m for m in maps if Path(m).name.startswith("libpython")), None)
            numpy_dir = next(
                (str(Path(m).parent.parent) for m in maps if Path(m).name.startswith("_multiarray_umath")),
                None,
            )
            found.append(StubProcess(child.pid, model, argv[8], libpython, numpy_dir, exe))
        return found

    def remember_envs(self) -> None:
        """Note the /tmp/python_env_* dirs the live stubs run from (their VIRTUAL_ENV, the files they mapped):
        after a kill, cleanup removes them although no release-specific log line names them."""
        pattern = re.compile(r"^/tmp/python_env_[A-Za-z0-9]{6}(?=/|$)")
        for child in self.children():
            try:
                places = [child.environ().get("VIRTUAL_ENV", "")]
                places += [m.path for m in child.memory_maps(grouped=True)]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.envs_in_use.update(m.group(0) for m in map(pattern.match, places) if m)

    def stop(self, grace: float = 10.0) -> None:
        """SIGINT and up to `grace` seconds for a clean exit (none when 0), then SIGKILL for the whole session
        (a server hanging on a dead stub ignores SIGINT)."""
        members = [self.process.pid] + [c.pid for c in self.children()]
        if self.alive() and grace > 0:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        _wait_dead(_existing(members[1:]), timeout=5.0)
        self._log.close()

    def cleanup(self) -> list[str]:
        """Remove this run's /dev/shm regions and /tmp/python_env_* dirs; never another server's.

        Triton names the env dirs with a fixed template and logs them only in its stub launch lines, so a dir
        is this server's when its log names it, or when its stubs ran from it (remember_envs). The empty dirs
        a backend makes at start-up are named nowhere: they are removed only when no other tritonserver is
        running (else left: empty and harmless)."""
        removed = []
        for region in SHM_DIR.glob(f"{self.token}_*"):
            with contextlib.suppress(FileNotFoundError):
                region.unlink()
                removed.append(str(region))
        named = set(re.findall(r"/tmp/python_env_[A-Za-z0-9]{6}", self.log_since(0))) | self.envs_in_use
        others = None
        for path in sorted(set(glob.glob(ENV_TEMPLATE)) - self.envs_before):
            if path not in named:
                if others is None:
                    others = _other_servers(self.process.pid)
                if others or not _empty_tree(Path(path)):
                    continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        return removed


def _is_emulator(program: str) -> bool:
    """qemu-aarch64(-static), or Debian's binfmt name for it (/usr/libexec/qemu-binfmt/aarch64-binfmt-P)."""
    name = Path(program).name
    return name.startswith("qemu-") or "-binfmt-" in name


def _empty_tree(path: Path) -> bool:
    try:
        return not any(p.is_file() or p.is_symlink() for p in path.rglob("*"))
    except OSError:
        return False


def _other_servers(own: int) -> bool:
    for proc in psutil.process_iter(["name", "pid"]):
        if proc.info["pid"] != own and (proc.info["name"] or "").startswith("tritonserver"):
            return True
    return False


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Until each is gone or a zombie: a killed stub's parent is gone, and whoever inherits it (PID 1 of a
    container or VM) may take a second to reap it, while a zombie holds no memory, region or file any more."""
    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        procs = [p for p in procs if _running(p)]
        if procs:
            time.sleep(0.01)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _existing(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append(psutil.Process(pid))
    return found


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])
