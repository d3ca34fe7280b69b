"""The triton_python_backend_utils API in the runner: auto_complete_config, type helpers, Logger, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from stubforge import harness
from stubforge.launcher.stub import ModelError
from stubforge.validate import InferenceError
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
    with harness.load(model_dir, backend_config=CONFIG) as model:
        assert (
            model.deployment.config["max_batch_size"] == 8 and "dynamic_batching" in model.deployment.config
        )
        out = model.infer({"INPUT0": a, "INPUT1": a})
        assert out["OUTPUT0"].tolist() == (a * 2).tolist() and out["MAXBATCH"].tolist() == [8]
        with pytest.raises(InferenceError, match="batch-size must be <= 8 for 'auto'"):
            model.infer({"INPUT0": np.ones((9, 4), np.float32), "INPUT1": np.ones((9, 4), np.float32)})
    # tritonserver --disable-auto-complete-config: the config stays as written, so the inputs are unknown.
    model = harness.load(model_dir, backend_config=CONFIG, auto_complete=False)
    try:
        with pytest.raises(InferenceError, match="unexpected inference input 'INPUT0' for model 'auto'"):
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
        harness.load(model_dir, backend_config=CONFIG)


TOOLS = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
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
    with harness.load(model, backend_config=CONFIG) as loaded:
        levels = [(r["level"], r["message"]) for r in loaded.logs]
        assert levels == [("WARNING", "warned"), ("ERROR", "failed once"), ("INFO", "info by default")]
        out = loaded.infer({"X": np.array([1.0, 2.5], np.float32)})
        assert out["VIA_DLPACK"].tolist() == [2.0, 5.0]
        assert out["MODEL_DIR"].tolist() == [str(model).encode()]
        assert out["TYPES"].tolist() == [11, 13]  # TRITONSERVER_TYPE_FP32, TRITONSERVER_TYPE_BYTES
        with pytest.raises(ModelError, match="the response carries an error: negative input"):
            loaded.infer({"X": np.array([-1.0], np.float32)})
