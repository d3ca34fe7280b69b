"""Reproducible stubs: the same inputs give the same bytes, and the manifest says which inputs those were.

Real cmake, gcc and interpreters on the fixture sources (tests/fixtures/upstream); no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stubforge.core import cache, pythons
from stubforge.server import install
from stubforge.stubs import build as stub_build
from stubforge.stubs import runner_stub, sources
from tests.conftest import FIXTURE_SOURCES

pytestmark = pytest.mark.slow


def _build(py: pythons.Interpreter, **kw: object) -> stub_build.BuildResult:
    return stub_build.build_one(py, stub_build.BuildOptions(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["unity", "plain"])
def test_force_rebuild_of_the_same_inputs_gives_the_same_bytes(
    imported: Path, py38: pythons.Interpreter, mode: str
) -> None:
    first = _build(py38, mode=mode)
    first_bytes = first.stub.read_bytes()
    again = _build(py38, mode=mode, force=True)
    assert not again.cache_hit
    assert again.manifest["sha256"] == first.manifest["sha256"]
    assert again.stub.read_bytes() == first_bytes
    assert cache.sha256_of(again.stub) == first.manifest["sha256"]


def test_another_cache_root_gives_the_same_bytes(
    imported: Path, py38: pythons.Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another user's cache (other source and build paths, one with a space) with the same sources: prefix
    # maps keep every path out of the binary.
    first = _build(py38)
    monkeypatch.setenv("STUBFORGE_CACHE", str(tmp_path / "another user" / "deeper" / "cache"))
    sources.import_sources("24.10", FIXTURE_SOURCES)
    elsewhere = _build(py38)
    assert elsewhere.stub != first.stub
    assert elsewhere.manifest["sha256"] == first.manifest["sha256"]
    assert elsewhere.manifest["inputs"] == first.manifest["inputs"]


def test_build_paths_do_not_reach_the_binary(imported: Path, py38: pythons.Interpreter) -> None:
    built = _build(py38)
    data = built.stub.read_bytes()
    for path in (cache.builds_dir(), cache.sources_dir(), imported):
        assert str(path).encode() not in data, f"{path} is in the stub"


def test_manifest_records_every_input_hash(imported: Path, py38: pythons.Interpreter) -> None:
    built = _build(py38)
    inputs = built.manifest["inputs"]
    srcs = sources.resolve("24.10")
    for item in srcs.inputs():
        recorded = inputs["sources"][item.kind]
        assert recorded["sha256"] == sources.input_digest(item)
        assert len(recorded["sha256"]) == 64
    assert inputs["sources"]["python_backend"]["sha256"] == sources.tree_digest(
        Path(srcs.python_backend.path)
    )
    assert inputs["sources"]["boost"]["sha256"] == cache.sha256_of(Path(srcs.boost.path))
    assert inputs["sources_fingerprint"] == built.manifest["sources_fingerprint"]
    assert inputs["compiler"]["version"]  # e.g. "GNU 12.2.0"
    assert inputs["compiler"]["id"] in ("GNU", "Clang")
    assert len(inputs["cmake_args_sha256"]) == 64
    # Recorded without the cache's paths, so two caches with the same inputs record the same.
    assert not any(str(imported) in a for a in inputs["cmake_args"])
    assert "-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON=<common>" in inputs["cmake_args"]
    assert inputs["source_date_epoch"] == "0"
    assert inputs["date_time_macros"] == []
    assert any(a.startswith("-DCMAKE_CXX_FLAGS=") and "-ffile-prefix-map=" in a for a in inputs["cmake_args"])
    assert inputs["python"]["version"] == py38.version


def test_cmake_args_change_the_recorded_hash(imported: Path, py38: pythons.Interpreter) -> None:
    plain = _build(py38)
    tuned = _build(py38, cmake_args=("-DTRITON_ENABLE_STATS=OFF",))
    assert tuned.key != plain.key
    assert tuned.manifest["inputs"]["cmake_args_sha256"] != plain.manifest["inputs"]["cmake_args_sha256"]


def test_install_accepts_a_rebuilt_identical_stub(
    imported: Path, py38: pythons.Interpreter, tmp_path: Path
) -> None:
    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    first = _build(py38)
    installed = install.install_model_stub(model, python=None, stub=first.stub)
    assert installed.changed
    again = _build(py38, force=True)
    # Same bytes: installing the rebuilt stub over the first is a no-op, not "a different stub".
    reinstalled = install.install_model_stub(model, python=None, stub=again.stub)
    assert not reinstalled.changed


def test_runner_stub_rebuild_gives_the_same_bytes(cache_root: Path, py38: pythons.Interpreter) -> None:
    first = runner_stub.build_runner_stub(py38)
    first_bytes = first.stub.read_bytes()
    again = runner_stub.build_runner_stub(py38, force=True)
    assert not again.cache_hit
    assert again.manifest["sha256"] == first.manifest["sha256"]
    assert again.stub.read_bytes() == first_bytes


def test_runner_stub_from_another_source_path_gives_the_same_bytes(
    cache_root: Path, py38: pythons.Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = runner_stub.build_runner_stub(py38)
    moved = tmp_path / "elsewhere" / "stub_src" / "sfstub.c"
    moved.parent.mkdir(parents=True)
    shutil.copyfile(runner_stub.SOURCE, moved)
    monkeypatch.setattr(runner_stub, "SOURCE", moved)
    again = runner_stub.build_runner_stub(py38, force=True)
    assert again.manifest["sha256"] == first.manifest["sha256"]
    assert str(moved.parent).encode() not in again.stub.read_bytes()


def test_runner_stub_manifest_records_input_hashes(cache_root: Path, py38: pythons.Interpreter) -> None:
    built = runner_stub.build_runner_stub(py38)
    inputs = built.manifest["inputs"]
    assert inputs["source_sha256"] == cache.sha256_of(runner_stub.SOURCE)
    assert inputs["python"]["version"] == py38.version
    assert len(inputs["python"]["headers_sha256"]) == 64
    assert inputs["compiler"]["version"]
    assert len(inputs["flags_sha256"]) == 64
    assert any(f.startswith("-ffile-prefix-map=") for f in inputs["flags"])
