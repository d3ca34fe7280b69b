"""The triton_python_backend_utils API in the runner: auto_complete_config, type helpers, Logger, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.runner.launcher.stub import ModelError
from stubforge.runner.requests import InferenceError
from tests.runner.conftest import PREFIX

pytestmark = pytest.mark.slow
CONFIG = {"shm-region-prefix-name": PREFIX}

AUTO = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        auto_complete_model_config.add_input({"name": "INPUT1", "data_type": "TYPE_FP32", "dims": [4]})
        auto_complete_model_config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        auto_complete_model_config.set_max_batch_size(8)
        auto_complete_model_config.set_dynamic_batching()
        CONFLICT
        return auto_complete_model_config

    def initialize(self, args):
        import json
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            spec = pb_utils.get_output_config_by_name(self.config, "OUTPUT0")
            dtype = pb_utils.triton_string_to_numpy(spec["data_type"])
            batch = np.array([self.config["max_batch_size"]], dtype=np.int32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (a + b).astype(dtype)),
                                                   pb_utils.Tensor("MAXBATCH", batch)]))
        return out
"""


def auto_model(root: Path, env: Path, conflict: str = "pass") -> Path:
    model = root / "auto"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(textwrap.dedent(AUTO.replace("CONFLICT", conflict)))
    (model / "config.pbtxt").write_text(
        f'backend: "python"\nparameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    )
    return model


def test_auto_complete_config_completes_before_initialize(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = auto_model(tmp_path, envs["3.10"])
    a = np.ones((2, 4), np.float32)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        assert (
            model.deployment.config["max_batch_size"] == 8 and "dynamic_batching" in model.deployment.config
        )
        out = model.infer({"INPUT0": a, "INPUT1": a})
        assert out["OUTPUT0"].tolist() == (a * 2).tolist() and out["MAXBATCH"].tolist() == [8]
        with pytest.raises(InferenceError, match="batch-size must be <= 8 for 'auto'"):
            model.infer({"INPUT0": np.ones((9, 4), np.float32), "INPUT1": np.ones((9, 4), np.float32)})
    # tritonserver --disable-auto-complete-config: the config stays as written, with no inputs (Triton counts first).
    model = runner.load(model_dir, backend_config=CONFIG, auto_complete=False)
    try:
        with pytest.raises(InferenceError, match="expected 0 inputs but got 2 inputs for model 'auto'"):
            model.infer({"INPUT0": a, "INPUT1": a})
    finally:
        model.close()


def test_auto_complete_conflicts_fail_the_load(envs: dict[str, Path], tmp_path: Path) -> None:
    conflict = (
        'auto_complete_model_config.add_input({"name": "INPUT0", "data_type": "TYPE_INT8", "dims": [4]})'
    )
    model_dir = auto_model(tmp_path, envs["3.8"], conflict)
    with pytest.raises(
        ModelError, match="ValueError: unable to load model 'auto', configuration expects datatype"
    ):
        runner.load(model_dir, backend_config=CONFIG)


TOOLS = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        print("hello from initialize")
        pb_utils.Logger.log_warn("warned")
        pb_utils.Logger.log_error("failed once")
        pb_utils.Logger.log("info by default")

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X")
            shared = pb_utils.Tensor.from_dlpack("VIA_DLPACK", x.to_dlpack())
            model_dir = np.array([pb_utils.get_model_dir().encode()], dtype=np.object_)
            types = np.array([x.triton_dtype(), pb_utils.numpy_to_triton_type(np.object_)], dtype=np.int32)
            if float(x.as_numpy().sum()) < 0:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("negative input")))
                continue
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("VIA_DLPACK", shared.as_numpy() * 2),
                pb_utils.Tensor("MODEL_DIR", model_dir),
                pb_utils.Tensor("TYPES", types),
            ]))
        return out
"""


def test_dlpack_model_dir_logger_levels_and_error_responses(envs: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "tools"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(textwrap.dedent(TOOLS))
    (model / "config.pbtxt").write_text(
        'backend: "python"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{envs["3.10"]}" }} }}\n'
    )
    with runner.load(model, backend_config=CONFIG) as loaded:
        assert (
            "hello from initialize" in loaded.output()
        )  # print() reaches the caller, as it reaches Triton's log
        levels = [(r["level"], r["message"]) for r in loaded.logs]
        assert levels == [("WARNING", "warned"), ("ERROR", "failed once"), ("INFO", "info by default")]
        out = loaded.infer({"X": np.array([1.0, 2.5], np.float32)})
        assert out["VIA_DLPACK"].tolist() == [2.0, 5.0]
        assert out["MODEL_DIR"].tolist() == [str(model / "1").encode()]  # the version directory, as in Triton
        assert out["TYPES"].tolist() == [11, 13]  # TRITONSERVER_TYPE_FP32, TRITONSERVER_TYPE_BYTES
        with pytest.raises(ModelError, match="the response carries an error: negative input"):
            loaded.infer({"X": np.array([-1.0], np.float32)})


WHO = """
import os, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.instance = args["model_instance_name"]

    def execute(self, requests):
        time.sleep(SLEEP)
        out = []
        for r in requests:
            x = r.inputs()[0].as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", x * 2),
                pb_utils.Tensor("PID", np.array([os.getpid()], dtype=np.int64)),
                pb_utils.Tensor("REQUESTS", np.array([len(requests)], dtype=np.int32)),
                pb_utils.Tensor("INSTANCE", np.array([self.instance.encode()], dtype=np.object_)),
            ]))
        return out
"""


def who_model(root: Path, env: Path, extra: str, sleep: float, max_batch: int = 0) -> Path:
    model = root / "who"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(textwrap.dedent(WHO.replace("SLEEP", str(sleep))))
    (model / "config.pbtxt").write_text(
        f'name: "who"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        # Requested outputs must be declared, as in Triton (the config needs them only for that).
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] },\n'
        '  { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]\n'
        + extra
        + f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    )
    return model


def _concurrently(model: runner.Model, payloads: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(lambda x: model.infer({"X": x}), payloads))


def test_instance_group_count_runs_requests_side_by_side(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = who_model(tmp_path, envs["3.10"], "instance_group [ { kind: KIND_CPU count: 2 } ]\n", 0.5)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        assert len(model.pids) == 2
        results = _concurrently(model, [np.full(3, i, np.float32) for i in range(4)])
        assert [r["Y"].tolist() for r in results] == [[2.0 * i] * 3 for i in range(4)]
        assert {int(r["PID"][0]) for r in results} == set(model.pids)
        assert {r["INSTANCE"][0] for r in results} == {b"who_0_0", b"who_0_1"}
        assert all(int(r["REQUESTS"][0]) == 1 for r in results)  # no batching configured


def test_dynamic_batching_gathers_concurrent_requests(envs: dict[str, Path], tmp_path: Path) -> None:
    extra = "dynamic_batching { max_queue_delay_microseconds: 300000 }\n"
    model_dir = who_model(tmp_path, envs["3.8"], extra, 0.0, max_batch=4)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        results = _concurrently(model, [np.full((1, 2), i, np.float32) for i in range(6)])
        assert [r["Y"].tolist() for r in results] == [[[2.0 * i] * 2] for i in range(6)]
        sizes = sorted(int(r["REQUESTS"][0]) for r in results)
        assert max(sizes) > 1 and max(sizes) <= 4  # gathered, never past max_batch_size
        with pytest.raises(
            InferenceError, match="batch-size must be <= 4"
        ):  # checked before it joins a batch
            model.infer({"X": np.ones((5, 2), np.float32)})


FLAKY_STREAM = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.calls = 0
        params = json.loads(args["model_config"])["parameters"]
        self.label = params["label"]["string_value"]

    def execute(self, requests):
        for request in requests:
            self.calls += 1
            n = int(request.inputs()[0].as_numpy()[0])
            sender = request.get_response_sender()
            if n < 0:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("negative")))
            for i in range(max(n, 0)):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", np.array([n, self.calls, i], dtype=np.int64)),
                    pb_utils.Tensor("LABEL", np.array([type(self.label).__name__ + ":" + self.label], dtype=object)),
                ]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def test_stream_errors_and_early_stops_leave_the_instance_in_step(
    envs: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / "flaky"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(textwrap.dedent(FLAKY_STREAM))
    (model / "config.pbtxt").write_text(
        'backend: "python"\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'parameters: { key: "label" value: { string_value: "42" } }\n'
        f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{envs["3.8"]}" }} }}\n'
    )
    n = lambda v: {"N": np.array([v], dtype=np.int32)}  # noqa: E731
    with runner.load(model, backend_config=CONFIG) as loaded:
        with pytest.raises(ModelError, match="a response carries an error: negative"):
            loaded.infer(n(-1))
        first = loaded.infer(n(2))
        assert [r["OUT"].tolist() for r in first] == [
            [2, 2, 0],
            [2, 2, 1],
        ]  # the second call, answered in step
        assert first[0]["LABEL"].tolist() == [b"str:42"]  # a string parameter stays a string, as in Triton
        stream = loaded.infer_stream(n(3))
        assert next(stream)["OUT"].tolist() == [3, 3, 0]
        stream.close()  # stop listening early: the rest of the stream is still answered
        assert [r["OUT"].tolist() for r in loaded.infer(n(1))] == [[1, 4, 0]]


def test_batched_requests_keep_their_own_requested_outputs(envs: dict[str, Path], tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    extra = "dynamic_batching { max_queue_delay_microseconds: 300000 }\n"
    model_dir = who_model(tmp_path, envs["3.10"], extra, 0.0, max_batch=4)
    x = np.ones((1, 2), np.float32)
    with runner.load(model_dir, backend_config=CONFIG) as model, ThreadPoolExecutor(4) as pool:
        asks = [["Y"], ["PID"], ["Y"], ["PID"]]
        results = list(pool.map(lambda outputs: model.infer({"X": x}, outputs), asks))
    assert [sorted(r) for r in results] == [["Y"], ["PID"], ["Y"], ["PID"]]
