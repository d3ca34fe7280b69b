"""`stubforge run` as a user types it: inputs as JSON or .npy, outputs printed, saved, or as JSON; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.runner.conftest import PREFIX, write_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stubforge",
            "run",
            *args,
            "--backend-config",
            f"shm-region-prefix-name={PREFIX}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=str(ROOT),
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def model_dir(envs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("cli"), "add_sub", env=envs["3.10"])


def test_json_inputs_text_output(model_dir: Path) -> None:
    proc = run(
        str(model_dir), "--input", "INPUT0=[1, 2, 3]", "--input", "INPUT1=[0.5, 0.5, 0.5]", "--requests", "5"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Python 3.10." in proc.stdout and "numpy 1." in proc.stdout
    assert "OUTPUT0 float32 [3]: [1.5, 2.5, 3.5]" in proc.stdout
    assert "OUTPUT1 float32 [3]: [0.5, 1.5, 2.5]" in proc.stdout
    assert "5 request(s)" in proc.stdout
    assert "[model info] initialized add_sub_0_0" in proc.stderr


def test_npy_inputs_json_report_and_saved_outputs(model_dir: Path, tmp_path: Path) -> None:
    a = np.linspace(0, 1, 7, dtype=np.float32)
    np.save(tmp_path / "a.npy", a)
    proc = run(
        str(model_dir),
        "--input",
        f"INPUT0={tmp_path / 'a.npy'}",
        "--input",
        "INPUT1=[1,1,1,1,1,1,1]",
        "--output-dir",
        str(tmp_path / "out"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)  # Triton's HTTP body, run's own facts under "stubforge"
    report = answer["stubforge"]
    assert report["python"].startswith("3.10.") and report["python_source"].startswith("the env")
    assert [(o["name"], o["datatype"], o["shape"]) for o in answer["outputs"]] == [
        ("OUTPUT0", "FP32", [7]),
        ("OUTPUT1", "FP32", [7]),
    ]
    assert answer["model_name"] == "add_sub" and len(report["request_s"]) == 1
    saved = np.load(tmp_path / "out" / "OUTPUT0.npy")
    assert np.array_equal(saved, a + 1) and saved.dtype == np.float32
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["OUTPUT0.npy", "OUTPUT1.npy"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["INPUT0=[1]"], "missing input(s): INPUT1"),
        (["INPUT9=[1]", "INPUT1=[1]"], "the model has no input of that name"),
        (["INPUT0=[1", "INPUT1=[1]"], "is neither a .npy path nor JSON"),
        (["INPUT0", "INPUT1=[1]"], "is not NAME=FILE.npy or NAME=JSON"),
        (["INPUT0=/nonexistent.npy", "INPUT1=[1]"], "cannot read /nonexistent.npy"),
    ],
)
def test_bad_inputs_are_named(model_dir: Path, inputs: list[str], message: str) -> None:
    args = [str(model_dir)]
    for item in inputs:
        args += ["--input", item]
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr and "hint:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_npy_of_the_wrong_dtype(model_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.ones(3, np.float64))
    proc = run(str(model_dir), "--input", f"INPUT0={tmp_path / 'd.npy'}", "--input", "INPUT1=[1,1,1]")
    assert proc.returncode == 2 and "holds float64, the model's config says float32" in proc.stderr


def test_model_error_shows_the_traceback(envs: dict[str, Path], tmp_path: Path) -> None:
    bad = write_model(tmp_path, "bad", env=envs["3.8"], initialize="import missing_module")
    proc = run(str(bad), "--input", "INPUT0=[1]", "--input", "INPUT1=[1]")
    assert proc.returncode == 2
    assert "error: bad: ModuleNotFoundError: No module named 'missing_module'" in proc.stderr
    assert "model.py" in proc.stderr and "Traceback (most recent call last)" in proc.stderr


def test_no_python_known(tmp_path: Path) -> None:
    bare = write_model(tmp_path, "bare")
    proc = run(str(bare), "--input", "INPUT0=[1]", "--input", "INPUT1=[1]")
    assert proc.returncode == 2 and "which Python runs bare?" in proc.stderr and "--python 3.X" in proc.stderr


def test_decoupled_and_auto_completed_models(envs: dict[str, Path], tmp_path: Path) -> None:
    from tests.runner.test_examples import copy_repository

    repo = copy_repository(tmp_path / "repo", envs["3.10"])
    stream = run(str(repo / "square"), "--input", "IN=[2]")
    assert stream.returncode == 0, stream.stderr
    assert "OUT[0] int32 [1]: [2]" in stream.stdout and "OUT[1] int32 [1]: [2]" in stream.stdout
    completed = run(str(repo / "auto_complete"), "--input", 'TEXT=[["hi"]]', "--input", "SCALE=[[1, 2]]")
    assert completed.returncode == 0, completed.stderr
    assert "UPPER object [1, 1]: [[b'HI']]" in completed.stdout
    plain = run(str(repo / "auto_complete"), "--disable-auto-complete-config", "--input", 'TEXT=[["hi"]]')
    assert plain.returncode == 2 and "the model has no input of that name" in plain.stderr


def test_max_env_size_caps_extraction(tmp_path: Path) -> None:
    from tests.unit.test_envmanager import GOOD, make_archive

    model = write_model(
        tmp_path, "capped", env=make_archive(tmp_path / "env.tar.gz", dict(GOOD, big=bytes(4 << 20)))
    )
    proc = run(str(model), "--max-env-size", "1M", "--json")
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert "above the limit of 1.0 MB (the limit given (--max-env-size))" in report["error"]
    bad = run(str(model), "--max-env-size", "lots")
    assert bad.returncode == 2 and "'lots' is not a size" in bad.stderr
