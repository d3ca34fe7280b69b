"""`import stubforge` is the library: cheap to import, every exported name real, each documented call works."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import stubforge
from stubforge.progress import EventLog

MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (a * 2).astype(a.dtype))]))
        return responses
"""

CONFIG = """name: "{name}"
backend: "python"
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
"""


def write_model(repo: Path, name: str) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL_PY)
    (model / "config.pbtxt").write_text(CONFIG.format(name=name))
    return model


def test_import_is_cheap_and_lazy() -> None:
    code = (
        "import json, sys, stubforge\n"
        "heavy = [m for m in ('click', 'numpy', 'posix_ipc', 'tritonclient', 'google.protobuf') "
        "if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'version': stubforge.__version__}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(proc.stdout)
    assert out == {"heavy": [], "version": stubforge.__version__}


def test_every_exported_name_resolves() -> None:
    assert "__version__" in stubforge.__all__
    assert sorted(stubforge.__all__) == sorted(["__version__", *stubforge._EXPORTS])
    for name in stubforge.__all__:
        value = getattr(stubforge, name)
        assert value is not None, name
        if name != "__version__" and not name[0].isupper():
            assert callable(value), name
        if getattr(value, "__module__", "") == "stubforge.api":
            assert value.__doc__, f"{name} is documented"
    assert issubclass(stubforge.StubforgeError, Exception)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        stubforge.nothing_here  # noqa: B018


def test_find_pythons_lists_real_interpreters() -> None:
    found = stubforge.find_pythons()
    assert {"3.8", "3.10"} <= {i.minor for i in found}
    assert all(isinstance(i, stubforge.Interpreter) for i in found)
    with pytest.raises(stubforge.StubforgeError, match="no such file"):
        stubforge.find_pythons(["/nonexistent/python3"])


def test_check_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "double")
    report = stubforge.check(repo, triton="r24.10")
    assert isinstance(report, stubforge.CheckReport)
    assert [m.name for m in report.models] == ["double"] and report.triton == "r24.10"
    with pytest.raises(stubforge.StubforgeError, match="no such directory"):
        stubforge.check(tmp_path / "missing")


def test_set_env_path_writes_config(tmp_path: Path, cache_root: Path) -> None:
    model = write_model(tmp_path / "repo", "double")
    archive = model / "env.tar.gz"
    data = b"export PATH=...\n"
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("bin/activate")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    value = "$$TRITON_MODEL_DIRECTORY/env.tar.gz"
    assert stubforge.plan_env_path(str(model), str(archive)) == value  # str paths are accepted
    assert "EXECUTION_ENV_PATH" not in (model / "config.pbtxt").read_text()  # planning writes nothing
    written = stubforge.set_env_path(model, archive)
    assert isinstance(written, stubforge.WriteResult)
    assert written.changed and written.value == value and written.backup == model / "config.pbtxt.bak"
    assert value in (model / "config.pbtxt").read_text()
    with pytest.raises(stubforge.StubforgeError, match="outside the model directory"):
        stubforge.set_env_path(model, tmp_path / "elsewhere.tar.gz")


def test_build_stub_from_fixture_sources(imported: Path) -> None:
    events = EventLog()
    result = stubforge.build_stub("3.8", triton="24.10", progress=events)
    assert isinstance(result, stubforge.BuildResult)
    assert not result.cache_hit and result.stub.is_file()
    assert result.manifest["python"]["minor"] == "3.8"
    steps = events.steps()
    assert steps[0] == "mode" and "configure" in steps and steps[-2:] == ["verify", "done"]
    assert {e.task for e in events.events} == {"py3.8"}
    again = stubforge.build_stub("3.8", progress=events)
    assert again.cache_hit and again.key == result.key


def test_build_stubs_resolves_every_python_before_building(imported: Path) -> None:
    events = EventLog()
    with pytest.raises(stubforge.StubforgeError, match=r"no Python 3\.99 found"):
        stubforge.build_stubs(["3.8", "3.99"], progress=events)
    assert events.events == []  # nothing was built for 3.8


def _interpreter_with_numpy() -> stubforge.Interpreter:
    """The runner needs numpy in the model's Python; without an env that is the interpreter's own."""
    found = [i for i in stubforge.find_pythons() if i.numpy and i.buildable and i.prefix == i.base_prefix]
    if not found:
        pytest.fail("a buildable interpreter (not a venv) with numpy installed is required for this test")
    return found[0]


def test_load_runs_a_model(tmp_path: Path, cache_root: Path) -> None:
    import numpy as np

    model_dir = write_model(tmp_path / "repo", "double")
    interp = _interpreter_with_numpy()
    with stubforge.load(model_dir, python=interp.executable, startup_timeout=60.0) as model:
        assert isinstance(model, stubforge.Model)
        out = model.infer({"INPUT0": np.array([1.0, 2.5], dtype=np.float32)})
        assert out["OUTPUT0"].tolist() == [2.0, 5.0]
        assert model.info["python"].startswith(interp.minor)
        assert model.info["pid"] != os.getpid()


def test_run_model_reports_like_the_cli(tmp_path: Path, cache_root: Path) -> None:
    model_dir = write_model(tmp_path / "repo", "double")
    interp = _interpreter_with_numpy()
    report = stubforge.run_model(
        model_dir, ["INPUT0=[1, 2]"], requests=2, python=interp.executable, output_dir=tmp_path / "out"
    ).to_dict()
    assert report["model"] == "double" and len(report["request_s"]) == 2
    assert report["outputs"]["OUTPUT0"]["values"] == [2.0, 4.0]
    assert Path(report["outputs"]["OUTPUT0"]["file"]).is_file()
    with pytest.raises(stubforge.StubforgeError, match="at least 1"):
        stubforge.run_model(model_dir, requests=0)


def test_verify_needs_exactly_one_server(tmp_path: Path) -> None:
    with pytest.raises(stubforge.StubforgeError, match="exactly one of --tritonserver PATH and --pytriton"):
        stubforge.verify(tmp_path)
    with pytest.raises(stubforge.StubforgeError, match="exactly one"):
        stubforge.verify(tmp_path, tritonserver=tmp_path / "tritonserver", pytriton=True)
