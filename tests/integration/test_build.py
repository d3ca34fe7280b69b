"""`stubforge build` on the fixture project with real cmake, gcc and interpreters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stubforge.core import cache, elf, pythons
from stubforge.errors import BuildError, SourcesError
from stubforge.stubs import build as stub
from stubforge.stubs import probe as verify
from stubforge.stubs import sources, upstream
from tests.conftest import FIXTURE_SOURCES, run_stub

pytestmark = pytest.mark.slow

NINE_ARGS = [str(i) for i in range(1, 10)]


def _build(py: pythons.Interpreter, **kw: object) -> stub.BuildResult:
    return stub.build_one(py, stub.BuildOptions(**kw))  # type: ignore[arg-type]


def _leftovers(root: Path) -> list[str]:
    """Scratch build trees and staging dirs that must never outlive a build."""
    left = [p.name for p in (root / "builds").iterdir()] if (root / "builds").is_dir() else []
    if (root / "stubs").is_dir():
        left += [p.name for p in (root / "stubs").iterdir() if p.name.startswith(".")]
    return left


def test_builds_verified_stubs_for_38_and_310(
    imported: Path, py38: pythons.Interpreter, py310: pythons.Interpreter
) -> None:
    for py in (py38, py310):
        result = _build(py)
        assert not result.cache_hit
        assert result.stub.is_file()
        info = elf.read(result.stub)
        assert py.libpython_soname in info.needed
        assert [n for n in info.needed if n.startswith("libpython")] == [py.libpython_soname]
        # The stub embeds exactly this interpreter and saw the genuine-tarball boost (1.79).
        out = run_stub(result.stub, py, *NINE_ARGS)
        assert f"python={py.version}" in out
        assert "boost=1_79" in out
        manifest = json.loads((result.stub.parent / cache.MANIFEST_NAME).read_text())
        assert manifest["python"]["version"] == py.version
        assert manifest["sha256"] == cache.sha256_of(result.stub)
        assert manifest["triton"]["release"] == "r24.10"
        assert manifest["target"] == {"arch": manifest["arch"], "sysroot": None, "libc": None}
        assert manifest["pybind11"] == "2.10.0"
        assert manifest["boost"]["version"] == "1.79.0"
        assert manifest["build"]["mode"] == "unity"
        assert "GLIBC" in manifest["glibc_floor"]
        assert manifest["timings"]["build_s"] > 0
        assert Path(result.stub.parent / "build.log").is_file()
        args = manifest["build"]["args"]
        assert "-DFETCHCONTENT_FULLY_DISCONNECTED=ON" in args
        assert f"-DPYTHON_EXECUTABLE={py.executable}" in args
        for name in ("REPO-COMMON", "REPO-CORE", "REPO-BACKEND", "PYBIND11", "DLPACK", "GOOGLETEST"):
            assert any(a.startswith(f"-DFETCHCONTENT_SOURCE_DIR_{name}=") for a in args)
    assert len(stub.list_stubs()) == 2
    assert _leftovers(imported) == []


def test_second_build_is_a_cache_hit_without_cmake(
    imported: Path, py38: pythons.Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(py38)

    def no_cmake(*_a: object, **_k: object) -> None:
        raise AssertionError("cmake ran on a cache hit")

    monkeypatch.setattr(upstream, "configure_and_build", no_cmake)
    second = _build(py38)
    assert second.cache_hit
    assert second.stub == first.stub
    assert second.manifest["sha256"] == first.manifest["sha256"]


def test_force_rebuilds(imported: Path, py38: pythons.Interpreter) -> None:
    first = _build(py38)
    again = _build(py38, force=True)
    assert not again.cache_hit
    assert again.manifest["created"] >= first.manifest["created"]


def test_interpreter_choice_ignores_python3_first_on_path(
    imported: Path,
    py38: pythons.Interpreter,
    py310: pythons.Interpreter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "python3").symlink_to(py310.executable)
    monkeypatch.setenv("PATH", f"{decoy}{os.pathsep}{os.environ['PATH']}")
    result = _build(py38)
    assert py38.libpython_soname in elf.read(result.stub).needed
    assert f"python={py38.version}" in run_stub(result.stub, py38, *NINE_ARGS)


def test_pybind11_override_and_boost_header_tree(imported: Path, py310: pythons.Interpreter) -> None:
    result = _build(py310, pybind11="2.12.0", boost=FIXTURE_SOURCES / "boost")
    assert "pybind11_2.12.0" in result.key and "boost_1.74.0" in result.key
    assert result.manifest["pybind11"] == "2.12.0"
    assert result.manifest["boost"]["form"] == "headers"
    assert "boost=1_74" in run_stub(result.stub, py310, *NINE_ARGS)


def test_plain_mode(imported: Path, py38: pythons.Interpreter) -> None:
    result = _build(py38, mode="plain")
    assert result.manifest["build"]["mode"] == "plain"
    assert not any("UNITY" in a for a in result.manifest["build"]["args"])


def test_unity_failure_falls_back_to_plain(
    cache_root: Path, fixture_copy: Path, py38: pythons.Interpreter
) -> None:
    # Two files that each define the same file-local helper compile alone but clash in one unity TU.
    src = fixture_copy / "python_backend" / "src"
    for name in ("clash_a.cc", "clash_b.cc"):
        (src / name).write_text(
            f"static int helper() {{ return 1; }}\nint {name[:-3]}() {{ return helper(); }}\n"
        )
    cmakelists = fixture_copy / "python_backend" / "CMakeLists.txt"
    text = cmakelists.read_text()
    anchor = "add_executable(triton-python-backend-stub ${PYTHON_BACKEND_STUB_SRCS}"
    assert anchor in text, "fixture layout changed"
    cmakelists.write_text(text.replace(anchor, anchor + " src/clash_a.cc src/clash_b.cc", 1))
    sources.import_sources("24.10", fixture_copy)
    result = _build(py38)
    assert result.manifest["build"]["mode"] == "plain"
    attempts = result.manifest["build"]["attempts"]
    assert attempts[0]["mode"] == "unity" and not attempts[0]["ok"]
    assert _leftovers(cache_root) == []


def test_compile_error_leaves_no_artifact(
    cache_root: Path, fixture_copy: Path, py38: pythons.Interpreter
) -> None:
    victim = sorted((fixture_copy / "python_backend" / "src").glob("*.cc"))[0]
    victim.write_text(victim.read_text() + "\nthis is not C++;\n")
    sources.import_sources("24.10", fixture_copy)
    with pytest.raises(BuildError) as info:
        _build(py38, mode="plain")
    assert "compiling triton-python-backend-stub for Python 3.8" in info.value.message
    assert "error" in info.value.details  # the compiler's own words, from the log tail
    assert stub.list_stubs() == []
    assert _leftovers(cache_root) == []
    assert list((cache_root / "logs").glob("*.log"))


def test_missing_input_names_the_fix(cache_root: Path, py38: pythons.Interpreter) -> None:
    with pytest.raises(SourcesError) as info:
        _build(py38)
    assert "python_backend for r24.10 is not in the source cache" in info.value.message
    assert "stubforge sources fetch --triton 24.10" in info.value.hint


def test_missing_pybind11_version_lists_cached(imported: Path, py38: pythons.Interpreter) -> None:
    with pytest.raises(SourcesError) as info:
        _build(py38, pybind11="2.13.6")
    assert "pybind11 2.13.6 is not in the source cache (cached: 2.10.0, 2.12.0)" in info.value.message
    assert "--pybind11 2.13.6" in info.value.hint


def test_gpu_build_without_cuda_says_no_gpu(
    imported: Path, py38: pythons.Interpreter, tmp_path: Path
) -> None:
    with pytest.raises(BuildError) as info:
        _build(py38, gpu=True, cuda=tmp_path)  # a directory without bin/nvcc
    assert "no nvcc" in info.value.message
    assert "--no-gpu" in info.value.hint
    assert stub.list_stubs() == []


def test_verify_rejects_a_stub_of_another_python(
    imported: Path, py38: pythons.Interpreter, py310: pythons.Interpreter
) -> None:
    built = _build(py310)
    with pytest.raises(BuildError) as info:
        verify.verify(built.stub, py38)
    assert "links libpython3.10.so.1.0, not libpython3.8.so.1.0" in info.value.message


def test_verify_rejects_a_binary_that_fails_the_probe(py38: pythons.Interpreter, tmp_path: Path) -> None:
    # python3.8 itself links libpython3.8 like a stub, but run with no arguments it exits 0, not 1.
    with pytest.raises(BuildError) as info:
        verify.verify(Path(py38.real_path), py38)
    assert "instead of exit 1" in info.value.message


def test_a_binary_that_hangs_on_the_probe_is_an_error(
    py38: pythons.Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs = tmp_path / "triton_python_backend_stub"
    hangs.write_text("#!/bin/sh\nexec sleep 30\n")  # exec: the killed child is the sleeper
    hangs.chmod(0o755)
    monkeypatch.setattr(verify, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(BuildError) as info:
        verify.probe(hangs, py38)
    assert "did not answer the no-argument probe within" in info.value.message
    assert "run it by hand" in info.value.hint


def test_changed_sources_are_not_a_cache_hit(
    cache_root: Path, fixture_copy: Path, py38: pythons.Interpreter
) -> None:
    sources.import_sources("24.10", fixture_copy)
    first = _build(py38)
    # Re-importing identical sources keeps the artifact ...
    sources.import_sources("24.10", fixture_copy)
    assert _build(py38).cache_hit
    # ... a changed python_backend does not, even under the same release and key.
    pb_stub = fixture_copy / "python_backend" / "src" / "pb_stub.cc"
    pb_stub.write_text(pb_stub.read_text() + "\n// patched\n")
    sources.import_sources("24.10", fixture_copy)
    rebuilt = _build(py38)
    assert not rebuilt.cache_hit
    assert rebuilt.key == first.key
    assert rebuilt.manifest["sources_fingerprint"] != first.manifest["sources_fingerprint"]


def test_source_override_builds_from_that_checkout(
    imported: Path, fixture_copy: Path, py38: pythons.Interpreter
) -> None:
    cached = _build(py38)
    pb_stub = fixture_copy / "python_backend" / "src" / "pb_stub.cc"
    pb_stub.write_text(pb_stub.read_text() + "\n// local change\n")
    local = _build(py38, source=fixture_copy / "python_backend")
    assert not local.cache_hit
    assert local.manifest["sources"]["python_backend"]["origin"].startswith("--source ")
    assert local.manifest["sources_fingerprint"] != cached.manifest["sources_fingerprint"]
