"""The fidelity example models (examples/fidelity) in the runner: BLS sync and async, decoupled streams,
auto_complete_config, BYTES. tests/e2e/test_fidelity.py runs the same models in tritonserver."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from stubforge.runner import api as runner
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
