"""What a Triton backend directory offers to Python models: the stock python/ and python_3_X-style backends.

A python-family backend is a directory holding a stub, libtriton_python.so, or a model.py of a Python-based
backend (TRITON_FACTS §4). Its Python version is read from the stub's NEEDED libpython; a Python-based backend
without its own stub uses the stock backend's.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stubforge.core import cache, elf
from stubforge.errors import StubforgeError

STOCK = "python"
LIBRARY = "libtriton_python.so"
DEFAULT_ENV = "pb_exec_env_model.py.tar.gz"
SIDECAR = "stubforge-backend.json"  # written by `stubforge install backend`
MODEL_SIDECAR = f"{cache.STUB_NAME}.stubforge.json"  # written by `stubforge install model`


class BackendsError(StubforgeError):
    """A backend directory that cannot be read."""


@dataclass
class Backend:
    name: str
    path: Path
    kind: str  # "stock" (python/) or "python-based" (model.py dispatching to a stub)
    stub: Path | None  # the stub its models start (its own, or python/'s)
    python: str | None  # X.Y, from the stub's NEEDED libpython
    triton: str | None  # release branch from the stubforge manifest, when one exists
    pybind11: str | None
    default_env: Path | None
    default_env_python: str | None
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("path", "stub", "default_env"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def stub_python(stub: Path) -> str | None:
    """'3.8' from NEEDED libpython3.8.so.1.0 (or libpython3.7m.so.1.0); None when none is linked."""
    for needed in elf.read(stub).needed:
        if needed.startswith("libpython"):
            version = needed[len("libpython") :].split(".so")[0].rstrip("m")
            return version or None
    return None


def archive_python(archive: Path) -> str | None:
    """The Python an env archive carries, from its lib/libpythonX.Y.so.1.0 member."""
    try:
        with tarfile.open(archive) as tar:
            for name in tar.getnames():
                parts = name.lstrip("./").split("/")
                if len(parts) == 2 and parts[0] == "lib" and parts[1].startswith("libpython"):
                    version = parts[1][len("libpython") :].split(".so")[0].rstrip("m")
                    if version[:1].isdigit():
                        return version
    except (OSError, tarfile.TarError, EOFError, zlib.error):
        return None
    return None


def env_python(env: Path) -> str | None:
    """The Python an env (directory or archive) carries, from its lib/libpythonX.Y.so.1.0."""
    if env.is_dir():
        for lib in sorted((env / "lib").glob("libpython*.so*")):
            version = lib.name[len("libpython") :].split(".so")[0].rstrip("m")
            if version[:1].isdigit():
                return version
        return None
    return archive_python(env)


def stub_manifest(stub: Path) -> dict[str, Any] | None:
    """The build/import manifest recorded when stubforge installed this stub, if it did."""
    for sidecar in (stub.parent / SIDECAR, stub.with_name(stub.name + ".stubforge.json")):
        try:
            data = cache.read_json(sidecar)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            manifest = data.get("manifest")
            return manifest if isinstance(manifest, dict) else None
    try:
        data = cache.read_json(stub.parent / cache.MANIFEST_NAME)  # a stub inside the artifact cache
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_release(manifest: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(release branch, pybind11 version) from a manifest; pybind11 'unknown' (imported stubs) maps to None."""
    if not manifest:
        return None, None
    triton = manifest.get("triton")
    branch = triton.get("release") if isinstance(triton, dict) else triton
    pybind11 = manifest.get("pybind11")
    if pybind11 in ("unknown", ""):
        pybind11 = None
    return (str(branch) if branch else None), (str(pybind11) if pybind11 else None)


def _is_python_family(path: Path) -> bool:
    return any((path / name).is_file() for name in (cache.STUB_NAME, LIBRARY, "model.py"))


def list_backends(backends: Path) -> list[Backend]:
    if not backends.is_dir():
        raise BackendsError(
            f"{backends}: not a directory",
            hint="pass Triton's backend directory, e.g. /opt/tritonserver/backends",
        )
    stock_stub = backends / STOCK / cache.STUB_NAME
    found: list[Backend] = []
    for path in sorted(p for p in backends.iterdir() if p.is_dir()):
        if path.name != STOCK and not _is_python_family(path):
            continue
        own_stub = path / cache.STUB_NAME
        problems: list[str] = []
        if path.name == STOCK:
            kind = "stock"
        elif (path / "model.py").is_file():
            kind = "python-based"
        else:
            kind = "stock"
            problems.append(
                f"{path.name}/ has {LIBRARY} but no model.py: Triton loads it as a C++ backend named "
                f"{path.name}, not as a Python-based backend"
            )
        stub = own_stub if own_stub.is_file() else (stock_stub if stock_stub.is_file() else None)
        python = None
        if stub is None:
            problems.append(f"no {cache.STUB_NAME} here nor in {STOCK}/: its models cannot start")
        else:
            try:
                python = stub_python(stub)
            except StubforgeError as exc:
                problems.append(exc.message)
        triton, pybind11 = manifest_release(stub_manifest(stub)) if stub else (None, None)
        env = path / DEFAULT_ENV
        env_python = archive_python(env) if env.is_file() else None
        if env.is_file() and python and env_python != python:
            problems.append(
                f"default env {DEFAULT_ENV} carries Python {env_python or 'unknown'}, the stub embeds {python}"
            )
        found.append(
            Backend(
                name=path.name,
                path=path,
                kind=kind,
                stub=stub,
                python=python,
                triton=triton,
                pybind11=pybind11,
                default_env=env if env.is_file() else None,
                default_env_python=env_python,
                problems=problems,
            )
        )
    return found
