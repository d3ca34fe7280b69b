"""examples/wire/cancellable and examples/wire/reschedule in tritonserver 2.51 and in stubforge's runner: a client's
cancel reaches the model's request.is_cancelled() and the client gets CANCELLED; a rescheduled request runs
again and is answered once."""

from __future__ import annotations

import queue
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.runner.launcher.stub import ModelError
from stubforge.server.verify import tritonserver as server_mod
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wire"
MODELS = ["cancellable", "reschedule"]
INPUT = {"INPUT0": np.array([1.0], np.float32)}
SAW_CANCEL = "cancellable: saw is_cancelled()"
CANCEL_AFTER_S = 0.5


@pytest.fixture(scope="module")
def repo(world: World) -> dict[str, Path]:
    env = world.root / "wire-env38"
    if not env.exists():
        world.stubforge("pack-env", "--python", "3.8", "--dir", str(env), "-q")
    models = world.root / "cancel-reschedule"
    models.mkdir()
    for name in MODELS:
        shutil.copytree(EXAMPLES / name, models / name)
        with (models / name / "config.pbtxt").open("a") as fh:
            fh.write(f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    backends = world.root / "cancel-backends"
    shutil.copytree(world.server_root / "backends", backends)
    shutil.copy2(world.wheel_stub("3.8"), backends / "python" / "triton_python_backend_stub")
    return {"repo": models, "backends": backends}


def _inputs(grpcclient: Any) -> list[Any]:
    tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(INPUT["INPUT0"])
    return [tensor]


def _wait_for_log(server: Any, offset: int, text: str, timeout: float = 20.0) -> bool:
    """The stub's Logger records reach the server's log through a queue: they may arrive after the response."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log_since(offset):
            return True
        time.sleep(0.1)
    return text in server.log_since(offset)


def test_cancel_and_reschedule_as_tritonserver_does(world: World, repo: dict[str, Path]) -> None:
    import tritonclient.grpc as grpcclient

    install = server_mod.from_binary(world.server_root / "bin" / "tritonserver")
    server = server_mod.RunningServer(
        install, repo["repo"], repo["backends"], world.root / "cancel-server.log", world.env(), ["python"]
    )
    try:
        server.wait_live(60)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for name in MODELS:
            client.load_model(name)

        offset = server.log_offset()
        answers: queue.Queue = queue.Queue()
        call = client.async_infer(
            "cancellable", _inputs(grpcclient), callback=lambda result, error: answers.put((result, error))
        )
        time.sleep(CANCEL_AFTER_S)
        call.cancel()
        result, error = answers.get(timeout=60)
        server_saw_cancel = _wait_for_log(server, offset, SAW_CANCEL)

        # START without END: with both flags on one request tritonserver frees the sequence slot before the
        # rescheduled run ("must specify the START flag on the first request of the sequence") and never answers.
        answer = client.infer(
            "reschedule", _inputs(grpcclient), sequence_id=42, sequence_start=True, client_timeout=60
        )
        server_runs = answer.as_numpy("RUNS").tolist()
    finally:
        server.stop()
        server.cleanup()

    assert result is None and error is not None
    assert error.status() == "StatusCode.CANCELLED"
    assert error.message() == "Locally cancelled by application!"
    assert server_saw_cancel, "tritonserver's model never saw request.is_cancelled()"
    assert server_runs == [2]

    with runner.load(repo["repo"] / "cancellable") as model:
        ours = model.submit(INPUT)
        time.sleep(CANCEL_AFTER_S)
        ours.cancel()
        with pytest.raises(ModelError) as caught:
            ours.result(timeout=60)
        assert caught.value.status is not None
        assert caught.value.status.grpc_status == "CANCELLED"
        assert caught.value.status.message == error.message()
        assert [(r["level"], r["message"]) for r in model.logs] == [("INFO", SAW_CANCEL)]

    with runner.load(repo["repo"] / "reschedule") as model:
        assert model.infer(INPUT)["RUNS"].tolist() == server_runs
