"""The real python_backend r24.10: opt-in (STUBFORGE_UPSTREAM_SOURCES), minutes per build on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from stubforge.core import elf, pythons
from stubforge.stubs import build as stub
from stubforge.stubs import probe as verify
from stubforge.stubs import sources, upstream

pytestmark = [pytest.mark.upstream, pytest.mark.slow]


@pytest.fixture
def real_cache(upstream_sources: Path, cache_root: Path) -> Path:
    sources.import_sources("24.10", upstream_sources)
    return cache_root


def test_r2410_py38_pinned_pybind11_and_cache_hit(
    real_cache: Path, py38: pythons.Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = stub.build_one(py38, stub.BuildOptions(triton="24.10"))
    assert result.manifest["pybind11"] == "2.10.0"
    assert result.manifest["build"]["mode"] == "unity"
    assert py38.libpython_soname in elf.read(result.stub).needed
    assert verify.probe(result.stub, py38).returncode == 1

    monkeypatch.setattr(upstream, "configure_and_build", lambda *a, **k: pytest.fail("cmake on a cache hit"))
    assert stub.build_one(py38, stub.BuildOptions(triton="24.10")).cache_hit


def test_r2410_py312_with_pybind11_212(real_cache: Path) -> None:
    py312 = pythons.resolve("3.12", require_buildable=True)
    result = stub.build_one(py312, stub.BuildOptions(triton="24.10", pybind11="2.12.0"))
    assert result.manifest["pybind11"] == "2.12.0"
    assert "libpython3.12.so.1.0" in elf.read(result.stub).needed


def test_unity_and_plain_export_the_same_symbols(real_cache: Path, py38: pythons.Interpreter) -> None:
    unity = stub.build_one(py38, stub.BuildOptions(triton="24.10", mode="unity"))
    unity_symbols = elf.exported_symbols(unity.stub)
    plain = stub.build_one(py38, stub.BuildOptions(triton="24.10", mode="plain", force=True))
    assert plain.manifest["build"]["mode"] == "plain"
    assert elf.exported_symbols(plain.stub) == unity_symbols
