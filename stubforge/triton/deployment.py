"""THE resolver: which backend, stub, env and Python Triton uses for a model, on which release.

    d = deployment.resolve(Path("models/add_sub"), backends=Path("/opt/tritonserver/backends"))
    d.stub.python, d.env.python, d.python, d.problems

check, verify, install, pack-env and the runner all ask here, and each words its own messages from the data.
The rules (docs/triton-behaviour.md, "EXECUTION_ENV_PATH and extraction" and "Backend names and python_3_X
directories"):

- the stub: the model's own `<model_dir>/triton_python_backend_stub`, else its backend directory's, else the
  stock `python/` backend's (a Python-based backend without a stub of its own starts python/'s);
- the env: the model's EXECUTION_ENV_PATH, else its backend directory's `pb_exec_env_model.py.tar.gz`;
- the Python: the one the stub embeds; without a stub, the one the env carries.

Also the one listing of a repository's models (`list_models`).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import cache, releases
from stubforge.errors import StubforgeError
from stubforge.triton import envpath
from stubforge.triton.config import ModelConfigInfo, read_config
from stubforge.triton.envinfo import READ_ERRORS, EnvContents
from stubforge.triton.stubinfo import StubInfo, StubSource, read_stub

STOCK = "python"  # the stock backend directory, <backends>/python
DEFAULT_ENV = "pb_exec_env_model.py.tar.gz"  # a backend directory's default env
CONFIG_NAME = "config.pbtxt"


def list_models(repository: Path) -> list[Path]:
    """The model directories of a repository (subdirectories holding a config.pbtxt), sorted by name."""
    return sorted(p for p in repository.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())


def versions_of(model_dir: Path) -> list[str]:
    """The numeric version directories, in Triton's order (the last one is what Triton loads by default)."""
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


class BackendKind(enum.Enum):
    STOCK = "stock"  # backend "python": <backends>/python
    PYTHON_BASED = "python-based"  # <backends>/<name>/model.py: served by libtriton_python.so
    NATIVE = "native"  # <backends>/<name>/libtriton_<name>.so: a C++ backend
    INCOMPLETE = "incomplete"  # a directory with neither (a renamed libtriton_python.so alone)
    MISSING = "missing"  # no such directory under --backends
    UNSEEN = "unseen"  # no backend directory given: only the model's own files are known


class EnvOrigin(enum.Enum):
    CONFIG = "EXECUTION_ENV_PATH"
    BACKEND_DEFAULT = "backend default env"


@dataclass
class EnvInfo:
    """The env a model gets. Its contents are read on first use (an archive is decompressed to be listed)."""

    origin: EnvOrigin
    written: str  # the EXECUTION_ENV_PATH value as written, or the default env's path
    path: Path | None  # where it really is; None when the value is not usable
    error: StubforgeError | None = None  # why the value is not usable (triton/envpath.py's rules)

    @property
    def kind(self) -> str | None:
        if self.path is None:
            return None
        return "directory" if self.path.is_dir() else "archive"

    @functools.cached_property
    def _read(self) -> tuple[EnvContents | None, str | None]:
        if self.path is None:
            return None, None
        try:
            return EnvContents(self.path), None
        except READ_ERRORS as exc:
            return None, str(exc)

    @property
    def contents(self) -> EnvContents | None:
        """None when there is no usable path or the archive cannot be listed (see read_error)."""
        return self._read[0]

    @property
    def unreadable(self) -> bool:
        return self.path is not None and self._read[0] is None

    @property
    def read_error(self) -> str | None:
        return self._read[1]

    @functools.cached_property
    def python(self) -> str | None:
        contents = self.contents
        return contents.python() if contents is not None else None


class PythonSource(enum.Enum):
    STUB = "stub"
    ENV = "env"


class Problem(enum.Enum):
    """What stops the model from starting, as data; callers word it."""

    NO_VERSION = "no version directory"
    NO_MODEL_FILE = "no model file"
    BACKEND_MISSING = "backend missing"
    BACKEND_INCOMPLETE = "backend has no model.py"
    NO_STUB = "no stub"
    STUB_UNREADABLE = "stub is not ELF"
    STUB_WITHOUT_LIBPYTHON = "stub links no libpython"
    ENV_PATH_INVALID = "EXECUTION_ENV_PATH not usable"
    ENV_UNREADABLE = "env archive unreadable"
    ENV_WITHOUT_PYTHON = "env carries no libpython"
    PYTHON_MISMATCH = "stub and env Pythons differ"


@dataclass
class Deployment:
    """What Triton will use for one model."""

    model_dir: Path
    name: str  # as config.pbtxt names it, else the directory's name
    config: ModelConfigInfo
    versions: list[str]
    backend: str
    backend_dir: Path | None  # <backends>/<backend>, when a backend directory was given
    backend_kind: BackendKind
    stub: StubInfo | None
    env: EnvInfo | None
    release: releases.Release

    @property
    def python_family(self) -> bool:
        """Served by the Python backend: not an ensemble or another platform, and backend python or python_*."""
        if self.config.platform and not self.config.backend:
            return False
        return self.backend == STOCK or self.backend.startswith("python")

    @property
    def version(self) -> str | None:
        """The version Triton loads by default: the highest."""
        return self.versions[-1] if self.versions else None

    @property
    def model_file(self) -> Path | None:
        """<model_dir>/<version>/<default_model_filename or model.py>; None without a version."""
        if self.version is None:
            return None
        return self.model_dir / self.version / (self.config.default_model_filename or "model.py")

    @property
    def runs_backend_model(self) -> bool:
        """A Python-based backend: the stub loads <backend_dir>/model.py instead of the model's file."""
        return self.backend != STOCK and self.backend_kind is BackendKind.PYTHON_BASED

    @property
    def python(self) -> str | None:
        """The X.Y that will run the model: the stub's; without a usable stub, the env's."""
        source = self.python_source
        if source is PythonSource.STUB:
            return self.stub.python if self.stub else None
        if source is PythonSource.ENV:
            return self.env.python if self.env else None
        return None

    @property
    def python_source(self) -> PythonSource | None:
        if self.stub is not None and self.stub.python:
            return PythonSource.STUB
        if self.env is not None and self.env.python:
            return PythonSource.ENV
        return None

    @property
    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        if self.version is None:
            found.append(Problem.NO_VERSION)
        elif self.model_file is not None and not self.model_file.is_file():
            found.append(Problem.NO_MODEL_FILE)
        if self.backend_kind is BackendKind.MISSING:
            found.append(Problem.BACKEND_MISSING)
        elif self.backend_kind is BackendKind.INCOMPLETE:
            found.append(Problem.BACKEND_INCOMPLETE)
        if self.stub is None:
            found.append(Problem.NO_STUB)
        elif self.stub.elf_error:
            found.append(Problem.STUB_UNREADABLE)
        elif self.stub.python is None:
            found.append(Problem.STUB_WITHOUT_LIBPYTHON)
        if self.env is not None:
            if self.env.error is not None:
                found.append(Problem.ENV_PATH_INVALID)
            elif self.env.unreadable:
                found.append(Problem.ENV_UNREADABLE)
            elif self.env.python is None:
                found.append(Problem.ENV_WITHOUT_PYTHON)
            elif self.stub is not None and self.stub.python and self.stub.python != self.env.python:
                found.append(Problem.PYTHON_MISMATCH)
        return found


def resolve(
    model_dir: Path,
    *,
    triton: releases.Release | str = releases.DEFAULT_TRITON,
    backends: Path | None = None,
    config: ModelConfigInfo | None = None,
) -> Deployment:
    """Resolve one model. Raises the config's StubforgeError when config.pbtxt cannot be read; every other
    problem is data (Deployment.problems). `config`: an already-read config.pbtxt of this model."""
    info = config or read_config(model_dir)
    model_dir = info.path.parent
    backend = info.backend or STOCK
    backend_dir = backends / backend if backends is not None else None
    return Deployment(
        model_dir=model_dir,
        name=info.name or model_dir.name,
        config=info,
        versions=versions_of(model_dir),
        backend=backend,
        backend_dir=backend_dir,
        backend_kind=_backend_kind(backend, backend_dir),
        stub=_find_stub(model_dir, backend, backends),
        env=_find_env(model_dir, info, backend_dir),
        release=releases.get(triton),
    )


def _backend_kind(backend: str, backend_dir: Path | None) -> BackendKind:
    if backend_dir is None:
        return BackendKind.UNSEEN
    if backend == STOCK:
        return BackendKind.STOCK
    if not backend_dir.is_dir():
        return BackendKind.MISSING
    if (backend_dir / "model.py").is_file():
        return BackendKind.PYTHON_BASED
    if (backend_dir / f"libtriton_{backend}.so").is_file():
        return BackendKind.NATIVE
    return BackendKind.INCOMPLETE


def _find_stub(model_dir: Path, backend: str, backends: Path | None) -> StubInfo | None:
    candidates = [(model_dir / cache.STUB_NAME, StubSource.MODEL)]
    if backends is not None:
        own = StubSource.STOCK if backend == STOCK else StubSource.BACKEND
        candidates += [
            (backends / backend / cache.STUB_NAME, own),
            (backends / STOCK / cache.STUB_NAME, StubSource.STOCK),
        ]
    for path, source in candidates:
        if path.is_file():
            return read_stub(path, source)
    return None


def _find_env(model_dir: Path, info: ModelConfigInfo, backend_dir: Path | None) -> EnvInfo | None:
    value = info.parameters.get(envpath.EXECUTION_ENV_PATH)
    if value:
        try:
            return EnvInfo(EnvOrigin.CONFIG, value, envpath.validate_env_path(model_dir, value))
        except StubforgeError as exc:
            return EnvInfo(EnvOrigin.CONFIG, value, None, exc)
    if backend_dir is not None and (backend_dir / DEFAULT_ENV).is_file():
        default = backend_dir / DEFAULT_ENV
        return EnvInfo(EnvOrigin.BACKEND_DEFAULT, str(default), default)
    return None
