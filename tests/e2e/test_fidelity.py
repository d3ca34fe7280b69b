"""The same models in stubforge's runner and in tritonserver 2.51 (r24.10): identical outputs.

examples/fidelity holds our own models for what python_backend's examples show: add_sub, auto_complete, BLS
(sync and async) and decoupled (repeat, square). Both sides use the same Python 3.8 directory env.
"""

from __future__ import annotations

import os
import queue
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.server.verify import tritonserver as server_mod
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fidelity"
A = np.array([1.5, -2.0, 3.25, 1e-7], dtype=np.float32)
B = np.array([0.5, 4.0, -1.0, 3e38], dtype=np.float32)
CASES: dict[str, list[dict[str, np.ndarray]]] = {
    "add_sub": [{"INPUT0": A, "INPUT1": B}],
    "bls_sync": [{"INPUT0": A, "INPUT1": B}],
    "bls_async": [{"INPUT0": A, "INPUT1": B}],
    "auto_complete": [
        {"TEXT": np.array([[b"abc"], [b"\xc3\xa9t\xc3\xa9"]], dtype=np.object_), "SCALE": np.ones((2, 2))}
    ],
    "repeat": [{"IN": np.array([7, -3, 11, 0], dtype=np.int32)}, {"IN": np.array([], dtype=np.int32)}],
    "square": [{"IN": np.array([n], dtype=np.int32)} for n in (0, 1, 3)],
}
DECOUPLED = {"repeat", "square"}
TRITON_TYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.object_): "BYTES",
}


@pytest.fixture(scope="module")
def fidelity(world: World) -> dict[str, Path]:
    env = world.root / "fidelity-env38"
    world.stubforge("pack-env", "--python", "3.8", "--dir", str(env), "-q")
    repo = world.root / "fidelity"
    shutil.copytree(EXAMPLES, repo)
    for config in repo.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    backends = world.root / "fidelity-backends"
    shutil.copytree(world.server_root / "backends", backends)
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    return {"repo": repo, "backends": backends}


def _grpc_inputs(grpcclient: Any, inputs: dict[str, np.ndarray]) -> list[Any]:
    built = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), TRITON_TYPES[array.dtype])
        tensor.set_data_from_numpy(array)
        built.append(tensor)
    return built


def _from_triton(world: World, fidelity: dict[str, Path]) -> dict[str, list[Any]]:
    import tritonclient.grpc as grpcclient

    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    server = server_mod.RunningServer(
        install,
        fidelity["repo"],
        fidelity["backends"],
        world.root / "fidelity-server.log",
        world.env(),
        ["python"],
    )
    results: dict[str, list[Any]] = {}
    try:
        server.wait_live(60)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for name in CASES:
            client.load_model(name)
        for name, cases in CASES.items():
            results[name] = []
            for inputs in cases:
                if name in DECOUPLED:
                    answers: queue.Queue = queue.Queue()
                    client.start_stream(callback=lambda result, error, q=answers: q.put((result, error)))
                    client.async_stream_infer(
                        name, _grpc_inputs(grpcclient, inputs), enable_empty_final_response=True
                    )
                    stream = []
                    while True:
                        result, error = answers.get(timeout=60)
                        assert error is None, error
                        response = result.get_response()
                        if response.outputs:
                            stream.append({o.name: result.as_numpy(o.name) for o in response.outputs})
                        if response.parameters["triton_final_response"].bool_param:
                            break
                    client.stop_stream()
                    results[name].append(stream)
                else:
                    result = client.infer(name, _grpc_inputs(grpcclient, inputs))
                    outputs = result.get_response().outputs
                    results[name].append({o.name: result.as_numpy(o.name) for o in outputs})
    finally:
        server.stop()
        server.cleanup()
    return results


def _from_runner(
    world: World, fidelity: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[Any]]:
    monkeypatch.setenv("STUBFORGE_CACHE", str(world.cache))
    results: dict[str, list[Any]] = {}
    for name, cases in CASES.items():
        with runner.load(fidelity["repo"] / name) as model:
            results[name] = [model.infer(inputs) for inputs in cases]
    return results


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_runner_and_tritonserver_answer_identically(
    world: World, fidelity: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    triton = _from_triton(world, fidelity)
    runner = _from_runner(world, fidelity, monkeypatch)
    for name in CASES:
        assert _same(runner[name], triton[name]), (
            f"{name}: runner {runner[name]!r} != triton {triton[name]!r}"
        )
    # Sanity: the comparison saw real answers, not two empty lists.
    assert [len(s) for s in triton["repeat"]] == [4, 0] and [len(s) for s in triton["square"]] == [0, 1, 3]
    assert np.array_equal(triton["bls_sync"][0]["SUM"], A + B)
    assert os.path.isdir(fidelity["repo"])
