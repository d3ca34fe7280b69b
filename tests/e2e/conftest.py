"""A real Triton 2.51 (r24.10) from the nvidia-pytriton wheel, in a venv of its own
(docs/triton-behaviour.md: "A real server to test against").

The venv's Python 3.8 with numpy<2 is also the first python3 on the server's PATH, which is where the stock
backend's stub finds its packages. nvidia-pytriton is installed without its dependencies: only its tritonserver,
backends, prebuilt stubs and libraries are used, and tritonclient[http] is the client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import interpreter

PYTRITON = "nvidia-pytriton==0.7.0"


class World:
    """Paths and a runner shared by the e2e tests."""

    def __init__(self, root: Path, venv: Path, cache: Path, python38_libdir: str) -> None:
        self.root = root
        self.python38_libdir = python38_libdir
        self.venv = venv
        self.cache = cache
        self.python = venv / "bin" / "python3"
        out = subprocess.run(
            [
                str(self.python),
                "-c",
                "import importlib.util as u; print(u.find_spec('pytriton').submodule_search_locations[0])",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        ).stdout.strip()
        self.pytriton = Path(out)
        self.server_root = self.pytriton / "tritonserver"
        self.libs = self.pytriton.parent / "nvidia_pytriton.libs"
        self.ld_with_python38 = f"{self.libs}:{python38_libdir}"

    def env(self, **extra: str) -> dict[str, str]:
        """What the server sees: the venv's python3 first, only the wheel's libraries, our cache."""
        env = {
            "HOME": os.environ.get("HOME", "/root"),
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "STUBFORGE_CACHE": str(self.cache),
            "LD_LIBRARY_PATH": str(self.libs),
        }
        for key in ("PYENV_ROOT", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CACHE_DIR"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra)
        return env

    def stubforge(
        self, *args: str, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "stubforge", *args],
            capture_output=True,
            text=True,
            env=env or self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"stubforge {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def wheel_stub(self, minor: str) -> Path:
        return self.server_root / "python_backend_stubs" / minor / "triton_python_backend_stub"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("e2e")
    py38 = interpreter("3.8")
    venv = root / "venv38"
    subprocess.run([py38.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python3"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", PYTRITON], check=True, timeout=900)
    subprocess.run([*pip, "tritonclient[http]", "numpy<2"], check=True, timeout=900)
    assert py38.libpython
    return World(root, venv, root / "cache", os.path.dirname(py38.libpython))


def model_source() -> str:
    return (Path(__file__).parent / "add_sub_model.py").read_text()


def write_model(
    repo: Path, name: str, backend: str = "python", parameters: dict[str, str] | None = None
) -> Path:
    """add/sub with a third output naming the Python and numpy that ran it."""
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(model_source())
    params = "".join(
        f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
        for k, v in (parameters or {}).items()
    )
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: 0\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] },'
        ' { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] },'
        ' { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] },'
        ' { name: "RUNTIME" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n" + params
    )
    return model


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in report["models"]}
