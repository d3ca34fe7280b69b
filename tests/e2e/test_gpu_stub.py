"""GPU stubs in the real r24.10 server (nvidia-pytriton 0.7.0).

- Without sources or a GPU: the wheel's server, its libtriton_python.so and its stubs are GPU builds (they NEED
  the wheel's renamed CUDA 12.6 runtime), which `list --backends` and the GPU facts read from their ELF.
- `upstream` (real python_backend sources in STUBFORGE_UPSTREAM_SOURCES): stubforge builds the real r24.10 stub
  with --gpu and the machine's CUDA toolkit, and the server loads it on a CPU-only machine and answers. The
  fixture project's GPU stub cannot stand in here: it does not speak the stub's shared-memory protocol.
- `gpu` (skipped without a GPU): a KIND_GPU model receives its input as a CUDA tensor (FORCE_CPU_ONLY_INPUT_TENSORS
  "no"), hands it back through DLPack, and the server reads the CUDA tensor as the output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from stubforge.server.verify import tritonserver as server_mod
from stubforge.stubs import cuda
from stubforge.triton import gpu
from tests.e2e.conftest import World, by_name, write_model

pytestmark = pytest.mark.e2e


def test_the_wheels_server_and_stubs_are_read_as_gpu_builds(world: World, tmp_path: Path) -> None:
    library = gpu.of_binary(world.server_root / "backends" / "python" / "libtriton_python.so")
    assert library is not None and library.gpu and library.cuda_major == 12
    assert library.cudart is not None and library.cudart.startswith("libcudart-")
    stub = gpu.of_binary(world.wheel_stub("3.8"))
    assert stub is not None and stub.gpu
    backends = tmp_path / "backends"
    shutil.copytree(world.server_root / "backends" / "python", backends / "python")
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    [listed] = json.loads(world.stubforge("list", "--backends", str(backends), "--json").stdout)
    assert listed["gpu"].startswith("gpu") and listed["library_gpu"] == f"gpu {library.cudart}"
    assert listed["problems"] == []


def _toolkit() -> cuda.Toolkit:
    try:
        return cuda.find_toolkit()
    except Exception as exc:
        pytest.skip(f"no CUDA toolkit: {exc}")


def _upstream_sources() -> Path:
    value = os.environ.get("STUBFORGE_UPSTREAM_SOURCES")
    if not value:
        pytest.skip("set STUBFORGE_UPSTREAM_SOURCES to a directory of real r24.10 sources to run these")
    return Path(value)


@pytest.fixture(scope="module")
def gpu_stub(world: World) -> Path:
    """The real r24.10 stub for Python 3.8, built by stubforge with --gpu (a few minutes on 2 cores)."""
    sources = _upstream_sources()
    _toolkit()
    world.stubforge("sources", "import", "--triton", "24.10", "--from", str(sources), "-q")
    out = world.stubforge(
        "build", "--python", "3.8", "--triton", "24.10", "--gpu", "--json", "-q", timeout=1800
    )
    [result] = json.loads(out.stdout)
    return Path(result["stub"])


def _gpu_repository(world: World, root: Path, stub: Path, model_source: str | None = None) -> Path:
    repo = root / "repo"
    model = write_model(repo, "gpu38")
    if model_source is not None:
        (model / "1" / "model.py").write_text(model_source)
        (model / "config.pbtxt").write_text(GPU_CONFIG)
    world.stubforge("pack-env", "--python", "3.8", "--model", str(model), "-q")
    world.stubforge("install", "model", str(model), "--stub", str(stub))
    return repo


@pytest.mark.upstream
@pytest.mark.slow
def test_real_server_loads_a_stubforge_gpu_stub_and_answers(
    world: World, gpu_stub: Path, tmp_path: Path
) -> None:
    manifest = json.loads((gpu_stub.parent / "manifest.json").read_text())
    toolkit = _toolkit()
    assert manifest["gpu"] and manifest["cuda"]["version"] == toolkit.version
    assert manifest["cuda"]["cudart"] == toolkit.cudart
    repo = _gpu_repository(world, tmp_path, gpu_stub)
    # The server sees only the wheel's libraries and the toolkit's runtime: the wheel's renamed CUDA 12.6
    # runtime cannot serve a stub that NEEDs libcudart.so.N.
    ld = f"{world.libs}:{toolkit.library_dirs()[0]}"
    proc = world.stubforge(
        "verify",
        str(repo),
        "--pytriton",
        "--json",
        check=False,
        timeout=600,
        env=world.env(LD_LIBRARY_PATH=ld),
    )
    report = json.loads(proc.stdout)
    model = by_name(report)["gpu38"]
    assert proc.returncode == 0 and model["loaded"] and model["response_ok"], json.dumps(report, indent=1)
    assert model["python"] == "3.8"
    check = world.stubforge("check", str(repo), "--json", check=False, env=world.env(LD_LIBRARY_PATH=ld))
    findings = [f for m in json.loads(check.stdout)["models"] for f in m["findings"]]
    assert not [f for f in findings if f["check"] in ("cudart", "gpu-mismatch")], findings


# --- with a GPU ------------------------------------------------------------------------------------------------

GPU_CONFIG = textwrap.dedent(
    """\
    name: "gpu38"
    backend: "python"
    max_batch_size: 0
    input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
    output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
             { name: "WHERE" data_type: TYPE_STRING dims: [ 1 ] } ]
    instance_group [ { kind: KIND_GPU count: 1 gpus: [ 0 ] } ]
    parameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" } }
    """
)

DLPACK_MODEL = textwrap.dedent(
    """\
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
                where = "cpu" if tensor.is_cpu() else "gpu"
                # The CUDA tensor goes back out through DLPack, without a copy to the host.
                out = pb_utils.Tensor.from_dlpack("OUTPUT0", tensor.to_dlpack())
                responses.append(pb_utils.InferenceResponse([
                    out, pb_utils.Tensor("WHERE", np.array([where.encode()], dtype=np.object_))
                ]))
            return responses
    """
)


def _has_gpu() -> bool:
    if not Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is None:
        return False
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0 and "GPU" in proc.stdout


GPU_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient(sys.argv[1])
client.load_model("gpu38")
x = np.arange(1024, dtype=np.float32)
inp = httpclient.InferInput("INPUT0", [1024], "FP32")
inp.set_data_from_numpy(x)
result = client.infer("gpu38", [inp])
print(json.dumps({"same": bool(np.array_equal(result.as_numpy("OUTPUT0"), x)),
                  "where": result.as_numpy("WHERE")[0].decode()}))
"""


@pytest.mark.gpu
@pytest.mark.upstream
@pytest.mark.slow
def test_kind_gpu_model_exchanges_a_cuda_tensor_through_dlpack(
    world: World, gpu_stub: Path, tmp_path: Path
) -> None:
    if not _has_gpu():
        if os.environ.get("STUBFORGE_REQUIRE_GPU"):
            pytest.fail("STUBFORGE_REQUIRE_GPU is set but nvidia-smi -L lists no GPU")
        pytest.skip("no GPU on this machine (nvidia-smi -L lists none)")
    toolkit = _toolkit()
    repo = _gpu_repository(world, tmp_path, gpu_stub, DLPACK_MODEL)
    env = world.env(LD_LIBRARY_PATH=f"{world.libs}:{toolkit.library_dirs()[0]}")
    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    log = tmp_path / "gpu-server.log"
    server = server_mod.RunningServer(install, repo, world.server_root / "backends", log, env, ["python"])
    try:
        server.wait_live(60)
        proc = subprocess.run(
            [str(world.python), "-c", GPU_CLIENT, f"127.0.0.1:{server.http_port}"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
    finally:
        server.stop()
        server.cleanup()
    assert proc.returncode == 0, proc.stderr + log.read_text()[-3000:]
    result = json.loads(proc.stdout)
    # The stub saw the input in GPU memory (CUDA IPC) and the server read the CUDA tensor it handed back.
    assert result == {"same": True, "where": "gpu"}, log.read_text()[-3000:]
