"""Real envs (pack-env, Python 3.8 and 3.10 with numpy<2), real runner stubs, real shm and processes."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stubforge.envs import packenv

# Every region and semaphore of these tests carries this prefix: leftovers are found by it.
PREFIX = f"sftest_{os.getpid()}_"


@pytest.fixture(scope="session", autouse=True)
def runner_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("runner-cache")
    old = os.environ.get("STUBFORGE_CACHE")
    os.environ["STUBFORGE_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("STUBFORGE_CACHE", None)
    else:
        os.environ["STUBFORGE_CACHE"] = old


@pytest.fixture(scope="session")
def envs(tmp_path_factory: pytest.TempPathFactory, runner_cache: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runner-envs")
    made = {}
    for minor in ("3.8", "3.10"):
        target = root / f"env{minor.replace('.', '')}"
        packenv.pack_env(packenv.PackOptions(python=minor, directory=target, prune=True))
        made[minor] = target
    return made


ADD_SUB = """
import json, os, sys, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        path = os.environ.get("SF_ARGS_FILE")
        if path:
            with open(path, "w") as fh:
                json.dump({"args": args, "sys_path": sys.path, "python": sys.version_info[:2]}, fh)
        pb_utils.Logger.log_info("initialized " + args["model_instance_name"])
        BEHAVIOUR

    def execute(self, requests):
        EXECUTE
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(a.dtype)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(a.dtype)),
            ]))
        return responses
"""

CONFIG = """name: "{name}"
backend: "python"
input [ {{ name: "INPUT0" data_type: {dtype} dims: [ -1 ] }}, {{ name: "INPUT1" data_type: {dtype} dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: {dtype} dims: [ -1 ] }}, {{ name: "OUTPUT1" data_type: {dtype} dims: [ -1 ] }} ]
{extra}"""


def write_model(
    repo: Path,
    name: str,
    *,
    env: Path | None = None,
    initialize: str = "pass",
    execute: str = "pass",
    source: str | None = None,
    dtype: str = "TYPE_FP32",
    inputs: list[tuple[str, str, str]] | None = None,
) -> Path:
    """inputs: (name, TYPE_X, dims) to declare other inputs than INPUT0/INPUT1 (outputs are then left out:
    the python backend does not check outputs against the config)."""
    model = repo / name
    (model / "1").mkdir(parents=True)
    code = source or ADD_SUB.replace("BEHAVIOUR", initialize).replace("EXECUTE", execute)
    (model / "1" / "model.py").write_text(textwrap.dedent(code))
    extra = ""
    if env is not None:
        # A host path (allowed by Triton; shared by many test models instead of a 100 MB copy each).
        extra = f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    if inputs is not None:
        declared = ", ".join(f'{{ name: "{n}" data_type: {t} dims: {d} }}' for n, t, d in inputs)
        text = f'name: "{name}"\nbackend: "python"\ninput [ {declared} ]\n{extra}'
    else:
        text = CONFIG.format(name=name, dtype=dtype, extra=extra)
    (model / "config.pbtxt").write_text(text)
    return model
