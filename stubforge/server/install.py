"""Put stubs where Triton looks for them, and register stubs built elsewhere.

Where Triton looks: docs/triton-behaviour.md, "The stub process and its probe", "EXECUTION_ENV_PATH and extraction" and
"Backend names and python_3_X directories".
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from stubforge import __version__
from stubforge.core import cache, elf, fsutil, pythons, releases
from stubforge.core.targets import Target, as_target
from stubforge.errors import StubforgeError
from stubforge.server.check.arch import build_command
from stubforge.stubs import build as stub_mod
from stubforge.stubs import cross
from stubforge.stubs import probe as verify
from stubforge.triton import arch as arch_mod
from stubforge.triton import backends as backend_dirs
from stubforge.triton import deployment, gpu, libpython, stubinfo
from stubforge.triton.config import read_config
from stubforge.triton.envinfo import READ_ERRORS, EnvContents

SIDECAR = stubinfo.MODEL_SIDECAR_SUFFIX  # <stub>.stubforge.json beside an installed stub


class InstallError(StubforgeError):
    """A stub cannot be installed or imported."""


def _stub_python(stub: Path) -> str:
    """The X.Y the stub embeds; a stub that links no libpython cannot be installed."""
    minor = stubinfo.python_of(stub)
    if minor:
        return minor
    raise InstallError(f"{stub} links no libpython", hint="pass a triton_python_backend_stub")


def _interpreter_for(stub: Path, python: str | None) -> pythons.Interpreter:
    minor = _stub_python(stub)
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
    triton: releases.Release | str,
    *,
    python: str | None = None,
    pybind11: str | None = None,
    library_path: tuple[str, ...] = (),
    force: bool = False,
    target: Target | None = None,
) -> stub_mod.BuildResult:
    """Verify a stub built elsewhere (e.g. the nvidia-pytriton wheel's) and store it like a built one.
    `target`: the machine it is for (None: this one), recorded in its manifest."""
    if not path.is_file():
        raise InstallError(f"{path}: no such file", hint="pass the path of a triton_python_backend_stub")
    release = releases.as_release(triton)
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
                # 127: the loader found no CUDA runtime for a GPU build.
                if (
                    isinstance(exc, verify.ProbeFailed)
                    and exc.exit_status == 127
                    and gpu
                    and not library_path
                ):
                    exc.hint = (
                        "it is a GPU build: pass the directory holding its CUDA runtime with --library-path "
                        "(for nvidia-pytriton: site-packages/nvidia_pytriton.libs)"
                    )
                raise
            info = cast("dict[str, Any]", verified["elf"])
            manifest: dict[str, Any] = {
                "schema": stub_mod.MANIFEST_SCHEMA,
                "key": key,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "stubforge": __version__,
                "imported_from": str(path.resolve()),
                "triton": {"release": release.branch, "server_version": release.triton_version},
                "python": {"version": interp.version, "minor": interp.minor, "executable": interp.executable},
                "arch": platform.machine(),
                "target": as_target(target).to_dict(),
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


def find_cached_stub(
    triton: releases.Release | str, minor: str, gpu: bool | None = None, arch: str | None = None
) -> Path | None:
    """The newest cached stub of that release and Python for `arch` (None: this machine's): CPU builds first (a
    GPU build needs a CUDA runtime), built ones before imported ones. gpu=True/False restricts to that kind."""
    branch = releases.normalize(triton)
    arch = arch or as_target(None).arch
    candidates = [
        a
        for a in cache.stub_artifacts()
        if a.get("triton", {}).get("release") == branch
        and a.get("python", {}).get("minor") == minor
        and (gpu is None or bool(a.get("gpu")) == gpu)
        and a.get("arch") == arch
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


def _choose_stub(
    python: str | None, stub: Path | None, triton: releases.Release | str, target: Target | None = None
) -> Path:
    """--stub FILE (checked against --python), or the cached stub of that Python, built when missing."""
    chosen = as_target(target)
    if stub is None:
        if not python:
            raise InstallError("which stub? pass --python 3.X or --stub FILE", hint="e.g. --python 3.8")
        minor = cross.minor_of(python) if cross.needed(chosen) else pythons.resolve(python).minor
        cached = find_cached_stub(triton, minor, arch=chosen.arch)
        return cached or stub_mod.build_one(python, stub_mod.BuildOptions(triton=triton, target=target)).stub
    if not stub.is_file():
        raise InstallError(
            f"--stub {stub}: no such file", hint="pass the path of a triton_python_backend_stub"
        )
    if python and not cross.needed(chosen):
        _interpreter_for(stub, python)
    return stub


def refuse_other_arch(piece: str, path: Path, its_arch: str | None, server: tuple[str, str]) -> None:
    """A stub, env or backend library of another architecture than the server's is never installed."""
    server_arch, source = server
    if its_arch is not None and its_arch != server_arch:
        raise InstallError(
            f"{piece} {path} is for {its_arch}, but the server is {server_arch} ({source})",
            hint=f"use a {piece} built for {server_arch} ({build_command(server_arch)} for a stub, pack-env "
            f"--arch {server_arch} for an env), or pass --arch if the server really is another machine",
        )


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
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    force: bool = False,
    target: Target | None = None,
) -> InstallResult:
    """Put a stub at <model_dir>/triton_python_backend_stub (beside config.pbtxt), atomically. `target`: the
    machine the server runs on (None: this one), recorded in the sidecar."""
    info = read_config(model_dir)
    stub = _choose_stub(python, stub, triton, target)
    refuse_other_arch("stub", stub, arch_mod.file_arch(stub), arch_mod.deployment_arch(target, None))
    minor = _stub_python(stub)
    dest = info.path.parent / cache.STUB_NAME
    digest = cache.sha256_of(stub)
    # One install into a model at a time from this cache, so a stub and its sidecar always belong together;
    # the claim below still holds when another cache (another user) installs into the same model.
    with cache.locked("install-" + hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]):
        changed = _claim_model_stub(stub, dest, digest, force=force)
        sidecar = {
            "installed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "stubforge": __version__,
            "source": str(stub),
            "sha256": digest,
            "python": minor,
            "target": as_target(target).to_dict(),
            "manifest": stubinfo.read_manifest(stub),
        }
        cache.write_json_atomic(dest.with_name(dest.name + SIDECAR), sidecar)
    installed = deployment.resolve(info.path.parent, triton=releases.as_release(triton).branch, config=info)
    reach = libpython.reachability(installed)
    warnings = _libpython_warnings(reach, installed, releases.as_release(triton)) if reach is not None else []
    cudart = gpu.cudart_reach(installed)
    if cudart is not None and not cudart.found:
        message, fix = gpu.unreachable_message(
            cudart, dest, None, releases.as_release(triton).dead_stub_outcome(at_load=True)
        )
        warnings.append(f"{message}: {fix}")
    return InstallResult(dest, changed, stub, warnings)


def _claim_model_stub(stub: Path, dest: Path, digest: str, *, force: bool) -> bool:
    """Copy `stub` to `dest`; False when `dest` already is that stub. Without `force` the name is claimed
    atomically (fsutil.publish): a stub that appears meanwhile (another install) is never replaced."""
    if dest.exists():
        if cache.sha256_of(dest) == digest:
            return False
        if not force:
            raise _different_stub(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{cache.STUB_NAME}.", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(stub, tmp)
        os.chmod(tmp, 0o755)
        try:
            fsutil.publish(tmp, dest, replace=force)
        except FileExistsError:
            if cache.sha256_of(dest) == digest:  # another install of the same stub won: nothing to do
                return False
            raise InstallError(
                f"{dest} already exists: another install put a different stub there while this one ran "
                f"(Python {_safe_python(dest)})",
                hint="nothing was overwritten; pass --force to replace it",
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True


def _different_stub(dest: Path) -> InstallError:
    return InstallError(
        f"{dest} already holds a different stub (Python {_safe_python(dest)})",
        hint="pass --force to replace it",
    )


def _safe_python(stub: Path) -> str:
    return stubinfo.read_stub(stub).python or "unknown"


def _libpython_warnings(
    reach: libpython.Reachability, installed: deployment.Deployment, release: releases.Release
) -> list[str]:
    """What the user must know after installing: the server will not find the stub's libpython (the stub
    cannot start, and releases with `hangs_on_dead_stub` then hang forever)."""
    where, soname = reach.where, reach.soname
    outcome = release.dead_stub_outcome()
    if where is libpython.Where.NOT_LINKED:
        return [f"{reach.stub} links no libpython"]
    if where is libpython.Where.ENV_UNUSABLE:
        error = installed.env.error if installed.env else None
        return [f"EXECUTION_ENV_PATH is not usable: {error.message if error else 'see stubforge check'}"]
    if where is libpython.Where.NOT_IN_ENV:
        return [
            f"the env {reach.env} has no lib/{soname}: the stub will not start and {outcome}; "
            "pack the env with the stub's Python (stubforge pack-env --stub)"
        ]
    if where is libpython.Where.NOWHERE:
        return [
            f"nothing provides {soname} to the server (no RUNPATH, no EXECUTION_ENV_PATH, not in the system's "
            f"library cache): the stub will not start and {outcome}; give the model an env "
            "(stubforge pack-env --model) or put that libpython on the server's LD_LIBRARY_PATH"
        ]
    return []


BACKEND_SIDECAR = backend_dirs.SIDECAR
DEFAULT_ENV_NAME = backend_dirs.DEFAULT_ENV  # a Python-based backend's default env
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
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    copy_library: bool = False,
    force: bool = False,
    target: Target | None = None,
) -> InstallResult:
    """A python_3_X backend directory that works in Triton, written atomically. `target`: the machine the
    server runs on (None: this one), recorded in the sidecar."""
    stock = backends / "python"
    if not (stock / UTILS).is_file():
        raise InstallError(
            f"{stock / UTILS} does not exist",
            hint="--backends must be Triton's backend directory, holding the stock python/ backend "
            "(stubforge never ships upstream files; it copies them from there)",
        )
    server = arch_mod.deployment_arch(target, backends)
    stub = _choose_stub(python, stub, triton, target or Target(server[0]))
    refuse_other_arch("stub", stub, arch_mod.file_arch(stub), server)
    if env is not None and env.is_file():
        refuse_other_arch("env", env, arch_mod.env_arch_of(env), server)
    minor = _stub_python(stub)
    name = name or f"python_{minor.replace('.', '_')}"
    if name == "python" or "/" in name or not name:
        raise InstallError(f"--name {name!r} is not allowed", hint="use a new name such as python_3_8")
    if env is not None and not (env.is_file() and env.name.endswith((".tar.gz", ".tgz"))):
        raise InstallError(
            f"--env {env} must be a .tar.gz archive (Triton reads a backend's default env only from "
            f"{DEFAULT_ENV_NAME})",
            hint="make one with stubforge pack-env --python " + minor + " -o env.tar.gz",
        )
    dest = backends / name
    try:
        _write_backend(dest, stub, stock, env, copy_library, minor, force, target or Target(server[0]))
    except _Unchanged:
        return InstallResult(dest, False, stub, _backend_warnings(dest, minor, env))
    return InstallResult(dest, True, stub, _backend_warnings(dest, minor, env))


def _backend_warnings(dest: Path, minor: str, env: Path | None) -> list[str]:
    """The env warnings, then the stub's GPU setting against the library the backend runs with."""
    library = dest / "libtriton_python.so"
    if not library.is_file():
        library = dest.parent / "python" / "libtriton_python.so"
    return _env_warning(dest, minor, env) + gpu.install_warnings(dest / cache.STUB_NAME, library)


def _write_backend(
    dest: Path,
    stub: Path,
    stock: Path,
    env: Path | None,
    copy_library: bool,
    minor: str,
    force: bool,
    target: Target,
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; the server may run as another user
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
            "target": target.to_dict(),
            "manifest": stubinfo.read_manifest(stub),
        }
        cache.write_json_atomic(staging / BACKEND_SIDECAR, sidecar)
        if dest.exists():
            if _same_tree(staging, dest):
                raise _Unchanged
            if not force:
                raise InstallError(
                    f"{dest} already exists with other content", hint="pass --force to replace it"
                )
        try:
            # Without --force the name is claimed atomically: a backend another install created meanwhile
            # is never replaced.
            fsutil.publish(staging, dest, replace=force)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if _same_tree(staging, dest):
                raise _Unchanged from None
            raise InstallError(
                f"{dest} already exists: another install created it while this one ran",
                hint="nothing was overwritten; pass --force to replace it",
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Unchanged(Exception):
    pass


def _same_tree(a: Path, b: Path) -> bool:
    names_a = sorted(p.name for p in a.iterdir() if p.name != BACKEND_SIDECAR)
    names_b = sorted(p.name for p in b.iterdir() if p.name != BACKEND_SIDECAR)
    if names_a != names_b:
        return False
    return all(cache.sha256_of(a / n) == cache.sha256_of(b / n) for n in names_a if (a / n).is_file())


def _env_warning(dest: Path, minor: str, env: Path | None) -> list[str]:
    if env is not None and not _archive_has(env, f"lib/libpython{minor}.so.1.0"):
        return [f"{env} has no lib/libpython{minor}.so.1.0: it is not an env of Python {minor}"]
    return []


def _archive_has(archive: Path, member: str) -> bool:
    try:
        return EnvContents(archive).has(member)
    except READ_ERRORS:  # a truncated or damaged archive
        return False
