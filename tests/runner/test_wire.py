"""What a Triton client sees, from the runner: error texts and codes, decoupled edges, cancellation,
rescheduling and `run --json` (examples/wire; tests/e2e/test_wire.py compares the same with tritonserver)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stubforge.runner import api as runner
from stubforge.runner import kserve
from stubforge.runner.launcher.stub import ModelError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wire"
TWO = {"INPUT0": np.array([1.0], np.float32), "INPUT1": np.array([2.0], np.float32)}


@pytest.fixture(scope="module")
def repo(envs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wire") / "models"
    shutil.copytree(EXAMPLES, root)
    for config in root.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(
                f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{envs["3.8"]}" }} }}\n'
            )
    return root


def add_model(repo: Path, name: str, source: str, config: str) -> Path:
    """A model written by the test, next to the examples (with their env)."""
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(textwrap.dedent(source))
    env = next(repo.glob("*/config.pbtxt")).read_text().splitlines()[-1]
    (model / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n{config}\n{env}\n')
    return model


def test_execute_exception_has_tritons_layout(repo: Path) -> None:
    path = repo / "raise_in_execute" / "1" / "model.py"
    with runner.load(repo / "raise_in_execute") as model, pytest.raises(ModelError) as caught:
        model.infer(TWO)
    assert caught.value.status.message == (
        "Failed to process the request(s) for model 'raise_in_execute_0_0', message: ValueError: boom 1\n\nAt:\n"
        f"  {path}(5): helper\n  {path}(10): execute\n"
    )
    assert caught.value.status.code == "INTERNAL" and caught.value.status.http_status == 500
    assert "ValueError: boom 1" in caught.value.message and "Traceback" in caught.value.details


def test_initialize_exception_is_a_load_failure(repo: Path) -> None:
    path = repo / "init_fails" / "1" / "model.py"
    with pytest.raises(ModelError) as caught:
        runner.load(repo / "init_fails")
    assert caught.value.status.message == (
        "load failed for model 'init_fails': version 1 is at UNAVAILABLE state: Internal: RuntimeError: cannot "
        f"start\n\nAt:\n  {path}(6): initialize\n;\n"
    )


@pytest.mark.parametrize(
    ("code", "http", "grpc"),
    [
        ("UNKNOWN", 400, "UNKNOWN"),
        ("INTERNAL", 500, "INTERNAL"),
        ("NOT_FOUND", 404, "NOT_FOUND"),
        ("INVALID_ARG", 400, "INVALID_ARGUMENT"),
        ("UNAVAILABLE", 503, "UNAVAILABLE"),
        ("UNSUPPORTED", 501, "UNIMPLEMENTED"),
        ("ALREADY_EXISTS", 400, "ALREADY_EXISTS"),
        ("CANCELLED", 400, "CANCELLED"),
    ],
)
def test_response_error_code_reaches_the_caller(repo: Path, code: str, http: int, grpc: str) -> None:
    with runner.load(repo / "error_codes") as model, pytest.raises(ModelError) as caught:
        model.infer({"CODE": np.array([code.encode()], dtype=np.object_)})
    status = caught.value.status
    assert (status.code, status.message, status.http_status, status.grpc_status) == (
        code,
        f"error code: {code}",
        http,
        grpc,
    )


def test_non_decoupled_sender_one_response_and_two(repo: Path) -> None:
    with runner.load(repo / "sender_single") as model:
        out = model.infer({"INPUT0": np.array([3.0], np.float32), "INPUT1": np.array([4.0], np.float32)})
        assert out["OUTPUT0"].tolist() == [12.0]
    with runner.load(repo / "two_responses") as model, pytest.raises(ModelError) as caught:
        model.infer(TWO)
    assert caught.value.status.message == "expected a single response, got 2"
    assert caught.value.status.code == "INTERNAL"


def test_exception_after_final_flag_only_logged(repo: Path) -> None:
    with runner.load(repo / "after_final") as model:
        items = list(model.stream(TWO))
        assert [(list(i.outputs), i.final, i.error) for i in items] == [
            (["OUTPUT0"], False, None),
            ([], True, None),
        ]
        assert model.infer(TWO) == [{"OUTPUT0": np.array([2.0], np.float32)}]
        logged = [r["message"] for r in model.logs if r["level"] == "ERROR"]
        assert logged and logged[0].startswith(
            "Failed to process the request(s) for model 'after_final_0_0', message: RuntimeError: after the final"
        )


def test_exception_before_final_flag_ends_the_stream(repo: Path) -> None:
    with runner.load(repo / "raise_before_final") as model:
        items = list(model.stream(TWO))
        assert [(list(i.outputs), i.final) for i in items] == [(["OUTPUT0"], False), ([], True)]
        error = items[1].error
        assert error is not None and error.code == "INTERNAL"
        assert error.message.startswith(
            "Failed to process the request(s) for model 'raise_before_final_0_0', message: RuntimeError: before"
        )


def test_cancel_is_seen_by_the_model(repo: Path) -> None:
    add_model(
        repo,
        "slow_cancel",
        """
        import time
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    error = pb_utils.TritonError("not cancelled")
                    for _ in range(200):
                        if request.is_cancelled():
                            pb_utils.Logger.log_info("cancelled")
                            error = pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)
                            break
                        time.sleep(0.05)
                    responses.append(pb_utils.InferenceResponse(error=error))
                return responses
        """,
        'max_batch_size: 0\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]',
    )
    with runner.load(repo / "slow_cancel") as model:
        call = model.submit({"X": np.array([1.0], np.float32)})
        time.sleep(0.5)
        call.cancel()
        with pytest.raises(ModelError) as caught:
            call.result(timeout=30)
        assert caught.value.status.code == "CANCELLED"
        assert caught.value.status.message == "Locally cancelled by application!"
        assert any(r["level"] == "INFO" and r["message"] == "cancelled" for r in model.logs)
        # Not cancelled: the model runs to its end and answers.
        with pytest.raises(ModelError, match="not cancelled"):
            model.submit({"X": np.array([1.0], np.float32)}).result(timeout=60)


def test_rescheduled_request_runs_again(repo: Path) -> None:
    add_model(
        repo,
        "resched",
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def initialize(self, args):
                self.calls = 0

            def execute(self, requests):
                self.calls += 1
                responses = []
                for request in requests:
                    if self.calls < 3:
                        request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                        responses.append(None)
                    else:
                        responses.append(pb_utils.InferenceResponse(
                            [pb_utils.Tensor("Y", np.array([self.calls], np.float32))]))
                return responses
        """,
        'max_batch_size: 0\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\ndynamic_batching { }',
    )
    with runner.load(repo / "resched") as model:
        assert model.infer({"X": np.array([1.0], np.float32)})["Y"].tolist() == [3.0]


def test_execute_returning_none_answers_at_once_with_a_warning(repo: Path) -> None:
    add_model(
        repo,
        "returns_none",
        """
        class TritonPythonModel:
            def execute(self, requests):
                return None
        """,
        'max_batch_size: 0\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]',
    )
    with runner.load(repo / "returns_none") as model:
        with (
            pytest.warns(RuntimeWarning, match="waiting forever"),
            pytest.raises(ModelError, match="forever"),
        ):
            model.infer({"X": np.array([1.0], np.float32)})
        assert any(r["level"] == "WARNING" and "waiting forever" in r["message"] for r in model.logs)


def _run_json(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stubforge", "run", *args, "--json"],
        capture_output=True,
        timeout=300,
        check=False,
    )


def test_run_json_is_tritons_http_body(repo: Path) -> None:
    proc = _run_json(str(repo / "wire_types"), "--input", "IN=[1,2,3]")
    assert proc.returncode == 0, proc.stderr
    body, _, facts = proc.stdout.rstrip(b"\n").partition(b',"stubforge":')
    expected = kserve.dumps(
        {
            "model_name": "wire_types",
            "model_version": "1",
            "outputs": [
                {
                    "name": "S",
                    "datatype": "BYTES",
                    "shape": [5],
                    "data": [b"TRITON", b"\xff\xfe\x00x", '\u00e9"\\/\n\t\x01\x7f'.encode(), b"", b"6"],
                }
            ],
        }
    )
    assert body.startswith(expected[: expected.index(b"]}]")])
    assert b'"data":["TRITON","\xff\xfe\\u0000x","\xc3\xa9\\"\\\\/\\n\\t\\u0001\x7f","","6"]' in body
    assert (
        b'"data":[1.5,0.10000000149011612,1.0000000116860974e-7,10000000272564224.0,-0.0,123456792.0,' in body
    )
    assert b"0.000009999999747378752,Infinity,NaN,6.0]" in body
    assert b'"data":[0.1,1e22,1e-7,5e-324,1e100,-2.5,1.5]' in body
    assert b'"data":[true,false,true]' in body and b'"shape":[2,2],"data":[1,-2,1099511627776,6]' in body
    report = json.loads(facts[:-1])
    assert report["model"] == "wire_types" and report["python"].startswith("3.8.")


def test_run_json_errors_and_streams(repo: Path) -> None:
    proc = _run_json(str(repo / "error_codes"), "--input", 'CODE=["NOT_FOUND"]')
    assert proc.returncode == 2
    assert proc.stdout.startswith(b'{"error":"error code: NOT_FOUND","stubforge":{')
    proc = _run_json(str(repo / "init_fails"))
    assert proc.returncode == 2 and proc.stdout.startswith(b'{"error":"load failed for model \'init_fails\'')
    proc = _run_json(str(repo / "after_final"), "--input", "INPUT0=[1]", "--input", "INPUT1=[2]")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        b'{"responses":[{"model_name":"after_final","model_version":"1","outputs":[{"name":"OUTPUT0",'
        b'"datatype":"FP32","shape":[1],"data":[2.0]}],"parameters":{"triton_final_response":false}},'
        b'{"model_name":"after_final","model_version":"1","outputs":[],"parameters":{"triton_final_response":true}}]'
    )
