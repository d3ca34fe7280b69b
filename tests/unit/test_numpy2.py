from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stubforge.core import cache
from stubforge.envs import create, numpy2, packenv
from stubforge.envs.create import EnvError
from stubforge.server import install
from stubforge.stubs.build import artifact_key, numpy2_warning
from tests.conftest import interpreter


def test_python313_needs_pybind11_213() -> None:
    py = dataclasses.replace(interpreter("3.8"), version="3.13.0", numpy=None)
    assert "--pybind11 2.13.6" in (numpy2_warning(py, "2.10.0") or "")
    assert "--pybind11 2.13.6" in (numpy2_warning(py, "2.12.0") or "")
    assert numpy2_warning(py, "2.13.6") is None


def test_installed_numpy2_warns_for_old_pybind11() -> None:
    py = dataclasses.replace(interpreter("3.8"), numpy="2.0.2")
    warning = numpy2_warning(py, "2.10.0")
    assert warning and "numpy 2.0.2" in warning and "--pybind11 2.12.0" in warning
    assert numpy2_warning(py, "2.12.0") is None
    assert numpy2_warning(dataclasses.replace(py, numpy="1.24.4"), "2.10.0") is None
    assert numpy2_warning(dataclasses.replace(py, numpy=None), "2.10.0") is None


def test_artifact_key_parts() -> None:
    py = interpreter("3.10")
    key = artifact_key("r24.10", py, False, "2.10.0", "1.79.0", arch="aarch64")
    assert key == "r24.10-cp310-aarch64-cpu-pybind11_2.10.0-boost_1.79.0"
    gpu = artifact_key("r24.10", py, True, "2.12.0", "1.74.0", arch="x86_64")
    assert gpu == "r24.10-cp310-x86_64-gpu-pybind11_2.12.0-boost_1.74.0"
    extra = artifact_key("r24.10", py, False, "2.10.0", "1.79.0", arch="x86_64", cmake_args=("-DX=1",))
    assert extra.startswith("r24.10-cp310-x86_64-cpu-pybind11_2.10.0-boost_1.79.0-x") and len(extra) > len(
        key
    )


# ---------------------------------------------------------------- pack-env decides numpy 2 before slow work


@pytest.mark.parametrize(
    ("requirement", "demands"),
    [
        ("numpy>=2", True),
        ("numpy >= 2.0.0", True),
        ("numpy==2.1.*", True),
        ("numpy~=2.0", True),
        ("numpy[extra]>2,<3", True),
        ("numpy>1.26.99", True),
        ("numpy", False),
        ("numpy<2", False),
        ("numpy>=1.26", False),
        ("numpy~=1.26", False),
        ("numpy!=2.0.0", False),
        ("numpy>=2; python_version>'3.9'", False),  # a marker: left to the check of the finished env
        ("numpyro>=2", False),
        ("pandas>=2", False),
    ],
)
def test_which_requirements_demand_numpy2(requirement: str, demands: bool) -> None:
    assert numpy2.demands_numpy2(requirement) is demands


class _PipReached(Exception):
    """pack-env got as far as pip: carries what it would install."""


@pytest.fixture
def slow_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Creating the env records that it was reached; pip stops the pack with the requirements it got."""
    reached: list[str] = []

    def copy(interp: object, dest: Path, **options: object) -> None:
        reached.append("copy")

    def pip(env_dir: Path, interp: object, requirements: list[str], *args: object, **options: object) -> None:
        reached.append("pip")
        raise _PipReached(list(requirements))

    monkeypatch.setattr(create, "copy_interpreter", copy)
    monkeypatch.setattr(create, "pip_install", pip)
    return reached


def _model_with_stub(root: Path, stub: Path, pybind11: str | None) -> Path:
    model = root / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    installed = model / cache.STUB_NAME
    shutil.copyfile(stub, installed)
    installed.chmod(0o755)
    if pybind11 is not None:  # the sidecar `stubforge install model` writes, with the build's manifest
        manifest = {"pybind11": pybind11, "triton": {"release": "r24.10"}}
        sidecar = {"python": "3.8", "manifest": manifest}
        (model / (cache.STUB_NAME + install.SIDECAR)).write_text(json.dumps(sidecar))
    return model


def _where(via: str, model: Path) -> dict[str, object]:
    """pack-env --model M (the env goes into M), or --stub M/triton_python_backend_stub -o elsewhere."""
    if via == "--model":
        return {"model_dir": model}
    return {"stub": model / cache.STUB_NAME, "output": model.parent / "out" / "env.tar.gz"}


def _options(**kwargs: object) -> packenv.PackOptions:
    return packenv.PackOptions(python="3.8", triton="24.10", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("via", ["--model", "--stub"])
def test_an_installed_old_stub_refuses_numpy2_before_anything_is_created(
    tmp_path: Path, cache_root: Path, slow_work: list[str], via: str
) -> None:
    model = _model_with_stub(tmp_path, Path(interpreter("3.8").real_path), "2.10.0")
    before = sorted(p.name for p in model.iterdir())
    with pytest.raises(EnvError) as refused:
        packenv.pack_env(_options(requirements=["numpy>=2"], **_where(via, model)))
    assert slow_work == []
    assert "'numpy>=2' asks for numpy 2" in refused.value.message
    assert (
        "pybind11 2.10.0" in refused.value.message
        and "refused before anything was copied" in refused.value.message
    )
    assert sorted(p.name for p in model.iterdir()) == before


@pytest.mark.parametrize("via", ["--model", "--stub"])
def test_an_installed_212_stub_allows_numpy2(
    tmp_path: Path, cache_root: Path, slow_work: list[str], via: str
) -> None:
    # Triton 24.10's own stubs use pybind11 2.10: the stub in the model decides, not the release.
    model = _model_with_stub(tmp_path, Path(interpreter("3.8").real_path), "2.12.0")
    with pytest.raises(_PipReached) as pip:
        packenv.pack_env(_options(requirements=["numpy>=2"], **_where(via, model)))
    assert pip.value.args[0] == ["numpy>=2"]
    with pytest.raises(_PipReached) as added:
        packenv.pack_env(_options(**_where(via, model)))
    assert added.value.args[0] == ["numpy"]  # not numpy<2


def test_without_a_stub_the_release_decides(tmp_path: Path, cache_root: Path, slow_work: list[str]) -> None:
    with pytest.raises(EnvError, match=re.escape("Triton 24.10's stubs use pybind11 2.10.0")):
        packenv.pack_env(_options(requirements=["numpy>=2"], output=tmp_path / "e.tar.gz"))
    assert slow_work == []
    with pytest.raises(_PipReached) as pip:
        packenv.pack_env(_options(output=tmp_path / "e.tar.gz"))
    assert pip.value.args[0] == ["numpy<2"]


@pytest.mark.parametrize(("marker", "allowed"), [("numpy._core", True), ("numpy.core.multiarray", False)])
def test_a_stub_without_manifest_is_read_from_its_binary(
    tmp_path: Path, cache_root: Path, slow_work: list[str], marker: str, allowed: bool
) -> None:
    # What pybind11's numpy support leaves in a stub's read-only data (see stubinfo.numpy2_aware).
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    py = interpreter("3.8")
    assert py.libpython
    source = tmp_path / "stub.c"
    source.write_text(
        f'#include <stdio.h>\nconst char path[] = "{marker}";\nint main(void) {{ return puts(path); }}\n'
    )
    stub = tmp_path / "bin" / cache.STUB_NAME
    stub.parent.mkdir()
    libdir = str(Path(py.libpython).parent)
    subprocess.run(
        [compiler, str(source), "-o", str(stub), "-Wl,--no-as-needed", f"-L{libdir}", "-lpython3.8"],
        check=True,
        capture_output=True,
    )
    options = _options(requirements=["numpy>=2"], stub=stub, output=tmp_path / "e.tar.gz")
    if allowed:
        with pytest.raises(_PipReached):
            packenv.pack_env(options)
    else:
        with pytest.raises(EnvError, match=r"pybind11 < 2.12 \(read from the binary\)"):
            packenv.pack_env(options)
        assert slow_work == []
