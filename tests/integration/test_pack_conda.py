"""pack-env --prefix: real conda-pack on conda-shaped prefixes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from stubforge.core import pythons
from stubforge.envs import inspect, packenv
from stubforge.envs.create import EnvError
from tests.condaenv import make_conda_prefix
from tests.conftest import interpreter

pytestmark = pytest.mark.slow


@pytest.fixture
def conda38(tmp_path: Path, py38: pythons.Interpreter) -> Path:
    return make_conda_prefix(tmp_path / "conda", py38, ["numpy<2", "six"])


@pytest.mark.parametrize("minor", ["3.8", "3.10"])
def test_conda_prefix_packs_and_runs_both_ways(cache_root: Path, tmp_path: Path, minor: str) -> None:
    py38 = interpreter(minor)  # the env's Python (3.8 or 3.10)
    conda38 = make_conda_prefix(tmp_path / "conda", py38, ["numpy<2", "six"])
    out = tmp_path / "out" / "conda.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(prefix=conda38, output=out, python=minor))
    assert result.manifest["source"] == {"kind": "conda", "prefix": str(conda38.resolve())}
    assert "six" in result.manifest["packages"] and result.manifest["numpy"].startswith("1.")
    again = tmp_path / "out" / "again.tar.gz"
    packenv.pack_env(packenv.PackOptions(prefix=conda38, output=again))
    assert again.read_bytes() == out.read_bytes()  # one env, the same bytes
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert {"bin/activate", "bin/conda-unpack", f"lib/libpython{minor}.so.1.0"} <= names
    extracted = tmp_path / "python_env_x" / "0"
    extracted.mkdir(parents=True)
    with tarfile.open(out) as tar:
        tar.extractall(extracted)
    for bash_activate in (True, False):
        data = inspect.run_probe(extracted, ["numpy", "six"], activate_with_bash=bash_activate)
        assert data["version"] == py38.version
        assert data["prefix"] == str(extracted)
        assert not [m for m in data["maps"] if m.startswith(py38.base_prefix)]  # type: ignore[union-attr]
        assert not [m for m in data["maps"] if m.startswith(str(conda38))]  # type: ignore[union-attr]


def test_not_a_conda_prefix(cache_root: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(EnvError, match="is not a conda environment"):
        packenv.pack_env(packenv.PackOptions(prefix=plain, output=tmp_path / "o" / "e.tar.gz"))
    with pytest.raises(EnvError, match="no such directory"):
        packenv.pack_env(packenv.PackOptions(prefix=tmp_path / "nope", output=tmp_path / "o" / "e.tar.gz"))


def test_wrong_python_version(cache_root: Path, tmp_path: Path, conda38: Path) -> None:
    with pytest.raises(EnvError, match=r"has Python 3\.8\.\d+, not 3\.10"):
        packenv.pack_env(
            packenv.PackOptions(prefix=conda38, python="3.10", output=tmp_path / "o" / "e.tar.gz")
        )


def test_files_clobbered_by_pip_are_explained(cache_root: Path, tmp_path: Path, conda38: Path) -> None:
    # pip removing a file conda installed, as happens when pip replaces a conda package.
    record = next((conda38 / "conda-meta").glob("python-*.json"))
    victim = next(f for f in json.loads(record.read_text())["files"] if f.endswith("/json/__init__.py"))
    (conda38 / victim).unlink()
    out_dir = tmp_path / "o"
    with pytest.raises(EnvError) as info:
        packenv.pack_env(packenv.PackOptions(prefix=conda38, output=out_dir / "e.tar.gz"))
    assert "pip replaced or removed files that conda installed" in info.value.message
    assert "conda list" in info.value.hint
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_editable_install_is_explained(cache_root: Path, tmp_path: Path, conda38: Path) -> None:
    site = conda38 / "lib" / "python3.8" / "site-packages"
    dist = site / "mypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (dist / "RECORD").write_text("")
    (dist / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/mypkg", "dir_info": {"editable": True}})
    )
    with pytest.raises(EnvError) as info:
        packenv.pack_env(packenv.PackOptions(prefix=conda38, output=tmp_path / "o" / "e.tar.gz"))
    assert "editable" in info.value.message
    assert "pip install ." in info.value.hint


def test_packages_with_prefix_are_refused(cache_root: Path, tmp_path: Path, conda38: Path) -> None:
    with pytest.raises(EnvError, match="as it is"):
        packenv.pack_env(
            packenv.PackOptions(prefix=conda38, requirements=["six"], output=tmp_path / "e.tar.gz")
        )


@pytest.fixture
def micromamba_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os
    import sys

    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    tool = bindir / "micromamba"
    script = Path(__file__).resolve().parents[1] / "fake_micromamba.py"
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_spec_with_conda_packages_uses_the_conda_tool(
    cache_root: Path, tmp_path: Path, micromamba_on_path: Path
) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('python = "3.8"\nconda = ["libstdcxx-ng=13.2.0"]\npip = ["numpy<2", "six"]\n')
    out = tmp_path / "out" / "e.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(spec=spec, output=out))
    assert result.manifest["source"]["kind"] == "conda-spec"
    assert result.manifest["source"]["spec"] == str(spec)
    assert {"numpy", "six"} <= set(result.manifest["packages"])  # pip packages, on top of conda's
    with tarfile.open(out) as tar:
        assert "conda-meta/libstdcxx-ng-13.2.0-h0_0.json" in tar.getnames()
    assert sorted(p.name for p in out.parent.iterdir()) == ["e.tar.gz", "e.tar.gz.stubforge.json"]


def test_conda_tool_failure_is_reported(cache_root: Path, tmp_path: Path, micromamba_on_path: Path) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('python = "3.8"\nconda = ["no-such-package"]\n')
    out_dir = tmp_path / "out"
    with pytest.raises(EnvError) as info:
        packenv.pack_env(packenv.PackOptions(spec=spec, output=out_dir / "e.tar.gz"))
    assert "micromamba could not create the environment" in info.value.message
    assert "nothing provides no-such-package" in info.value.details
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_numpy_is_added_to_the_packed_copy_only(
    cache_root: Path, tmp_path: Path, py38: pythons.Interpreter
) -> None:
    prefix = make_conda_prefix(tmp_path / "conda", py38, ["six"])
    out = tmp_path / "out" / "e.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(prefix=prefix, output=out))
    assert result.manifest["numpy"].startswith("1.")  # r24.10: numpy<2
    assert not list(prefix.glob("lib/python3.8/site-packages/numpy*"))  # the user's env is untouched


def test_an_env_failing_validation_leaves_no_archive(cache_root: Path, tmp_path: Path, conda38: Path) -> None:
    # The archive is written while the env is validated: when validation fails, nothing of it may remain.
    site = next(conda38.glob("lib/python3*/site-packages"))
    (site / "zz_outside.pth").write_text(f"{tmp_path}\n")
    out_dir = tmp_path / "o"
    with pytest.raises(EnvError, match="imports from outside itself"):
        packenv.pack_env(packenv.PackOptions(prefix=conda38, output=out_dir / "e.tar.gz"))
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
