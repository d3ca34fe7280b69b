"""aarch64 on an x86_64 machine: an env packed by stubforge for aarch64 (the sysroot's Python, numpy from an aarch64
wheel) serves a model in the real aarch64 tritonserver of nvidia-pytriton 0.7.0 under qemu-user emulation, and
the runner runs the same model under emulation too (docs/aarch64.md). One server start for the whole module.

Needs what .ci/run installs: qemu-user-static + binfmt-support (binfmt_misc mounted), gcc-aarch64-linux-gnu,
libc6:arm64 and libstdc++6:arm64, and apt's arm64 architecture for the sysroot's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from stubforge.core import elf, emulation
from stubforge.envs import activate
from stubforge.runner import api as runner_api
from tests import aarch64
from tests.conftest import interpreter
from tests.e2e import leaks

pytestmark = pytest.mark.e2e

MODEL = """
import platform, sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        v = sys.version_info
        self.where = "%s %d.%d.%d numpy %s" % (platform.machine(), v[0], v[1], v[2], np.__version__)

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", (a + b).astype(np.float32)),
                pb_utils.Tensor("CUMPROD", np.cumsum(a * b).astype(np.float32)),
                pb_utils.Tensor("WHERE", np.array([self.where.encode()], dtype=np.object_)),
            ]))
        return responses
"""

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: "CUMPROD" data_type: TYPE_FP32 dims: [ 4 ] }},
         {{ name: "WHERE" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


def _write_model(repo: Path, name: str, env_value: str | None = None) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL)
    extra = ""
    if env_value is not None:
        extra = f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env_value}" }} }}\n'
    (model / "config.pbtxt").write_text(CONFIG.format(name=name) + extra)
    return model


class Board:
    """The module's sysroot, runner stub, repository and the environment stubforge runs with."""

    def __init__(self, root: Path, sysroot: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.sysroot = sysroot
        self.stub = aarch64.runner_stub(self.sysroot, root / "sfstub-aarch64", self.cache)
        self.repo = root / "repo"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, STUBFORGE_CACHE=str(self.cache))
        env.update(extra)
        return env

    def stubforge(self, *args: str, timeout: float = 1800, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stubforge", *args],
            capture_output=True,
            text=True,
            env=self.env(**extra),
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, aarch64_sysroot: Path) -> Board:
    found = emulation.probe("aarch64")
    assert found.available, f"aarch64 emulation is needed (.ci/run sets it up): {found.reason}; {found.hint}"
    board = Board(tmp_path_factory.mktemp("aarch64"), aarch64_sysroot)
    model = _write_model(board.repo, "a64")
    packed = board.stubforge(
        "pack-env",
        "--arch",
        "aarch64",
        "--sysroot",
        str(board.sysroot),
        "--python",
        "3.11",
        "--model",
        str(model),
    )
    assert packed.returncode == 0, packed.stderr
    # An env of this machine's architecture in the aarch64 repository: a real x86_64 libpython is all the
    # check reads (the server never gets to load it).
    wrong = _write_model(board.repo, "x86env", "$$TRITON_MODEL_DIRECTORY/env")
    (wrong / "env" / "lib").mkdir(parents=True)
    (wrong / "env" / "bin").mkdir()
    host_libpython = interpreter("3.11").libpython
    assert host_libpython is not None
    shutil.copy2(host_libpython, wrong / "env" / "lib" / "libpython3.11.so.1.0")
    activate.write(wrong / "env")
    return board


def test_the_packed_env_is_an_aarch64_env_validated_under_emulation(board: Board) -> None:
    manifest = json.loads((board.repo / "a64" / "env.tar.gz.stubforge.json").read_text())
    assert manifest["target"]["arch"] == "aarch64"
    assert manifest["validated"] == "started under emulation"
    assert manifest["python"].startswith("3.11.")
    assert manifest["source"]["kind"] == "sysroot"
    numpy_major = int(manifest["numpy"].split(".")[0])
    assert numpy_major == 1  # r24.10's stubs need numpy<2, added by pack-env
    assert "EXECUTION_ENV_PATH" in (board.repo / "a64" / "config.pbtxt").read_text()


def test_the_model_answers_in_the_real_aarch64_server(board: Board) -> None:
    before = leaks.env_dirs()
    proc = board.stubforge(
        "verify",
        str(board.repo),
        "--pytriton",
        "--arch",
        "aarch64",
        "--sysroot",
        str(board.sysroot),
        "--json",
    )
    assert proc.returncode == 1, proc.stderr  # x86env fails on purpose
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["server_version"] == "2.51.0"
    assert report["arch"] == "aarch64" and report["emulation"].startswith("emulated by")
    models = {m["name"]: m for m in report["models"]}
    a64 = models["a64"]
    assert a64["ok"], a64
    assert a64["python"] == "3.11"
    # verify's synthetic request: INPUT0 = INPUT1 = [1, 2, 3, 4]
    assert a64["values"]["SUM"] == [2.0, 4.0, 6.0, 8.0]
    assert a64["values"]["CUMPROD"] == [1.0, 5.0, 14.0, 30.0]
    assert a64["values"]["WHERE"][0].startswith("aarch64 3.11.")
    wrong = models["x86env"]
    assert not wrong["loaded"]
    assert "built for x86_64, but the server runs aarch64" in wrong["error"]
    assert "pack-env --arch aarch64" in wrong["hint"]
    assert leaks.left_by_run(before, board.root) == ([], [], [])


def test_the_runner_runs_it_under_emulation(board: Board, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUBFORGE_CACHE", str(board.cache))
    a = np.array([1.5, 2.0, -3.0, 4.0], dtype=np.float32)
    b = np.array([2.0, 0.5, 1.0, 10.0], dtype=np.float32)
    with runner_api.load(board.repo / "a64", runner_stub=board.stub) as model:
        out = model.infer({"INPUT0": a, "INPUT1": b})
        pid = model.pid
    np.testing.assert_array_equal(out["SUM"], a + b)
    np.testing.assert_array_equal(out["CUMPROD"], np.cumsum(a * b))
    assert out["WHERE"][0].decode().startswith("aarch64 3.11.")
    assert pid is not None and not psutil.pid_exists(pid)


def test_a_runner_stub_of_another_arch_than_the_env_is_refused(board: Board) -> None:
    host_program = Path(sys.executable).resolve()
    assert elf.read(host_program).arch == "x86_64"
    proc = board.stubforge("run", str(board.repo / "a64"), "--runner-stub", str(host_program))
    assert proc.returncode != 0
    assert "is built for x86_64, but the env" in proc.stderr and "is for aarch64" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_emulation_verify_and_run_say_what_to_install(board: Board, tmp_path: Path) -> None:
    unmounted = tmp_path / "binfmt_misc"
    unmounted.mkdir()
    verify = board.stubforge(
        "verify", str(board.repo), "--pytriton", "--arch", "aarch64", STUBFORGE_BINFMT_DIR=str(unmounted)
    )
    assert verify.returncode != 0
    assert "binfmt_misc is not mounted" in verify.stderr
    assert "mount -t binfmt_misc" in verify.stderr and "qemu-user-static" in verify.stderr
    assert "Traceback" not in verify.stderr
    (unmounted / "status").write_text("enabled\n")  # mounted, but nothing registered
    run = board.stubforge(
        "run", str(board.repo / "a64"), "--runner-stub", str(board.stub), STUBFORGE_BINFMT_DIR=str(unmounted)
    )
    assert run.returncode != 0
    assert "no qemu-aarch64 is registered" in run.stderr
    assert "apt-get install qemu-user-static binfmt-support" in run.stderr
    assert "Traceback" not in run.stderr


def test_without_emulation_pack_env_checks_the_env_statically(board: Board, tmp_path: Path) -> None:
    unmounted = tmp_path / "binfmt_misc"
    unmounted.mkdir()
    out = tmp_path / "env"
    proc = board.stubforge(
        "pack-env",
        "--arch",
        "arm64",
        "--sysroot",
        str(board.sysroot),
        "--python",
        "3.11",
        "--dir",
        str(out),
        "--json",
        STUBFORGE_BINFMT_DIR=str(unmounted),
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["validated"] == "static"
    assert any("was not started" in w and "binfmt_misc is not mounted" in w for w in manifest["warnings"])
    assert elf.read(out / "bin" / "python3.11").arch == "aarch64"
    assert (out / "lib" / "python3" / "dist-packages" / "numpy").is_dir()
