"""stubs import and install model, with stubs really built from the fixture project."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from stubforge.core import cache, elf, pythons, targets
from stubforge.errors import StubforgeError
from stubforge.server import install
from stubforge.stubs import build as stub_mod

pytestmark = pytest.mark.slow

CONFIG = 'name: "m"\nbackend: "python"\n'


@pytest.fixture
def built38(imported: Path, py38: pythons.Interpreter) -> Path:
    return stub_mod.build_one(py38, stub_mod.BuildOptions()).stub


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "repo" / "m"
    (directory / "1").mkdir(parents=True)
    (directory / "config.pbtxt").write_text(CONFIG)
    return directory


def test_import_a_stub_without_exec_bit(built38: Path, tmp_path: Path) -> None:
    wheel_copy = tmp_path / "wheel" / "triton_python_backend_stub"
    wheel_copy.parent.mkdir()
    wheel_copy.write_bytes(built38.read_bytes())
    wheel_copy.chmod(0o644)  # as unpacked from a wheel
    result = install.import_stub(wheel_copy, "24.10", pybind11="2.10.0")
    assert not result.cache_hit
    assert result.manifest["build"]["mode"] == "imported"
    assert result.manifest["imported_from"] == str(wheel_copy)
    assert result.stub.stat().st_mode & stat.S_IXUSR
    assert result.key.startswith("r24.10-cp38-") and "pybind11_2.10.0-boost_unknown" in result.key
    assert result.manifest["target"] == targets.host_target().to_dict()
    assert install.import_stub(wheel_copy, "24.10", pybind11="2.10.0").cache_hit


def test_import_refuses_a_binary_that_is_not_a_stub(cache_root: Path, py38: pythons.Interpreter) -> None:
    with pytest.raises(StubforgeError, match="instead of exit 1"):
        install.import_stub(Path(py38.real_path), "24.10")
    assert stub_mod.list_stubs() == []


def test_install_model_stub_is_atomic_idempotent_and_guarded(
    built38: Path, model: Path, py310: pythons.Interpreter
) -> None:
    result = install.install_model_stub(model, python=None, stub=built38)
    target = model / cache.STUB_NAME
    assert result.path == target and result.changed and result.warnings == []
    assert target.read_bytes() == built38.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert (model / (cache.STUB_NAME + install.SIDECAR)).is_file()
    again = install.install_model_stub(model, python=None, stub=built38)
    assert not again.changed
    other = stub_mod.build_one(py310, stub_mod.BuildOptions()).stub
    with pytest.raises(StubforgeError, match="already holds a different stub"):
        install.install_model_stub(model, python=None, stub=other)
    assert target.read_bytes() == built38.read_bytes()
    replaced = install.install_model_stub(model, python=None, stub=other, force=True)
    assert replaced.changed and target.read_bytes() == other.read_bytes()
    assert sorted(p.name for p in model.iterdir()) == [
        "1",
        "config.pbtxt",
        cache.STUB_NAME,
        cache.STUB_NAME + install.SIDECAR,
    ]


def test_install_by_python_uses_the_cached_artifact(built38: Path, model: Path) -> None:
    result = install.install_model_stub(model, python="3.8", stub=None)
    assert result.source == built38


def test_unreachable_libpython_is_a_warning(
    built38: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = tmp_path / "lost" / "triton_python_backend_stub"
    lost.parent.mkdir()
    lost.write_bytes(built38.read_bytes())
    elf.shorten_runpath(lost, "/nonexistent")  # as if built on another machine
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    result = install.install_model_stub(model, python=None, stub=lost)
    assert result.warnings and "hangs" in result.warnings[0]
    assert "libpython3.8.so.1.0" in result.warnings[0]
    # The warning follows the release asked for: r25.08+ fails the load instead of hanging.
    newer = install.install_model_stub(model, python=None, stub=lost, triton="25.08")
    assert "Triton r25.08 fails the load" in newer.warnings[0] and "hang" not in newer.warnings[0]
    sidecar = json.loads((model / (cache.STUB_NAME + install.SIDECAR)).read_text())
    assert sidecar["target"] == targets.host_target().to_dict()


def test_install_needs_a_config(built38: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StubforgeError):
        install.install_model_stub(empty, python=None, stub=built38)
    assert list(empty.iterdir()) == []


def test_python_mismatch_with_stub(built38: Path, model: Path) -> None:
    with pytest.raises(StubforgeError, match=r"embeds Python 3\.8, but --python 3\.10"):
        install.install_model_stub(model, python="3.10", stub=built38)
    assert not (model / cache.STUB_NAME).exists()
    assert sorted(os.listdir(model)) == ["1", "config.pbtxt"]


def test_cli_install_and_import(built38: Path, model: Path, cache_root: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    env = dict(os.environ, STUBFORGE_CACHE=str(cache_root))
    run = [sys.executable, "-m", "stubforge"]
    proc = subprocess.run(
        [*run, "install", "model", str(model), "--python", "3.8", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"] == str(model / cache.STUB_NAME)
    missing = subprocess.run(
        [*run, "stubs", "import", str(tmp_path / "nope"), "--triton", "24.10"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    listed = json.loads(
        subprocess.run(
            [*run, "stubs", "--json"], capture_output=True, text=True, env=env, timeout=300, check=True
        ).stdout
    )
    assert [a["python"]["minor"] for a in listed] == ["3.8"]
