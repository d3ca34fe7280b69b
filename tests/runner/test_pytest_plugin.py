"""The pytest plugin as a user's test suite sees it: fixtures, Python parametrization, teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.runner.test_examples import copy_repository

pytestmark = pytest.mark.slow

INNER = """
import numpy as np

A = np.array([1.0, 2.0], dtype=np.float32)


def test_model(stubforge_model):
    model = stubforge_model(REPO + "/add_sub")
    assert model.infer({"INPUT0": A, "INPUT1": A})["OUTPUT0"].tolist() == [2.0, 4.0]
    with open(PIDS, "a") as fh:
        fh.write(str(model.pid) + "\\n")


def test_repository(stubforge_repository):
    repo = stubforge_repository(REPO)
    assert repo.model("bls_sync").infer({"INPUT0": A, "INPUT1": A})["SUM"].tolist() == [2.0, 4.0]
    assert [r["OUT"].tolist() for r in repo.model("square").infer({"IN": np.array([2], dtype=np.int32)})] == [[2], [2]]


def test_versions(stubforge_model, stubforge_python):
    model = stubforge_model(REPO + "/add_sub", python=stubforge_python)
    assert model.info["python"].startswith(stubforge_python + ".")
"""


def test_entry_point_is_registered() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "stubforge"]
    assert found and found[0].value == "stubforge.runner.pytest_plugin"


def test_fixtures_parametrize_and_tear_down(envs: dict[str, Path], tmp_path: Path) -> None:
    # Each version gets its own repository copy, with an env of that version (the deployment decides otherwise).
    repo = copy_repository(tmp_path / "repo", envs["3.10"])
    pids = tmp_path / "pids.txt"
    inner = tmp_path / "test_inner.py"
    inner.write_text(f"REPO = {str(repo)!r}\nPIDS = {str(pids)!r}\n" + INNER)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(inner),
            "--stubforge-python",
            "3.10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    assert (
        "test_versions[3.10]"
        in subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                str(inner),
                "--stubforge-python",
                "3.10",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=str(tmp_path),
        ).stdout
    )
    pid = int(pids.read_text().split()[0])
    assert not Path(f"/proc/{pid}").exists()  # the fixture closed the model: its stub is gone
