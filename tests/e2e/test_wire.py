"""examples/wire in stubforge's runner and in tritonserver 2.51: the same error texts and codes, the same streams,
and `stubforge run --json` byte for byte what `curl .../v2/models/<m>/infer` returns."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.server.verify import tritonserver as server_mod
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wire"
TWO = {"INPUT0": np.array([1.0], np.float32), "INPUT1": np.array([2.0], np.float32)}
# (model, `stubforge run --input` arguments, the same request as KServe v2 JSON)
HTTP_CASES = [
    (
        "wire_types",
        ["IN=[1,2,3]"],
        {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}]},
    ),
    (
        "raise_in_execute",
        ["INPUT0=[1]", "INPUT1=[2]"],
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]},
                {"name": "INPUT1", "datatype": "FP32", "shape": [1], "data": [2]},
            ]
        },
    ),
    (
        "error_codes",
        ['CODE=["UNAVAILABLE"]'],
        {"inputs": [{"name": "CODE", "datatype": "BYTES", "shape": [1], "data": ["UNAVAILABLE"]}]},
    ),
    (
        "two_responses",
        ["INPUT0=[1]", "INPUT1=[2]"],
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]},
                {"name": "INPUT1", "datatype": "FP32", "shape": [1], "data": [2]},
            ]
        },
    ),
]
STREAMS = ["after_final", "raise_before_final"]


@pytest.fixture(scope="module")
def wire(world: World) -> dict[str, Path]:
    env = world.root / "wire-env38"
    if not env.exists():
        world.stubforge("pack-env", "--python", "3.8", "--dir", str(env), "-q")
    repo = world.root / "wire"
    shutil.copytree(EXAMPLES, repo)
    for config in repo.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    backends = world.root / "wire-backends"
    shutil.copytree(world.server_root / "backends", backends)
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    return {"repo": repo, "backends": backends}


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _grpc_stream(client: Any, grpcclient: Any, name: str) -> list[tuple[list[str], bool, str | None]]:
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    inputs = []
    for key, array in TWO.items():
        tensor = grpcclient.InferInput(key, [1], "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client.async_stream_infer(name, inputs, enable_empty_final_response=True)
    stream: list[tuple[list[str], bool, str | None]] = []
    while True:
        result, error = answers.get(timeout=60)
        if error is not None:
            stream.append(([], True, str(error.message())))
            break
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        stream.append(([o.name for o in response.outputs], final, None))
        if final:
            break
    client.stop_stream()
    return stream


def test_run_json_diffs_clean_against_the_http_endpoint(world: World, wire: dict[str, Path]) -> None:
    import tritonclient.grpc as grpcclient

    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    server = server_mod.RunningServer(
        install, wire["repo"], wire["backends"], world.root / "wire-server.log", world.env(), ["python"]
    )
    http: dict[str, tuple[int, bytes]] = {}
    streams: dict[str, Any] = {}
    try:
        server.wait_live(60)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for name, _, _ in HTTP_CASES:
            client.load_model(name)
        for name in STREAMS:
            client.load_model(name)
        base = f"http://127.0.0.1:{server.http_port}/v2/models"
        for name, _, body in HTTP_CASES:
            http[name] = _post(f"{base}/{name}/infer", body)
        for name in STREAMS:
            streams[name] = _grpc_stream(client, grpcclient, name)
    finally:
        server.stop()
        server.cleanup()

    env = world.env()
    for name, args, _ in HTTP_CASES:
        command = [sys.executable, "-m", "stubforge", "run", str(wire["repo"] / name), "--json"]
        for arg in args:
            command += ["--input", arg]
        proc = subprocess.run(command, capture_output=True, env=env, timeout=600, check=False)
        ours, _, _facts = proc.stdout.rstrip(b"\n").partition(b',"stubforge":')
        status, theirs = http[name]
        if name == "two_responses":
            # The server writes the first response and then the error into one body; run --json only the error.
            assert theirs.endswith(ours + b"}") and ours == b'{"error":"expected a single response, got 2"'
            continue
        # Triton's body ends in "}"; ours continues with the facts: the same bytes up to there.
        assert ours + b"}" == theirs, f"{name}: run --json\n{ours!r}\ncurl\n{theirs!r}"
        assert (proc.returncode == 0) == (status == 200), (name, proc.returncode, status)

    path = wire["repo"] / "raise_in_execute" / "1" / "model.py"
    assert json.loads(http["raise_in_execute"][1])["error"].endswith(f"  {path}(10): execute\n")
    assert http["error_codes"][0] == 503 and http["two_responses"][0] == 500

    for name in STREAMS:
        with runner.load(wire["repo"] / name) as model:
            ours_stream = [
                (list(i.outputs), i.final, i.error.message if i.error else None) for i in model.stream(TWO)
            ]
        assert ours_stream == streams[name], f"{name}: runner {ours_stream} != triton {streams[name]}"
    assert streams["after_final"] == [(["OUTPUT0"], False, None), ([], True, None)]
