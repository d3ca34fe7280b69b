"""Shared fixtures: an isolated cache per test, the fixture sources, and real interpreters."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stubforge.core import pythons
from stubforge.stubs import sources

FIXTURE_SOURCES = Path(__file__).parent / "fixtures" / "upstream"


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("STUBFORGE_CACHE", str(root))
    return root


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A private copy of the fixture sources, for tests that break them on purpose."""
    dest = tmp_path / "upstream"
    shutil.copytree(FIXTURE_SOURCES, dest, symlinks=True)
    return dest


@pytest.fixture
def imported(cache_root: Path) -> Path:
    """The fixture sources imported as r24.10 (genuine-tarball boost + a 1.74 header tree)."""
    sources.import_sources("24.10", FIXTURE_SOURCES)
    return cache_root


def interpreter(version: str) -> pythons.Interpreter:
    """A real pyenv/PATH interpreter of that minor version; these machines have 3.6-3.13."""
    found = [i for i in pythons.discover() if i.minor == version and i.buildable]
    if not found:
        pytest.fail(f"Python {version} with a shared libpython is required for this test")
    pyenv = [i for i in found if "/.pyenv/" in i.executable]
    return (pyenv or found)[0]


@pytest.fixture(scope="session")
def py38() -> pythons.Interpreter:
    return interpreter("3.8")


@pytest.fixture(scope="session")
def py310() -> pythons.Interpreter:
    return interpreter("3.10")


def run_stub(stub: Path, interp: pythons.Interpreter, *args: str) -> str:
    import subprocess

    env = dict(os.environ)
    assert interp.libpython
    env["LD_LIBRARY_PATH"] = os.path.dirname(interp.libpython)
    proc = subprocess.run(
        [str(stub), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def aarch64_sysroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An aarch64 sysroot with Debian's Python 3.11, made once per session by `sysroot create` (its debs in a
    session cache), or STUBFORGE_TEST_SYSROOT. Needs arm64 package lists (`dpkg --add-architecture arm64 &&
    apt-get update`: .ci/run)."""
    from tests import aarch64

    root = tmp_path_factory.mktemp("aarch64")
    return aarch64.sysroot(root / "sysroot", root / "cache")
