"""The same models in stubforge's runner and in tritonserver 2.51 (r24.10): identical outputs.

examples/fidelity holds our own models for what python_backend's examples show: add_sub, auto_complete, BLS
(sync and async) and decoupled (repeat, square); and for what the runner once got wrong: a BLS callee named by a
BYTES tensor with parameters (bls_by_name, params), decoupled BLS (bls_decoupled), BLS from a decoupled model's
thread after execute() returned (bls_thread), Logger levels (logger), a model
without config.pbtxt (no_config), a Python-based backend (pybackend, examples/fidelity_backends/pyback), and a
requested output the model lacks. Both sides use the same Python 3.8 directory env (no_config, which has no
config to name one, gets its site-packages through PYTHONPATH on both sides).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.runner.requests import InferenceError
from stubforge.server.verify import tritonserver as server_mod
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fidelity"
BACKENDS = EXAMPLES.parent / "fidelity_backends"
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
    "params": [{"INPUT0": A}],
    "bls_by_name": [{"MODEL": np.array([b"params"], dtype=np.object_), "INPUT0": A}],
    "bls_decoupled": [{"N": np.array([n], dtype=np.int32)} for n in (0, 3)],
    "logger": [{"IN": np.array([1], dtype=np.int32)}],
    "no_config": [{"X": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)}],
    "pybackend": [{"IN": A}],
    "bls_thread": [{"INPUT0": A, "INPUT1": B}],
}
# Parameters a client sends with a request (to the model `params`), and an output nobody declared (add_sub).
CLIENT_PARAMETERS = {"alpha": 3, "beta": "x y", "gamma": False}
MISSING_OUTPUT = "NOPE"
DECOUPLED = {"repeat", "square", "bls_thread"}
TRITON_TYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.object_): "BYTES",
}


@pytest.fixture(scope="module")
def fidelity(world: World) -> dict[str, Path]:
    env = world.root / "fidelity-env38"
    if not env.is_dir():
        world.stubforge("pack-env", "--python", "3.8", "--dir", str(env), "-q")
    repo = world.root / "fidelity"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(EXAMPLES, repo)
    for config in repo.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    backends = world.root / "fidelity-backends"
    shutil.rmtree(backends, ignore_errors=True)
    shutil.copytree(world.server_root / "backends", backends)
    shutil.copytree(BACKENDS / "pyback", backends / "pyback")
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    return {
        "repo": repo,
        "backends": backends,
        "site_packages": next(env.glob("lib/python3.8/site-packages")),
    }


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
        # no_config has no config to name an env: the stock stub's Python 3.8 finds numpy through PYTHONPATH.
        world.env(LD_LIBRARY_PATH=world.ld_with_python38, PYTHONPATH=str(fidelity["site_packages"])),
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
        result = client.infer("params", _grpc_inputs(grpcclient, {"INPUT0": A}), parameters=CLIENT_PARAMETERS)
        results["client parameters"] = [_parameters(result.as_numpy("PARAMS"))]
        try:
            client.infer(
                "add_sub",
                _grpc_inputs(grpcclient, {"INPUT0": A, "INPUT1": B}),
                outputs=[grpcclient.InferRequestedOutput(MISSING_OUTPUT)],
            )
        except Exception as exc:  # tritonclient's InferenceServerException
            results["missing output"] = [exc.message()]  # type: ignore[attr-defined]
    finally:
        server.stop()
        server.cleanup()
    # The logger model's records in the server log: severity letter and message, in order.
    log = (world.root / "fidelity-server.log").read_text(errors="replace")
    results["logger records"] = [
        m.group(1, 2)
        for m in re.finditer(r'^([IWE])\d{4} [^\]]*\] "?(fidelity-logger [^"\n]*)"?$', log, re.M)
    ]
    return results


def _from_runner(
    world: World, fidelity: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[Any]]:
    monkeypatch.setenv("STUBFORGE_CACHE", str(world.cache))
    monkeypatch.setenv("PYTHONPATH", str(fidelity["site_packages"]))
    results: dict[str, list[Any]] = {}
    for name, cases in CASES.items():
        with runner.load(fidelity["repo"] / name, backends=fidelity["backends"]) as model:
            results[name] = [model.infer(inputs) for inputs in cases]
            if name == "params":
                answer = model.infer({"INPUT0": A}, parameters=CLIENT_PARAMETERS)
                results["client parameters"] = [_parameters(answer["PARAMS"])]
            if name == "logger":
                # Triton's log letter per level: VERBOSE is written as I (shown with --log-verbose).
                letter = {"INFO": "I", "VERBOSE": "I", "WARNING": "W", "ERROR": "E"}
                results["logger records"] = [(letter[r["level"]], r["message"]) for r in model.logs]
            if name == "add_sub":
                with pytest.raises(InferenceError) as refused:
                    model.infer({"INPUT0": A, "INPUT1": B}, [MISSING_OUTPUT])
                results["missing output"] = [refused.value.message]
    return results


def _parameters(params: np.ndarray) -> str:
    """The parameters a client request reached the model with: compact JSON, compared without member order (gRPC
    carries them in a protobuf map, so the server's order is not the client's)."""
    text = params[0].decode()
    return json.dumps(json.loads(text), sort_keys=True) + (" (compact)" if ", " not in text else " (spaced)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (str, tuple)):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_runner_and_tritonserver_answer_identically(
    world: World, fidelity: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    triton = _from_triton(world, fidelity)
    runner = _from_runner(world, fidelity, monkeypatch)
    assert triton.keys() == runner.keys()
    for name in triton:
        assert _same(runner[name], triton[name]), (
            f"{name}: runner {runner[name]!r} != triton {triton[name]!r}"
        )
    # Sanity: the comparison saw real answers, not two empty lists.
    assert [len(s) for s in triton["repeat"]] == [4, 0] and [len(s) for s in triton["square"]] == [0, 1, 3]
    assert np.array_equal(triton["bls_sync"][0]["SUM"], A + B)
    assert len(triton["logger records"]) == 7
    assert triton["missing output"] == ["unexpected inference output 'NOPE' for model 'add_sub'"]
    assert triton["bls_by_name"][0]["PARAMS"][0] != b"{}"  # the callee saw the caller's parameters
    assert os.path.isdir(fidelity["repo"])
