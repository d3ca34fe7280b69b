"""GPU build decisions without a compiler: the architecture lists the sources ask for, what a toolkit compiles,
the override file, the hints, and the GPU facts of binaries' NEEDED names."""

from __future__ import annotations

from pathlib import Path

import pytest

from stubforge.errors import BuildError
from stubforge.server.check.rules import RULES
from stubforge.stubs import cuda, upstream
from stubforge.triton import stubinfo
from tests.conftest import FIXTURE_SOURCES

CUDA13 = (75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121)
CUDA12 = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90)


def toolkit(version: str = "13.0", archs: tuple[int, ...] = CUDA13) -> cuda.Toolkit:
    major = version.split(".")[0]
    return cuda.Toolkit(
        Path("/opt/cuda"), Path("/opt/cuda/bin/nvcc"), version, archs, f"libcudart.so.{major}"
    )


R2410 = cuda.SourceArchitectures(
    ("53", "60-real", "62-real", "70-real", "72-real", "75-real", "80-real", "86-real", "89-real", "90-real"),
    "target property",
    True,
)


def test_nvcc_list_is_parsed() -> None:
    text = "compute_75\ncompute_80\ncompute_90\ncompute_100\ncompute_100a\ncompute_120\n"
    assert cuda.parse_nvcc_architectures(text) == (75, 80, 90, 100, 120)


def test_fixture_sources_ask_like_r2410() -> None:
    found = cuda.source_architectures(FIXTURE_SOURCES / "backend")
    assert found == R2410


def test_r2508_default_list_and_findcuda_era_are_read(tmp_path: Path) -> None:
    new = tmp_path / "new"
    (new / "cmake").mkdir(parents=True)
    (new / "CMakeLists.txt").write_text(
        "add_library(kernel_library_new src/kernel.cu)\n"
        'set_target_properties(kernel_library_new PROPERTIES CUDA_ARCHITECTURES "${CUDA_ARCHITECTURES}")\n'
    )
    (new / "cmake" / "define.cuda_architectures.cmake").write_text(
        'set(CUDA_ARCHITECTURES "75-real;80-real;86-real;89-real;90-real;100-real;120" PARENT_SCOPE)\n'
    )
    found = cuda.source_architectures(new)
    assert found is not None and found.how == "CUDA_ARCH_LIST default" and found.overridable
    assert found.entries[-1] == "120"
    old = tmp_path / "old"
    old.mkdir()
    (old / "CMakeLists.txt").write_text(
        "cuda_add_library(\n  kernel_library_new\n  src/kernel.cu src/kernel.h\n  OPTIONS -arch compute_53\n"
        "  OPTIONS -code compute_53,sm_53,sm_60,sm_75\n)\n"
    )
    found = cuda.source_architectures(old)
    assert found is not None and not found.overridable
    assert found.entries == ("53-real", "60-real", "75-real")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "CMakeLists.txt").write_text("add_library(triton-backend-utils a.cc)\n")
    assert cuda.source_architectures(tmp_path / "cpu") is None


def test_intersection_keeps_a_ptx_entry_when_the_only_one_is_dropped() -> None:
    kept, dropped = cuda.choose_architectures(R2410, toolkit(), None)
    # CUDA 13 dropped 53..72; "53" was the PTX entry, so the newest kept one carries PTX instead.
    assert kept == ["75-real", "80-real", "86-real", "89-real", "90"]
    assert dropped == ["53", "60-real", "62-real", "70-real", "72-real"]
    kept, dropped = cuda.choose_architectures(R2410, toolkit("12.6", CUDA12), None)
    assert kept == list(R2410.entries) and dropped == []


def test_override_is_checked_against_the_toolkit() -> None:
    assert cuda.choose_architectures(R2410, toolkit(), "80-real, 90") == (["80-real", "90"], [])
    assert cuda.choose_architectures(R2410, toolkit(), "8.0 9.0") == (["80", "90"], [])
    with pytest.raises(BuildError) as info:
        cuda.choose_architectures(R2410, toolkit(), "53;80-real")
    assert "CUDA 13.0 (/opt/cuda/bin/nvcc) cannot compile for 53 (--cuda-arch)" in info.value.message
    assert "75, 80" in info.value.hint
    with pytest.raises(BuildError) as info:
        cuda.choose_architectures(R2410, toolkit(), "sm_80")
    assert "sm_80 is not a CUDA architecture" in info.value.message


def test_nothing_supported_is_an_error() -> None:
    old = cuda.SourceArchitectures(("53", "60-real"), "target property", True)
    with pytest.raises(BuildError) as info:
        cuda.choose_architectures(old, toolkit(), None)
    assert "supports none of the architectures the sources ask for (53;60-real)" in info.value.message
    assert "--cuda-arch" in info.value.hint


def test_hook_defers_the_target_property() -> None:
    text = cuda.hook_text(["75-real", "90"])
    assert (
        'cmake_language(DEFER CALL set_target_properties kernel_library_new PROPERTIES CUDA_ARCHITECTURES "75-real;90")'
        in text
    )
    gpu_plan = cuda.GpuPlan(toolkit(), ("75-real", "90"), R2410, ("53",), None)
    args = gpu_plan.configure_args(Path("/b/hook.cmake"))
    assert "-DCMAKE_PROJECT_tritonbackend_INCLUDE=/b/hook.cmake" in args
    assert "-DCMAKE_CUDA_COMPILER=/opt/cuda/bin/nvcc" in args
    assert gpu_plan.to_manifest()["cudart"] == "libcudart.so.13"


def test_explicit_toolkit_without_nvcc(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        cuda.find_toolkit(tmp_path)
    assert f"--cuda {tmp_path}: no nvcc at {tmp_path}/bin/nvcc" in info.value.message
    assert "bin/nvcc" in info.value.hint


def test_hints_name_the_real_cause() -> None:
    gpu_plan = cuda.GpuPlan(toolkit(), ("75-real",), R2410, (), None)
    hint = upstream.cuda_hint("nvcc fatal   : Unsupported gpu architecture 'compute_53'", gpu_plan)
    assert "CUDA 13.0 (/opt/cuda/bin/nvcc) cannot compile for compute_53" in hint
    assert "--cuda-arch" in hint and "75, 80" in hint
    assert "--cuda PATH" in upstream.cuda_hint("Could NOT find CUDAToolkit (missing: ...)", None)
    assert "found by CMake" not in upstream.cuda_hint("CUDA something", gpu_plan)


def test_cudart_names() -> None:
    assert stubinfo.cudart_major("libcudart.so.13") == 13
    assert stubinfo.cudart_major("libcudart-09529672.so.12.6.77") == 12
    assert stubinfo.cudart_major("libcudadevrt.a") is None
    assert stubinfo.cudart_of(["libpython3.8.so.1.0", "libcudart.so.12"]) == "libcudart.so.12"
    assert stubinfo.cudart_of(["libpython3.8.so.1.0"]) is None


def test_manifest_facts_and_listing_text() -> None:
    manifest = {
        "gpu": True,
        "cuda": {"version": "13.0", "architectures": ["75-real", "90"], "cudart": "libcudart.so.13"},
    }
    facts = stubinfo.ManifestFacts.of(manifest)
    assert (facts.cuda, facts.cuda_architectures, facts.cudart) == (
        "13.0",
        ("75-real", "90"),
        "libcudart.so.13",
    )
    assert stubinfo.gpu_summary(manifest) == "gpu cuda 13.0 [75-real;90] libcudart.so.13"
    imported = {"gpu": True, "elf": {"needed": ["libcudart-09529672.so.12.6.77"]}}
    assert stubinfo.gpu_summary(imported) == "gpu libcudart-09529672.so.12.6.77"
    assert stubinfo.gpu_summary({"gpu": False}) == "cpu"


def test_gpu_rules_are_registered() -> None:
    assert RULES["gpu-mismatch"].topic == "gpu"
    assert RULES["cudart"].levels == ("ERROR",)


def test_verify_explains_a_missing_cuda_runtime() -> None:
    from stubforge.server.verify import explain

    text = (
        "E1130 stub_launcher.cc:355] triton_python_backend_stub: error while loading shared libraries: "
        "libcudart.so.13: cannot open shared object file: No such file or directory"
    )
    hint = explain.explain(text)
    assert hint is not None
    assert hint.startswith("the GPU stub cannot find libcudart.so.13 (CUDA 13's runtime")
    assert "LD_LIBRARY_PATH" in hint and "--cuda PATH" in hint


def test_gpu_cross_builds_are_refused_with_a_way_forward() -> None:
    import platform

    from stubforge.core.targets import Target
    from stubforge.stubs import build

    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    options = build.BuildOptions(gpu=True, target=Target(other))
    with pytest.raises(cuda.CudaOptionError) as info:
        build._gpu_plan(options, None)  # type: ignore[arg-type]  # refused before the sources are read
    assert f"a GPU stub for {other} cannot be built on {platform.machine()} yet" in info.value.message
    assert "JetPack" in info.value.hint
