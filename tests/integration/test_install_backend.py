"""install backend: a python_3_X directory, and the dispatcher model.py driven the way the stub drives it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from stubforge.core import cache, pythons
from stubforge.errors import StubforgeError
from stubforge.server import install
from stubforge.stubs import build as stub_mod

pytestmark = pytest.mark.slow

# Stands in for the stock backend's utils file, which stubforge copies and never ships.
UTILS_STAND_IN = "# triton_python_backend_utils stand-in for tests\n"


@pytest.fixture
def backends(tmp_path: Path) -> Path:
    root = tmp_path / "backends"
    (root / "python").mkdir(parents=True)
    (root / "python" / install.UTILS).write_text(UTILS_STAND_IN)
    (root / "python" / "libtriton_python.so").write_bytes(b"\x7fELF stand-in")
    return root


@pytest.fixture
def built38(imported: Path, py38: pythons.Interpreter) -> Path:
    return stub_mod.build_one(py38, stub_mod.BuildOptions()).stub


def test_backend_directory_layout_and_idempotence(backends: Path, built38: Path, tmp_path: Path) -> None:
    result = install.install_backend(backends, python="3.8", stub=None)
    target = backends / "python_3_8"
    assert result.path == target and result.changed
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [cache.STUB_NAME, install.UTILS, "model.py", install.BACKEND_SIDECAR]
    )
    assert (target / cache.STUB_NAME).read_bytes() == built38.read_bytes()
    assert (target / install.UTILS).read_text() == UTILS_STAND_IN
    assert "stubforge dispatcher" in (target / "model.py").read_text()
    assert not install.install_backend(backends, python="3.8").changed
    # No staging leftovers in Triton's backend directory.
    assert sorted(p.name for p in backends.iterdir()) == ["python", "python_3_8"]


def test_default_env_and_library(backends: Path, built38: Path, tmp_path: Path) -> None:
    env = tmp_path / "env.tar.gz"
    env.write_bytes(b"")  # name and type are what install checks; contents are pack-env's job
    import tarfile

    with tarfile.open(env, "w:gz"):
        pass
    result = install.install_backend(backends, python=None, stub=built38, env=env, copy_library=True)
    assert (result.path / install.DEFAULT_ENV_NAME).is_file()
    assert (result.path / "libtriton_python.so").is_file()
    assert result.warnings and "not an env of Python 3.8" in result.warnings[0]


def test_refusals(backends: Path, built38: Path, tmp_path: Path) -> None:
    with pytest.raises(StubforgeError, match=r"must be a \.tar\.gz archive"):
        install.install_backend(backends, python=None, stub=built38, env=tmp_path)
    with pytest.raises(StubforgeError, match="is not allowed"):
        install.install_backend(backends, python=None, stub=built38, name="python")
    with pytest.raises(StubforgeError, match="does not exist"):
        install.install_backend(tmp_path / "nowhere", python=None, stub=built38)
    install.install_backend(backends, python=None, stub=built38)
    (backends / "python_3_8" / "model.py").write_text("# edited by hand\n")
    with pytest.raises(StubforgeError, match="already exists with other content"):
        install.install_backend(backends, python=None, stub=built38)
    assert (backends / "python_3_8" / "model.py").read_text() == "# edited by hand\n"
    assert install.install_backend(backends, python=None, stub=built38, force=True).changed


# ------------------------------------------------------------------ the dispatcher, called as the stub calls it


def _dispatcher(tmp_path: Path) -> ModuleType:
    path = tmp_path / "dispatcher_model.py"
    path.write_text(install.dispatcher_source())
    spec = importlib.util.spec_from_file_location("dispatcher_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(repo: Path, name: str, body: str, filename: str = "model.py") -> dict[str, str]:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (version / filename).write_text(body)
    (version / "helper_mod.py").write_text(f"WHO = {name!r}\n")
    config = {"name": name, "backend": "python_3_8"}
    if filename != "model.py":
        config["default_model_filename"] = filename
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repo / name),
        "model_version": "1",
        "model_name": name,
        "model_instance_name": f"{name}_0",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
    }


MODEL = """
import helper_mod
calls = []
class TritonPythonModel:
    def initialize(self, args):
        calls.append(("initialize", args["model_name"], helper_mod.WHO))
    def execute(self, requests):
        calls.append(("execute", len(requests)))
        return ["response-%d" % i for i in range(len(requests))]
    def finalize(self):
        calls.append(("finalize",))
    def custom(self):
        return "custom"
"""


def test_dispatcher_forwards_every_call(tmp_path: Path) -> None:
    dispatcher = _dispatcher(tmp_path)
    args = _model(tmp_path / "repo", "first", MODEL)
    instance = dispatcher.TritonPythonModel()
    assert not hasattr(instance, "finalize")  # nothing loaded yet
    instance.initialize(args)
    assert instance.execute([1, 2]) == ["response-0", "response-1"]
    assert hasattr(instance, "finalize")
    instance.finalize()
    assert instance.custom() == "custom"
    loaded = [m for name, m in sys.modules.items() if name.startswith("stubforge_model_")]
    calls = next(m.calls for m in loaded if getattr(m, "calls", None) and m.calls[0][1] == "first")
    assert calls == [("initialize", "first", "first"), ("execute", 2), ("finalize",)]


def test_two_models_named_model_py_do_not_collide(tmp_path: Path) -> None:
    dispatcher = _dispatcher(tmp_path)
    a, b = dispatcher.TritonPythonModel(), dispatcher.TritonPythonModel()
    a.initialize(_model(tmp_path / "repo", "alpha", MODEL.replace("response-", "A-")))
    b.initialize(_model(tmp_path / "repo", "beta", MODEL.replace("response-", "B-")))
    assert a.execute([0]) == ["A-0"] and b.execute([0]) == ["B-0"]


def test_default_model_filename_and_missing_pieces(tmp_path: Path) -> None:
    dispatcher = _dispatcher(tmp_path)
    custom = dispatcher.TritonPythonModel()
    custom.initialize(_model(tmp_path / "repo", "named", MODEL, filename="serve.py"))
    assert custom.execute([0]) == ["response-0"]
    lacking = _model(tmp_path / "repo", "noclass", "x = 1\n")
    with pytest.raises(RuntimeError, match="defines no class TritonPythonModel"):
        dispatcher.TritonPythonModel().initialize(lacking)
    gone = _model(tmp_path / "repo", "gone", MODEL)
    (Path(gone["model_repository"]) / "1" / "model.py").unlink()
    with pytest.raises(RuntimeError, match="does not exist"):
        dispatcher.TritonPythonModel().initialize(gone)
    no_finalize = dispatcher.TritonPythonModel()
    no_finalize.initialize(
        _model(
            tmp_path / "repo",
            "plain",
            "class TritonPythonModel:\n    def execute(self, r):\n        return r\n",
        )
    )
    assert not hasattr(no_finalize, "finalize")
