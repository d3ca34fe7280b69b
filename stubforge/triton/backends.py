"""What a Triton backend directory offers to Python models: the stock python/ and python_3_X-style backends.

A python-family backend is a directory holding a stub, libtriton_python.so, or a model.py of a Python-based
backend (docs/triton-behaviour.md, "Backend names and python_3_X directories"). Its Python version is read
from the stub's
NEEDED libpython; a Python-based backend without its own stub uses the stock backend's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stubforge.core import cache
from stubforge.errors import StubforgeError
from stubforge.triton import deployment, stubinfo
from stubforge.triton.envinfo import env_python

STOCK = deployment.STOCK
LIBRARY = "libtriton_python.so"
DEFAULT_ENV = deployment.DEFAULT_ENV
SIDECAR = stubinfo.BACKEND_SIDECAR  # written by `stubforge install backend`
MODEL_SIDECAR = f"{cache.STUB_NAME}{stubinfo.MODEL_SIDECAR_SUFFIX}"  # written by `stubforge install model`


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
    gpu: str | None = None  # the stub's GPU setting: 'cpu', 'gpu cuda 13.0 [...] libcudart.so.13'
    library_gpu: str | None = None  # libtriton_python.so's: 'cpu' or 'gpu libcudart...' (None: no library)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("path", "stub", "default_env"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


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
        info = None
        if stub is None:
            problems.append(f"no {cache.STUB_NAME} here nor in {STOCK}/: its models cannot start")
        else:
            info = stubinfo.read_stub(
                stub, stubinfo.StubSource.BACKEND if stub == own_stub else stubinfo.StubSource.STOCK
            )
            if info.elf_error:
                problems.append(info.elf_error)
        python = info.python if info else None
        env = path / DEFAULT_ENV
        default_env_python = env_python(env) if env.is_file() else None
        if env.is_file() and python and default_env_python != python:
            problems.append(
                f"default env {DEFAULT_ENV} carries Python {default_env_python or 'unknown'}, "
                f"the stub embeds {python}"
            )
        stub_gpu, library_gpu = _gpu_texts(info, path, backends, problems)
        found.append(
            Backend(
                name=path.name,
                path=path,
                kind=kind,
                stub=stub,
                python=python,
                triton=info.release if info else None,
                pybind11=info.pybind11 if info else None,
                default_env=env if env.is_file() else None,
                default_env_python=default_env_python,
                problems=problems,
                gpu=stub_gpu,
                library_gpu=library_gpu,
            )
        )
    return found


def _gpu_texts(
    info: stubinfo.StubInfo | None, path: Path, backends: Path, problems: list[str]
) -> tuple[str | None, str | None]:
    """The stub's and the library's GPU setting; a mismatch between them is a problem of the backend."""
    from stubforge.triton import gpu

    library = path / LIBRARY if (path / LIBRARY).is_file() else backends / STOCK / LIBRARY
    library_build = gpu.of_binary(library) if library.is_file() else None
    stub_build = gpu.of_stub(info) if info is not None else None
    if stub_build is not None and library_build is not None:
        found = gpu.mismatch(stub_build, library_build)
        if found is not None:
            problems.append(found[0])
    stub_text = None
    if info is not None and stub_build is not None:
        facts = info.facts
        stub_text = facts.gpu_text() if facts.gpu is not None else ("gpu" if stub_build.gpu else "cpu")
        if stub_build.cudart and stub_build.cudart not in stub_text:
            stub_text += f" {stub_build.cudart}"
    library_text = None
    if library_build is not None:
        library_text = "gpu" if library_build.gpu else "cpu"
        if library_build.cudart:
            library_text += f" {library_build.cudart}"
    return stub_text, library_text
