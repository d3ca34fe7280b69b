"""Put stubs where Triton looks for them, and register stubs built elsewhere (TRITON_FACTS §1, §3, §4)."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stubforge import __version__
from stubforge.core import cache, elf, pythons, releases
from stubforge.errors import StubforgeError
from stubforge.stubs import build as stub_mod
from stubforge.stubs import probe as verify
from stubforge.triton import backends as backend_dirs
from stubforge.triton import envpath
from stubforge.triton.config import ModelConfigInfo, read_config

SIDECAR = ".stubforge.json"  # <stub>.stubforge.json beside an installed stub


class InstallError(StubforgeError):
    """A stub cannot be installed or imported."""


def stub_python(stub: Path) -> str:
    """'3.8' from NEEDED libpython3.8.so.1.0 (or libpython3.7m.so.1.0)."""
    minor = backend_dirs.stub_python(stub)
    if minor:
        return minor
    raise InstallError(f"{stub} links no libpython", hint="pass a triton_python_backend_stub")


def _interpreter_for(stub: Path, python: str | None) -> pythons.Interpreter:
    minor = stub_python(stub)
    spec = python or minor
    interp = pythons.resolve(spec)
    if interp.minor != minor:
        raise InstallError(
            f"{stub} embeds Python {minor}, but --python {spec} is Python {interp.minor}",
            hint=f"pass a Python {minor} interpreter (only its libpython is used, to probe the stub)",
        )
    return interp


def import_stub(
    path: Path,
    triton: str,
    *,
    python: str | None = None,
    pybind11: str | None = None,
    library_path: tuple[str, ...] = (),
    force: bool = False,
) -> stub_mod.BuildResult:
    """Verify a stub built elsewhere (e.g. the nvidia-pytriton wheel's) and store it like a built one."""
    if not path.is_file():
        raise InstallError(f"{path}: no such file", hint="pass the path of a triton_python_backend_stub")
    release = releases.get(triton)
    interp = _interpreter_for(path, python)
    needed = elf.read(path).needed
    gpu = any(n.startswith(("libcudart", "libcuda.")) for n in needed)
    library_path = library_path or _wheel_libraries(path)
    digest = cache.sha256_of(path)
    # pybind11 and boost are not recorded in the binary: "unknown" keeps such stubs apart from built ones, and
    # the digest keeps two different imports apart.
    key = (
        stub_mod.artifact_key(release.branch, interp, gpu, pybind11 or "unknown", "unknown")
        + f"-{digest[:10]}"
    )
    final_dir = cache.stubs_dir() / key
    with cache.locked(key):
        if (final_dir / cache.STUB_NAME).is_file() and not force:
            cached = cache.read_json(final_dir / cache.MANIFEST_NAME)
            return stub_mod.BuildResult(key, final_dir / cache.STUB_NAME, cached, True, 0.0)
        with cache.staging_dir(final_dir) as staging:
            staged = staging / cache.STUB_NAME
            shutil.copyfile(path, staged)
            os.chmod(staged, 0o755)  # wheels drop the exec bit
            try:
                verified = verify.verify(staged, interp, label=str(path), library_path=library_path)
            except StubforgeError as exc:
                if "exit 127" in exc.message and gpu and not library_path:
                    exc.hint = (
                        "it is a GPU build: pass the directory holding its CUDA runtime with --library-path "
                        "(for nvidia-pytriton: site-packages/nvidia_pytriton.libs)"
                    )
                raise
            info = verified["elf"]
            manifest: dict[str, Any] = {
                "schema": stub_mod.MANIFEST_SCHEMA,
                "key": key,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "stubforge": __version__,
                "imported_from": str(path.resolve()),
                "triton": {"release": release.branch, "server_version": release.triton_version},
                "python": {"version": interp.version, "minor": interp.minor, "executable": interp.executable},
                "arch": platform.machine(),
                "gpu": gpu,
                "pybind11": pybind11 or "unknown",
                "boost": {"version": "unknown"},
                "build": {"mode": "imported"},
                "elf": {"needed": info["needed"], "runpath": info["runpath"], "machine": info["machine"]},
                "glibc_floor": info["floors"],
                "library_path": list(library_path),
                "sha256": digest,
            }
            cache.write_json_atomic(staging / cache.MANIFEST_NAME, manifest)
    return stub_mod.BuildResult(key, final_dir / cache.STUB_NAME, manifest, False, 0.0)


def _wheel_libraries(stub: Path) -> tuple[str, ...]:
    """nvidia-pytriton ships its stubs' CUDA runtime in site-packages/nvidia_pytriton.libs."""
    for parent in stub.resolve().parents:
        libs = parent / "nvidia_pytriton.libs"
        if libs.is_dir():
            return (str(libs),)
    return ()


def find_cached_stub(triton: str, minor: str, gpu: bool | None = None) -> Path | None:
    """The newest cached stub of that release and Python: CPU builds first (a GPU build needs a CUDA runtime),
    built ones before imported ones. gpu=True/False restricts to that kind."""
    branch = releases.normalize(triton)
    candidates = [
        a
        for a in cache.stub_artifacts()
        if a.get("triton", {}).get("release") == branch
        and a.get("python", {}).get("minor") == minor
        and (gpu is None or bool(a.get("gpu")) == gpu)
        and a.get("arch") == platform.machine()
    ]
    candidates.sort(
        key=lambda a: (
            not a.get("gpu"),
            a.get("build", {}).get("mode") != "imported",
            a.get("created", ""),
        ),
        reverse=True,
    )
    return Path(candidates[0]["path"]) if candidates else None


def _choose_stub(python: str | None, stub: Path | None, triton: str) -> Path:
    """--stub FILE (checked against --python), or the cached stub of that Python, built when missing."""
    if stub is None:
        if not python:
            raise InstallError("which stub? pass --python 3.X or --stub FILE", hint="e.g. --python 3.8")
        cached = find_cached_stub(triton, pythons.resolve(python).minor)
        return cached or stub_mod.build_one(python, stub_mod.BuildOptions(triton=triton)).stub
    if not stub.is_file():
        raise InstallError(
            f"--stub {stub}: no such file", hint="pass the path of a triton_python_backend_stub"
        )
    if python:
        _interpreter_for(stub, python)
    return stub


@dataclass
class InstallResult:
    path: Path
    changed: bool
    source: Path
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "changed": self.changed,
            "source": str(self.source),
            "warnings": self.warnings,
        }


def install_model_stub(
    model_dir: Path,
    *,
    python: str | None,
    stub: Path | None = None,
    triton: str = "24.10",
    force: bool = False,
) -> InstallResult:
    """Put a stub at <model_dir>/triton_python_backend_stub (beside config.pbtxt), atomically."""
    info = read_config(model_dir)
    stub = _choose_stub(python, stub, triton)
    minor = stub_python(stub)
    target = info.path.parent / cache.STUB_NAME
    digest = cache.sha256_of(stub)
    changed = True
    if target.exists():
        if cache.sha256_of(target) == digest:
            changed = False
        elif not force:
            raise InstallError(
                f"{target} already holds a different stub (Python {_safe_python(target)})",
                hint="pass --force to replace it",
            )
    if changed:
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.STUB_NAME}.", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(stub, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    sidecar = {
        "installed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stubforge": __version__,
        "source": str(stub),
        "sha256": digest,
        "python": minor,
        "manifest": _manifest_of(stub),
    }
    cache.write_json_atomic(target.with_name(target.name + SIDECAR), sidecar)
    warnings = libpython_reachability(target, model_dir, info)
    return InstallResult(target, changed, stub, warnings)


def _safe_python(stub: Path) -> str:
    try:
        return stub_python(stub)
    except StubforgeError:
        return "unknown"


def _manifest_of(stub: Path) -> dict[str, Any] | None:
    try:
        data = cache.read_json(stub.parent / cache.MANIFEST_NAME)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _system_libraries() -> set[str]:
    try:
        out = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def libpython_reachability(stub: Path, model_dir: Path, info: ModelConfigInfo) -> list[str]:
    """Where the server will find the stub's libpython; a warning when nowhere (r24.10 then hangs forever)."""
    soname = next((n for n in elf.read(stub).needed if n.startswith("libpython")), None)
    if soname is None:
        return [f"{stub} links no libpython"]
    for directory in elf.read(stub).runpath:
        if (Path(directory) / soname).exists():
            return []
    env_value = info.parameters.get(envpath.EXECUTION_ENV_PATH)
    if env_value:
        try:
            env = envpath.validate_env_path(model_dir, env_value)
        except StubforgeError as exc:
            return [f"EXECUTION_ENV_PATH is not usable: {exc.message}"]
        if env.is_dir() and (env / "lib" / soname).exists():
            return []
        if env.is_file() and _archive_has(env, f"lib/{soname}"):
            return []
        return [
            f"the env {env} has no lib/{soname}: the stub will not start and Triton r24.10 hangs on it; "
            "pack the env with the stub's Python (stubforge pack-env --stub)"
        ]
    on_path = any(
        (Path(d) / soname).exists() for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d
    )
    if on_path or soname in _system_libraries():
        return []
    return [
        f"nothing provides {soname} to the server (no RUNPATH, no EXECUTION_ENV_PATH, not in the system's "
        "library cache): the stub will not start and Triton r24.10 hangs on it; give the model an env "
        "(stubforge pack-env --model) or put that libpython on the server's LD_LIBRARY_PATH"
    ]


def _archive_has(archive: Path, member: str) -> bool:
    try:
        with tarfile.open(archive) as tar:
            for name in tar.getnames():
                if name.lstrip("./") == member:
                    return True
    except (OSError, tarfile.TarError, EOFError, zlib.error):  # a truncated or damaged archive
        return False
    return False


BACKEND_SIDECAR = backend_dirs.SIDECAR
DEFAULT_ENV_NAME = backend_dirs.DEFAULT_ENV  # a Python-based backend's default env (TRITON_FACTS §3)
UTILS = "triton_python_backend_utils.py"


def dispatcher_source() -> str:
    return (Path(__file__).parent / "resources" / "dispatcher_model.py").read_text()


def install_backend(
    backends: Path,
    *,
    python: str | None,
    stub: Path | None = None,
    env: Path | None = None,
    name: str | None = None,
    triton: str = "24.10",
    copy_library: bool = False,
    force: bool = False,
) -> InstallResult:
    """A python_3_X backend directory that works in Triton (TRITON_FACTS §4), written atomically."""
    stock = backends / "python"
    if not (stock / UTILS).is_file():
        raise InstallError(
            f"{stock / UTILS} does not exist",
            hint="--backends must be Triton's backend directory, holding the stock python/ backend "
            "(stubforge never ships upstream files; it copies them from there)",
        )
    stub = _choose_stub(python, stub, triton)
    minor = stub_python(stub)
    name = name or f"python_{minor.replace('.', '_')}"
    if name == "python" or "/" in name or not name:
        raise InstallError(f"--name {name!r} is not allowed", hint="use a new name such as python_3_8")
    if env is not None and not (env.is_file() and env.name.endswith((".tar.gz", ".tgz"))):
        raise InstallError(
            f"--env {env} must be a .tar.gz archive (Triton reads a backend's default env only from "
            f"{DEFAULT_ENV_NAME})",
            hint="make one with stubforge pack-env --python " + minor + " -o env.tar.gz",
        )
    target = backends / name
    try:
        _write_backend(target, stub, stock, env, copy_library, minor, force)
    except _Unchanged:
        return InstallResult(target, False, stub, _env_warning(target, minor, env))
    return InstallResult(target, True, stub, _env_warning(target, minor, env))


def _write_backend(
    target: Path, stub: Path, stock: Path, env: Path | None, copy_library: bool, minor: str, force: bool
) -> None:
    with cache.staging_dir(target) as staging:
        shutil.copyfile(stub, staging / cache.STUB_NAME)
        os.chmod(staging / cache.STUB_NAME, 0o755)
        shutil.copyfile(stock / UTILS, staging / UTILS)
        (staging / "model.py").write_text(dispatcher_source())
        if env is not None:
            shutil.copyfile(env, staging / DEFAULT_ENV_NAME)
        if copy_library and (stock / "libtriton_python.so").is_file():
            shutil.copyfile(stock / "libtriton_python.so", staging / "libtriton_python.so")
        sidecar = {
            "stubforge": __version__,
            "python": minor,
            "stub": str(stub),
            "env": str(env) if env else None,
            "stub_sha256": cache.sha256_of(stub),
            "manifest": _manifest_of(stub),
        }
        cache.write_json_atomic(staging / BACKEND_SIDECAR, sidecar)
        if target.exists():
            if _same_tree(staging, target):
                raise _Unchanged
            if not force:
                raise InstallError(
                    f"{target} already exists with other content", hint="pass --force to replace it"
                )


class _Unchanged(Exception):
    pass


def _same_tree(a: Path, b: Path) -> bool:
    names_a = sorted(p.name for p in a.iterdir() if p.name != BACKEND_SIDECAR)
    names_b = sorted(p.name for p in b.iterdir() if p.name != BACKEND_SIDECAR)
    if names_a != names_b:
        return False
    return all(cache.sha256_of(a / n) == cache.sha256_of(b / n) for n in names_a if (a / n).is_file())


def _env_warning(target: Path, minor: str, env: Path | None) -> list[str]:
    if env is not None and not _archive_has(env, f"lib/libpython{minor}.so.1.0"):
        return [f"{env} has no lib/libpython{minor}.so.1.0: it is not an env of Python {minor}"]
    return []
