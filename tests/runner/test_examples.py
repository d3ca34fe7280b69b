"""The fidelity example models (examples/fidelity) in the runner: BLS sync and async, decoupled streams,
auto_complete_config, BYTES. tests/e2e/test_fidelity.py runs the same models in tritonserver."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stubforge.errors import RunnerError, StubforgeError
from stubforge.runner import api as runner
from stubforge.runner.requests import InferenceError
from tests.runner.conftest import PREFIX

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fidelity"
CONFIG = {"shm-region-prefix-name": PREFIX}


def copy_repository(target: Path, env: Path) -> Path:
    shutil.copytree(EXAMPLES, target)
    for config in target.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n')
    return target


@pytest.fixture(scope="module")
def repo(envs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("fidelity") / "repo", envs["3.10"])


A = np.array([1.5, -2.0, 3.25], dtype=np.float32)
B = np.array([0.5, 4.0, -1.0], dtype=np.float32)


def test_bls_sync_calls_add_sub_in_its_own_stub(repo: Path) -> None:
    with runner.load(repo / "bls_sync", backend_config=CONFIG) as model:
        out = model.infer({"INPUT0": A, "INPUT1": B})
        assert np.array_equal(out["SUM"], A + B) and out["MISSING_IS_ERROR"].tolist() == [1]
        peer = model._peers["add_sub"]
        assert peer.pid != model.pid


def test_bls_async_gathers_two_calls(repo: Path) -> None:
    with runner.load(repo / "bls_async", backend_config=CONFIG) as model:
        out = model.infer({"INPUT0": A, "INPUT1": B})
    assert np.array_equal(out["DIFF"], A - B) and np.array_equal(out["DIFF_SWAPPED"], B - A)


def test_decoupled_repeat_streams_from_a_thread(repo: Path) -> None:
    with runner.load(repo / "repeat", backend_config=CONFIG) as model:
        responses = list(model.infer_stream({"IN": np.array([7, -3, 11], dtype=np.int32)}))
        assert [r["OUT"].tolist() for r in responses] == [[7], [-3], [11]]
        assert [r["IDX"].tolist() for r in responses] == [[0], [1], [2]]
        assert model.infer({"IN": np.array([], dtype=np.int32)}) == []


def test_decoupled_square_sends_n_responses(repo: Path) -> None:
    with runner.load(repo / "square", backend_config=CONFIG) as model:
        for n in (0, 1, 4):
            responses = model.infer({"IN": np.array([n], dtype=np.int32)})
            assert [r["OUT"].tolist() for r in responses] == [[n]] * n


def test_auto_complete_with_bytes_and_batching(repo: Path) -> None:
    with runner.load(repo / "auto_complete", backend_config=CONFIG) as model:
        out = model.infer(
            {
                "TEXT": np.array([[b"abc"], [b"Triton"]], dtype=np.object_),
                "SCALE": np.ones((2, 2), np.float64),
            }
        )
    assert out["UPPER"].tolist() == [[b"ABC"], [b"TRITON"]]
    assert out["SCALED"].tolist() == [[4.0, 4.0], [4.0, 4.0]]


def test_bls_peer_borrows_the_callers_python(tmp_path: Path) -> None:
    """No stub, no env anywhere (a repository served by one python3): the BLS target runs on the caller's --python."""
    import subprocess

    from tests.conftest import interpreter

    venv = tmp_path / "venv310"
    subprocess.run([interpreter("3.10").executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(venv / "bin" / "python3"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "numpy<2",
        ],
        check=True,
        timeout=600,
    )
    repo = tmp_path / "repo"
    for name in ("bls_sync", "add_sub"):
        shutil.copytree(EXAMPLES / name, repo / name)
    with runner.load(repo / "bls_sync", python=str(venv / "bin" / "python3"), backend_config=CONFIG) as model:
        out = model.infer({"INPUT0": A, "INPUT1": B})
        assert np.array_equal(out["SUM"], A + B)
        peer = model._peers["add_sub"]
        assert peer.deployment.python == "3.10" and "calling model" in peer.deployment.python_source


# --- issue 14: what the runner once got wrong, each against the model tests/e2e/test_fidelity.py compares ---------

BACKENDS = EXAMPLES.parent / "fidelity_backends"
DECOUPLED_BLS_ERROR = (
    "Model square is using the decoupled. The current BLS request call doesn't support models using the decoupled "
    "transaction policy. Please use 'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled "
    "models.'"
)


def test_bls_callee_named_by_a_bytes_tensor_gets_the_parameters(repo: Path) -> None:
    with runner.load(repo / "bls_by_name", backend_config=CONFIG) as model:
        out = model.infer({"MODEL": np.array([b"params"], dtype=np.object_), "INPUT0": A})
    assert np.array_equal(out["ECHO"], A)
    # The callee sees the server's compact JSON, in the caller's order; the caller's own view is json.dumps.
    assert out["PARAMS"].tolist() == ['{"scale":2,"tag":"été \\"q\\"","on":true,"neg":-7}'.encode()]
    assert out["CALLER_PARAMS"].tolist() == [
        b'{"scale": 2, "tag": "\\u00e9t\\u00e9 \\"q\\"", "on": true, "neg": -7}'
    ]
    # Refused before the callee runs: Triton's backend puts the callee's name in front.
    assert out["NOPE_ERROR"].tolist() == [
        b"Model params - Error when running inference: unexpected inference output 'NOPE' for model 'params'"
    ]
    assert out["UNKNOWN_ERROR"].tolist() == [
        b"Model no_such_model - Error when running inference: Failed for execute the inference request. "
        b"Model 'no_such_model' is not ready."
    ]
    assert out["DECOUPLED_ERROR"].tolist() == [
        b"Model square - Error when running inference: " + DECOUPLED_BLS_ERROR.encode()
    ]


def test_client_parameters_and_a_missing_output(repo: Path) -> None:
    with runner.load(repo / "params", backend_config=CONFIG) as model:
        out = model.infer({"INPUT0": A}, parameters={"b": "x", "a": 1, "on": False, "f": 0.5})
        assert out["PARAMS"].tolist() == [b'{"b":"x","a":1,"on":false,"f":0.5}']
        assert model.infer({"INPUT0": A})["PARAMS"].tolist() == [b"{}"]
        with pytest.raises(RunnerError, match="request parameter 'bad': list is not a Triton parameter type"):
            model.infer({"INPUT0": A}, parameters={"bad": [1]})  # type: ignore[dict-item]
        with pytest.raises(InferenceError) as refused:
            model.infer({"INPUT0": A}, ["OUTPUT0", "NOPE"])
    assert refused.value.message == "unexpected inference output 'NOPE' for model 'params'"
    assert "OUTPUT0, PARAMS" in refused.value.hint


def test_decoupled_bls_iterates_every_response_and_the_final_one(repo: Path) -> None:
    with runner.load(repo / "bls_decoupled", backend_config=CONFIG) as model:
        three = model.infer({"N": np.array([3], dtype=np.int32)})
        none = model.infer({"N": np.array([0], dtype=np.int32)})
    # square sends 3 responses, then the final flag alone: an empty 4th; a second pass starts over.
    assert three["COUNTS"].tolist() == [4, 1, 4] and three["VALUES"].tolist() == [3, 3, 3]
    assert none["COUNTS"].tolist() == [1, 1, 1] and none["VALUES"].tolist() == []


def test_bls_from_a_thread_after_execute_returned(repo: Path) -> None:
    with runner.load(repo / "bls_thread", backend_config=CONFIG) as model:
        responses = model.infer({"INPUT0": A, "INPUT1": B})
    assert len(responses) == 1 and np.array_equal(responses[0]["SUM"], A + B)


def test_logger_levels_reach_the_log_with_file_and_line(repo: Path) -> None:
    with runner.load(repo / "logger", backend_config=CONFIG) as model:
        out = model.infer({"IN": np.array([1], dtype=np.int32)})
        logs = list(model.logs)
    assert out["LEVELS"].tolist() == [0, 1, 2, 3]
    assert out["NAMES"].tolist() == [
        b"LogLevel.INFO",
        b"LogLevel.WARNING",
        b"LogLevel.ERROR",
        b"LogLevel.VERBOSE",
    ]
    assert [(r["level"], r["message"]) for r in logs] == [
        ("INFO", "fidelity-logger info"),
        ("WARNING", "fidelity-logger warning"),
        ("ERROR", "fidelity-logger error"),
        ("VERBOSE", "fidelity-logger verbose"),
        ("INFO", "fidelity-logger log_info"),
        ("INFO", "fidelity-logger default level"),
        ("WARNING", "fidelity-logger execute"),
    ]
    assert {r["file"] for r in logs} == {"model.py"} and all(r["line"] > 0 for r in logs)


def test_model_without_config_is_auto_completed(
    repo: Path, envs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not (repo / "no_config" / "config.pbtxt").exists()
    # No config, so no env: the model's Python finds numpy through PYTHONPATH, as in the e2e test.
    monkeypatch.setenv("PYTHONPATH", str(next(envs["3.10"].glob("lib/python3.10/site-packages"))))
    with runner.load(repo / "no_config", python="3.10", backend_config=CONFIG) as model:
        out = model.infer({"X": np.array([[1.0, 2.0]], dtype=np.float32)})
        assert model.deployment.config["dynamic_batching"]["preferred_batch_size"] == [8]
    assert out["Y"].tolist() == [[2.0, 4.0]]
    seen = json.loads(out["CONFIG"][0][0])
    assert seen == {
        "backend": "python",
        "max_batch_size": 8,
        "model_name": "no_config",
        "name": "no_config",
        "preferred_batch_size": [8],
        "version_policy": {"latest": {"num_versions": 1}},
    }


def test_a_directory_without_config_or_model_py_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "1").mkdir(parents=True)
    with pytest.raises(StubforgeError, match=r"no config\.pbtxt at"):
        runner.load(tmp_path / "empty", python="3.10")


def test_python_based_backend_serves_a_model_without_model_py(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not (repo / "pybackend" / "1" / "model.py").exists()
    with runner.load(repo / "pybackend", backends=BACKENDS, python="3.10", backend_config=CONFIG) as model:
        out = model.infer({"IN": A})
    assert np.array_equal(out["OUT"], A * 3) and out["WHERE"].tolist() == [b"1", b"True"]
    # Without --backends the runner looks where tritonserver does by default.
    monkeypatch.setattr(runner, "DEFAULT_BACKENDS", tmp_path / "nowhere")
    with pytest.raises(RunnerError, match='backend "pyback" is not a Python-based backend here') as refused:
        runner.load(repo / "pybackend", python="3.10")
    assert "--backends" in refused.value.hint
    default = tmp_path / "opt-backends"
    shutil.copytree(BACKENDS, default)
    monkeypatch.setattr(runner, "DEFAULT_BACKENDS", default)
    with runner.load(repo / "pybackend", python="3.10", backend_config=CONFIG) as model:
        assert np.array_equal(model.infer({"IN": A})["OUT"], A * 3)
