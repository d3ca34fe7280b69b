"""GPU stubs without a GPU: the fixture project's GPU build with the machine's real CUDA toolkit (nvcc compiles
the backend's kernel target, whose sources ask for architectures CUDA 13 dropped), the manifest, the artifact key,
the errors; and the deployment checks on real ELF binaries that link the real libcudart.

The toolkit is found as stubforge finds it (CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda). Only where
none exists are these tests skipped; on CI (CI set) a missing toolkit is a failure, since .ci/run provides one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stubforge.core import cache, elf, pythons
from stubforge.errors import BuildError
from stubforge.server import check as checker
from stubforge.server import install
from stubforge.stubs import build as stub
from stubforge.stubs import cuda
from stubforge.triton import backends as backend_dirs
from stubforge.triton import gpu, libpython
from tests.conftest import run_stub

pytestmark = pytest.mark.slow

NINE_ARGS = [str(i) for i in range(1, 10)]
FIXTURE_LIST = (
    "53",
    "60-real",
    "62-real",
    "70-real",
    "72-real",
    "75-real",
    "80-real",
    "86-real",
    "89-real",
    "90-real",
)


@pytest.fixture(scope="module")
def toolkit() -> cuda.Toolkit:
    try:
        return cuda.find_toolkit()
    except BuildError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a CUDA toolkit (.ci/run installs one): {exc.message}")
        pytest.skip(f"no CUDA toolkit on this machine: {exc.message}")


def _expected(toolkit: cuda.Toolkit) -> list[str]:
    kept = [e for e in FIXTURE_LIST if int(e.split("-")[0]) in toolkit.architectures]
    if len(kept) < len(FIXTURE_LIST) and all(e.endswith("-real") for e in kept):
        kept[-1] = kept[-1][: -len("-real")]
    return kept


def _leftovers(root: Path) -> list[str]:
    left = [p.name for p in (root / "builds").iterdir()] if (root / "builds").is_dir() else []
    if (root / "stubs").is_dir():
        left += [p.name for p in (root / "stubs").iterdir() if p.name.startswith(".")]
    return left


def test_gpu_build_compiles_what_the_toolkit_supports(
    imported: Path, py310: pythons.Interpreter, toolkit: cuda.Toolkit
) -> None:
    result = stub.build_one(py310, stub.BuildOptions(gpu=True))
    expected = _expected(toolkit)
    manifest = json.loads((result.stub.parent / cache.MANIFEST_NAME).read_text())
    assert manifest["gpu"] is True
    record = manifest["cuda"]
    assert record["version"] == toolkit.version
    assert record["architectures"] == expected
    assert record["requested"] == list(FIXTURE_LIST)
    assert record["cudart"] == toolkit.cudart
    assert f"-gpu-cuda{toolkit.major}-" in result.key
    # The real thing: the stub NEEDs the toolkit's runtime, carries device code for exactly those
    # architectures, and its kernel library reports the runtime version when run.
    assert toolkit.cudart in elf.read(result.stub).needed
    code = {f"sm_{e.split('-')[0]}" for e in expected}
    code |= {f"compute_{e}" for e in expected if not e.endswith("-real")}  # a PTX entry
    assert set(gpu.device_code(result.stub)) == code
    major, minor = (int(p) for p in toolkit.version.split("."))
    out = run_stub(result.stub, py310, *NINE_ARGS)
    assert f"cudart={major * 1000 + minor * 10}" in out
    if len(expected) < len(FIXTURE_LIST):
        assert any("cannot compile 53" in w for w in result.warnings)
    # The CPU stub of the same Python is another artifact.
    cpu = stub.build_one(py310, stub.BuildOptions())
    assert cpu.key != result.key and "-cpu-" in cpu.key
    assert json.loads((cpu.stub.parent / cache.MANIFEST_NAME).read_text())["cuda"] is None
    assert "cudart=0" in run_stub(cpu.stub, py310, *NINE_ARGS)
    listing = [a["key"] for a in stub.list_stubs()]
    assert result.key in listing and cpu.key in listing


def test_cuda_arch_override_and_its_errors(
    imported: Path, py310: pythons.Interpreter, toolkit: cuda.Toolkit, tmp_path: Path
) -> None:
    chosen = str(toolkit.architectures[-1])
    result = stub.build_one(py310, stub.BuildOptions(gpu=True, cuda_arch=f"{chosen}-real"))
    manifest = json.loads((result.stub.parent / cache.MANIFEST_NAME).read_text())
    assert manifest["cuda"]["architectures"] == [f"{chosen}-real"]
    assert manifest["cuda"]["override"] == f"{chosen}-real"
    assert gpu.device_code(result.stub) == [f"sm_{chosen}"]
    with pytest.raises(BuildError) as info:
        stub.build_one(py310, stub.BuildOptions(gpu=True, cuda_arch="20-real"))
    assert (
        f"CUDA {toolkit.version}" in info.value.message and "cannot compile for 20-real" in info.value.message
    )
    with pytest.raises(BuildError) as info:
        stub.build_one(py310, stub.BuildOptions(gpu=True, cuda=tmp_path))
    assert "no nvcc at" in info.value.message
    with pytest.raises(BuildError) as info:
        stub.build_one(py310, stub.BuildOptions(cuda_arch="80"))
    assert "add --gpu" in info.value.hint
    assert [a["key"] for a in stub.list_stubs()] == [result.key]
    assert _leftovers(imported) == []
    # From the command line: an error in what was asked for (exit 2), a message and a hint, no traceback.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stubforge",
            "build",
            "--python",
            py310.executable,
            "--gpu",
            "--cuda-arch",
            "sm_80",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: --cuda-arch 'sm_80': sm_80 is not a CUDA architecture" in proc.stderr
    assert "hint: " in proc.stderr and "Traceback" not in proc.stderr


def test_without_the_override_nvcc_fails_and_the_hint_says_why(
    imported: Path, py310: pythons.Interpreter, toolkit: cuda.Toolkit
) -> None:
    if 53 in toolkit.architectures:
        pytest.skip(f"CUDA {toolkit.version} still compiles compute_53: the release's list builds as is")
    # An empty project-include hook (extra CMake options win) leaves the release's own list in place.
    with pytest.raises(BuildError) as info:
        stub.build_one(
            py310,
            stub.BuildOptions(gpu=True, mode="plain", cmake_args=("-DCMAKE_PROJECT_tritonbackend_INCLUDE=",)),
        )
    assert "cannot compile for compute_53" in info.value.hint
    assert "--cuda-arch" in info.value.hint
    assert "found by CMake" not in info.value.hint
    assert stub.list_stubs() == []
    assert _leftovers(imported) == []


# --- deployment checks on real binaries -----------------------------------------------------------------------

MAIN_C = "int main(void) { return 0; }\n"
LIB_C = "int TRITONBACKEND_Initialize(void* b) { (void)b; return 0; }\n"


def _cc(tmp: Path, out: Path, *args: str, shared: bool = False) -> Path:
    src = tmp / ("lib.c" if shared else "main.c")
    src.write_text(LIB_C if shared else MAIN_C)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "gcc",
        *(["-shared", "-fPIC"] if shared else []),
        str(src),
        "-o",
        str(out),
        "-Wl,--no-as-needed",
        *args,
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


def _link_python(py: pythons.Interpreter) -> list[str]:
    assert py.libpython
    return [f"-L{os.path.dirname(py.libpython)}", f"-lpython{py.minor}"]


def _link_cudart(toolkit: cuda.Toolkit) -> list[str]:
    return [f"-L{toolkit.library_dirs()[0]}", f"-l:{toolkit.cudart}"]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory, toolkit: cuda.Toolkit) -> dict[str, Path]:
    """A GPU and a CPU 'stub' (executables linking libpython, the GPU one libcudart too, as the real stubs do)
    and a GPU and a CPU libtriton_python.so."""
    tmp = tmp_path_factory.mktemp("gpu-binaries")
    py = pythons.resolve("3.8")
    return {
        "gpu_stub": _cc(tmp, tmp / "gpu" / "stub", *_link_python(py), *_link_cudart(toolkit)),
        "cpu_stub": _cc(tmp, tmp / "cpu" / "stub", *_link_python(py)),
        "gpu_lib": _cc(tmp, tmp / "gpu" / "libtriton_python.so", *_link_cudart(toolkit), shared=True),
        "cpu_lib": _cc(tmp, tmp / "cpu" / "libtriton_python.so", shared=True),
    }


def _repository(tmp_path: Path, stub_file: Path, library: Path) -> tuple[Path, Path]:
    """backends/python/{libtriton_python.so, stub} and a repository with one env-less Python model."""
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    shutil.copyfile(library, backends / "python" / "libtriton_python.so")
    shutil.copyfile(stub_file, backends / "python" / cache.STUB_NAME)
    os.chmod(backends / "python" / cache.STUB_NAME, 0o755)
    (backends / "python" / "triton_python_backend_utils.py").write_text("# stock utils\n")
    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    (model / "1" / "model.py").write_text(
        textwrap.dedent(
            """\
            class TritonPythonModel:
                def execute(self, requests):
                    return []
            """
        )
    )
    return backends, tmp_path / "repo"


def _findings(repo: Path, backends: Path, rule: str) -> list[checker.Finding]:
    report = checker.check(repo, backends=backends)
    return [f for m in report.models for f in m.findings if f.check == rule]


def test_check_flags_a_gpu_stub_with_a_cpu_library_and_the_reverse(
    tmp_path: Path, binaries: dict[str, Path]
) -> None:
    backends, repo = _repository(tmp_path / "a", binaries["gpu_stub"], binaries["cpu_lib"])
    [found] = _findings(repo, backends, "gpu-mismatch")
    assert found.level == "WARN"
    assert "is a GPU build (CUDA" in found.message and "libtriton_python.so is a CPU build" in found.message
    assert "stubforge build --no-gpu" in found.fix
    backends, repo = _repository(tmp_path / "b", binaries["cpu_stub"], binaries["gpu_lib"])
    [found] = _findings(repo, backends, "gpu-mismatch")
    assert "is a CPU build but" in found.message and "crash the stub" in found.message
    assert "--gpu" in found.fix
    backends, repo = _repository(tmp_path / "c", binaries["gpu_stub"], binaries["gpu_lib"])
    assert _findings(repo, backends, "gpu-mismatch") == []
    [listed] = backend_dirs.list_backends(backends)
    assert listed.gpu is not None and listed.gpu.startswith("gpu")
    assert listed.library_gpu is not None and listed.library_gpu.startswith("gpu libcudart.so.")


def test_check_and_install_say_where_the_cuda_runtime_must_come_from(
    tmp_path: Path, binaries: dict[str, Path], toolkit: cuda.Toolkit, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends, repo = _repository(tmp_path, binaries["gpu_stub"], binaries["gpu_lib"])
    monkeypatch.setenv("LD_LIBRARY_PATH", toolkit.library_dirs()[0])
    assert _findings(repo, backends, "cudart") == []
    # The server's library path without the toolkit, and a system library cache without it (this machine's
    # ldconfig knows the toolkit's lib dir; a server machine often does not).
    monkeypatch.setenv("LD_LIBRARY_PATH", "")
    monkeypatch.setattr(libpython, "_system_libraries", lambda: set())
    [found] = _findings(repo, backends, "cudart")
    assert found.level == "ERROR"
    assert f"nothing provides {toolkit.cudart} to the stub" in found.message
    assert "LD_LIBRARY_PATH" in found.fix and "--cuda PATH" in found.fix
    # verify's check knows the library path of the server it starts (nvidia-pytriton's wheel libs).
    served = checker.check(repo, backends=backends, library_path=(toolkit.library_dirs()[0],))
    assert [f for m in served.models for f in m.findings if f.check == "cudart"] == []
    # install says the same, and names a mismatch with the server's library.
    result = install.install_backend(backends, python=None, stub=binaries["gpu_stub"], name="python_3_8_gpu")
    assert any(f"nothing provides {toolkit.cudart}" in w for w in result.warnings)
    cpu_backends, _ = _repository(tmp_path / "cpu", binaries["cpu_stub"], binaries["cpu_lib"])
    result = install.install_backend(
        cpu_backends, python=None, stub=binaries["gpu_stub"], name="python_3_8_gpu"
    )
    assert any("libtriton_python.so is a CPU build" in w for w in result.warnings)
    # A model env that carries the runtime in lib/ is enough.
    env = tmp_path / "env"
    (env / "lib").mkdir(parents=True)
    shutil.copyfile(Path(toolkit.library_dirs()[0]) / toolkit.cudart, env / "lib" / toolkit.cudart)
    assert _findings(repo, backends, "cudart") != []  # no env yet
    reach = _reach_with_env(repo / "m", backends, env)
    assert reach is not None and reach.found


def _reach_with_env(model: Path, backends: Path, env: Path) -> gpu.CudartReach | None:
    from stubforge.triton import deployment

    resolved = deployment.resolve(model, triton="r24.10", backends=backends)
    assert resolved.stub is not None
    return gpu.locate_cudart(resolved.stub.path, env_has=lambda member: (env / member).exists(), env=env)
