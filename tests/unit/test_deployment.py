"""The resolver: which backend, stub, env and Python a model gets, and where its libpython is found.

Stubs are pyenv interpreter binaries: like a stub they link libpythonX.Y.so.1.0 (NEEDED) and carry a RUNPATH,
which is all the resolver reads from them. Envs are trees or archives holding lib/libpythonX.Y.so.1.0.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from stubforge.core import cache, elf
from stubforge.triton import deployment, libpython, stubinfo
from stubforge.triton.deployment import BackendKind, EnvOrigin, Problem, PythonSource
from stubforge.triton.stubinfo import StubSource
from tests.conftest import interpreter


def stub(dest: Path, minor: str, *, runpath: str | None = "/nonexistent") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath(interpreter(minor).executable), dest)
    if runpath is not None:
        elf.shorten_runpath(dest, runpath)
    os.chmod(dest, 0o755)
    return dest


def env_tree(root: Path, minor: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "activate").write_text("# activate\n")
    (root / "lib").mkdir()
    (root / "lib" / f"libpython{minor}.so.1.0").write_bytes(b"")
    return root


def env_archive(path: Path, minor: str) -> Path:
    tree = env_tree(path.parent / f".tree-{path.name}", minor)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=".")
    shutil.rmtree(tree)
    return path


def model(repo: Path, name: str = "m", *, backend: str = "python", env: str | None = None) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text("")
    param = f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n' if env else ""
    (model_dir / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "{backend}"\n' + param)
    return model_dir


def test_per_model_stub_and_its_env(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env")
    stub(m / cache.STUB_NAME, "3.8")
    env_tree(m / "env", "3.8")
    (m / "2").mkdir()
    (m / "2" / "model.py").write_text("")
    d = deployment.resolve(m, triton="24.10")
    assert d.stub is not None and d.stub.source is StubSource.MODEL and d.stub.path == m / cache.STUB_NAME
    assert (d.stub.python, d.stub.libpython, d.stub.manifest) == ("3.8", "libpython3.8.so.1.0", None)
    assert d.env is not None and d.env.origin is EnvOrigin.CONFIG and d.env.kind == "directory"
    assert d.env.written == "$$TRITON_MODEL_DIRECTORY/env" and d.env.path == (m / "env").resolve()
    assert (d.python, d.python_source, d.problems) == ("3.8", PythonSource.STUB, [])
    assert (d.versions, d.version, d.model_file) == (["1", "2"], "2", m / "2" / "model.py")
    assert d.backend_kind is BackendKind.UNSEEN and d.release.branch == "r24.10"
    reach = libpython.reachability(d)
    assert reach is not None and reach.where is libpython.Where.ENV and reach.found


def test_python_3_x_backend_with_its_default_env(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    stub(backends / "python" / cache.STUB_NAME, "3.8")
    own = stub(backends / "python_3_10" / cache.STUB_NAME, "3.10")
    (backends / "python_3_10" / "model.py").write_text("# dispatcher\n")
    env_archive(backends / "python_3_10" / deployment.DEFAULT_ENV, "3.10")
    m = model(tmp_path / "repo", backend="python_3_10")
    d = deployment.resolve(m, backends=backends)
    assert d.backend_kind is BackendKind.PYTHON_BASED and d.runs_backend_model
    assert d.backend_dir == backends / "python_3_10"
    assert d.stub is not None and (d.stub.path, d.stub.source) == (own, StubSource.BACKEND)
    assert d.env is not None and d.env.origin is EnvOrigin.BACKEND_DEFAULT and d.env.kind == "archive"
    assert (d.env.python, d.python, d.problems) == ("3.10", "3.10", [])
    reach = libpython.reachability(d)
    assert reach is not None and reach.where is libpython.Where.ENV


def test_python_based_backend_without_a_stub_starts_the_stock_one(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    stock = stub(backends / "python" / cache.STUB_NAME, "3.8")
    (backends / "python_3_9").mkdir()
    (backends / "python_3_9" / "model.py").write_text("")
    d = deployment.resolve(model(tmp_path / "repo", backend="python_3_9"), backends=backends)
    assert d.stub is not None and (d.stub.path, d.stub.source, d.python) == (stock, StubSource.STOCK, "3.8")
    assert d.env is None and d.problems == []


def test_stock_backend_with_an_env_of_another_python(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    stub(backends / "python" / cache.STUB_NAME, "3.8")
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    env_archive(m / "env.tar.gz", "3.10")
    d = deployment.resolve(m, backends=backends)
    assert d.backend_kind is BackendKind.STOCK and not d.runs_backend_model
    assert d.stub is not None and d.stub.source is StubSource.STOCK
    assert (d.stub.python, d.env and d.env.python, d.python) == ("3.8", "3.10", "3.8")
    assert d.problems == [Problem.PYTHON_MISMATCH]
    reach = libpython.reachability(d)
    assert reach is not None and reach.where is libpython.Where.NOT_IN_ENV and reach.env == m / "env.tar.gz"


def test_no_stub_at_all_takes_the_python_from_the_env(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    env_archive(m / "env.tar.gz", "3.10")
    d = deployment.resolve(m)
    assert d.stub is None and libpython.reachability(d) is None
    assert (d.python, d.python_source, d.problems) == ("3.10", PythonSource.ENV, [Problem.NO_STUB])


def test_missing_and_incomplete_backends_and_a_missing_model_file(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    (backends / "python_3_9").mkdir(parents=True)
    (backends / "python_3_9" / "libtriton_python.so").write_bytes(b"")
    repo = tmp_path / "repo"
    missing = deployment.resolve(model(repo, "a", backend="python_3_7"), backends=backends)
    assert missing.backend_kind is BackendKind.MISSING
    assert missing.problems == [Problem.BACKEND_MISSING, Problem.NO_STUB]
    incomplete = model(repo, "b", backend="python_3_9")
    (incomplete / "1" / "model.py").unlink()
    d = deployment.resolve(incomplete, backends=backends)
    assert d.problems == [Problem.NO_MODEL_FILE, Problem.BACKEND_INCOMPLETE, Problem.NO_STUB]


def test_an_unusable_env_path_is_data_not_an_exception(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/../../env")  # out of the repository
    stub(m / cache.STUB_NAME, "3.8")
    d = deployment.resolve(m)
    assert d.env is not None and d.env.path is None and d.env.error is not None
    assert "climbs out of" in d.env.error.message
    assert Problem.ENV_PATH_INVALID in d.problems
    reach = libpython.reachability(d)
    assert reach is not None and reach.where is libpython.Where.ENV_UNUSABLE and not reach.found


def test_a_truncated_env_archive(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    data = env_archive(tmp_path / "full.tar.gz", "3.8").read_bytes()
    (m / "env.tar.gz").write_bytes(data[: len(data) // 2])
    d = deployment.resolve(m)
    assert d.env is not None and d.env.unreadable and d.env.contents is None and d.env.python is None
    assert Problem.ENV_UNREADABLE in d.problems


def test_manifest_less_stub_gets_its_python_from_the_elf(tmp_path: Path) -> None:
    bare = stub(tmp_path / "elsewhere" / cache.STUB_NAME, "3.10", runpath=None)
    info = stubinfo.read_stub(bare)
    assert (info.python, info.source, info.manifest, info.release, info.pybind11) == (
        "3.10",
        StubSource.GIVEN,
        None,
        None,
        None,
    )
    assert info.machine == "EM_X86_64" and info.runpath and info.elf_error is None
    assert stubinfo.python_of(bare) == "3.10"


def test_one_manifest_reader_for_sidecars_and_cache_artifacts(tmp_path: Path) -> None:
    manifest = {"triton": {"release": "r24.11"}, "pybind11": "2.12.0", "arch": "x86_64", "gpu": False}
    artifact = stub(tmp_path / "cache" / "key" / cache.STUB_NAME, "3.8")
    cache.write_json_atomic(artifact.parent / cache.MANIFEST_NAME, manifest)
    per_model = stub(tmp_path / "m" / cache.STUB_NAME, "3.8")
    (tmp_path / "m" / (cache.STUB_NAME + stubinfo.MODEL_SIDECAR_SUFFIX)).write_text(
        json.dumps({"manifest": dict(manifest, pybind11="unknown")})
    )
    backend = stub(tmp_path / "python_3_8" / cache.STUB_NAME, "3.8")
    (tmp_path / "python_3_8" / stubinfo.BACKEND_SIDECAR).write_text(json.dumps({"manifest": None}))
    assert stubinfo.read_manifest(artifact) == manifest
    facts = stubinfo.read_stub(artifact).facts
    assert (facts.release, facts.pybind11, facts.arch, facts.gpu) == ("r24.11", "2.12.0", "x86_64", False)
    assert stubinfo.read_stub(per_model).release == "r24.11"
    assert stubinfo.read_stub(per_model).pybind11 is None  # imported stubs record "unknown"
    assert stubinfo.read_manifest(backend) is None  # installed from a stub stubforge knew nothing about


def test_not_a_stub(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    (m / cache.STUB_NAME).write_text("#!/bin/sh\n")
    d = deployment.resolve(m)
    assert d.stub is not None and d.stub.elf_error and "not a readable ELF" in d.stub.elf_error
    assert d.problems == [Problem.STUB_UNREADABLE] and libpython.reachability(d) is None
    no_libpython = model(tmp_path / "repo", "n")
    shutil.copyfile(os.path.realpath(shutil.which("true") or "/bin/true"), no_libpython / cache.STUB_NAME)
    d = deployment.resolve(no_libpython)
    assert d.problems == [Problem.STUB_WITHOUT_LIBPYTHON]
    reach = libpython.reachability(d)
    assert reach is not None and reach.where is libpython.Where.NOT_LINKED


def test_libpython_from_runpath_ld_library_path_or_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    py38 = interpreter("3.8")
    assert py38.libpython
    m = model(tmp_path / "repo")
    stub(m / cache.STUB_NAME, "3.8", runpath=None)  # pyenv's RUNPATH names its own lib/
    reach = libpython.reachability(deployment.resolve(m))
    assert reach is not None and reach.where is libpython.Where.RUNPATH
    assert reach.directory == Path(py38.libpython).parent
    stub(m / cache.STUB_NAME, "3.8")  # as if built on another machine
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    reach = libpython.reachability(deployment.resolve(m))
    assert (
        reach is not None and reach.where is libpython.Where.NOWHERE and reach.soname == "libpython3.8.so.1.0"
    )
    monkeypatch.setenv("LD_LIBRARY_PATH", os.path.dirname(py38.libpython))
    reach = libpython.reachability(deployment.resolve(m))
    assert reach is not None and reach.where is libpython.Where.LD_LIBRARY_PATH


def test_one_listing_of_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name in ("b", "a"):
        model(repo, name)
    (repo / "notes").mkdir()
    (repo / "config.pbtxt").write_text("")  # a file at the top is not a model
    assert deployment.list_models(repo) == [repo / "a", repo / "b"]


def test_python_family(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ensemble = repo / "e"
    ensemble.mkdir(parents=True)
    (ensemble / "config.pbtxt").write_text('name: "e"\nplatform: "ensemble"\n')
    assert not deployment.resolve(ensemble).python_family
    assert not deployment.resolve(model(repo, "o", backend="onnxruntime")).python_family
    assert deployment.resolve(model(repo, "p", backend="python_3_8")).python_family
