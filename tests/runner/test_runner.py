"""stubforge run / stubforge.runner.api: a model.py in its env, in our stub, over real shared memory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest

from stubforge.runner import api as runner
from stubforge.runner import history
from stubforge.runner.launcher.stub import ModelError, StubError
from stubforge.runner.requests import InferenceError
from tests.runner.conftest import PREFIX, write_model

pytestmark = pytest.mark.slow
CONFIG = {"shm-region-prefix-name": PREFIX}


def quiet_kill(pid: int | None, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid or 0, sig)


def leftovers() -> list[str]:
    names = sorted(p.name for p in Path("/dev/shm").iterdir() if PREFIX in p.name)
    stubs = [
        c.pid for c in psutil.Process().children(recursive=True) if c.name().startswith("triton_python_b")
    ]
    return names + [f"pid {p}" for p in stubs]


@pytest.mark.parametrize("minor", ["3.8", "3.10"])
def test_add_sub_in_its_env_with_triton_args(
    minor: str, envs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = write_model(tmp_path, "add_sub", env=envs[minor])
    (model_dir / "1" / "helper_v.py").write_text("X = 1\n")
    monkeypatch.setenv("SF_ARGS_FILE", str(tmp_path / "args.json"))
    a = np.array([1.5, 2.0, -3.0, 4.25], dtype=np.float32)
    b = np.array([10.0, 20.0, 30.0, 0.5], dtype=np.float32)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        assert model.info["python"].startswith(minor + ".") and model.info["numpy"].startswith("1.")
        assert model.info["prefix"] == str(envs[minor])  # the env's python3 decided the prefix
        out = model.infer({"INPUT0": a, "INPUT1": b})
        assert np.array_equal(out["OUTPUT0"], a + b) and np.array_equal(out["OUTPUT1"], a - b)
        assert out["OUTPUT0"].dtype == np.float32
        assert any(r["message"] == "initialized add_sub_0_0" for r in model.logs)
    seen = json.loads((tmp_path / "args.json").read_text())
    args = seen["args"]
    assert args["model_name"] == "add_sub" and args["model_version"] == "1"
    assert args["model_instance_name"] == "add_sub_0_0" and args["model_instance_kind"] == "CPU"
    assert args["model_repository"] == str(model_dir)
    config = json.loads(args["model_config"])
    assert config["input"][0]["dims"] == [-1] and config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["max_batch_size"] == 0  # defaults are present, as in Triton's JSON
    # Triton's order: <model>/<version>, <model>, then the python-lib dir, all appended.
    tail = seen["sys_path"][-3:]
    assert tail[:2] == [str(model_dir / "1"), str(model_dir)] and tail[2].endswith("runtime")
    assert leftovers() == []


@pytest.mark.parametrize("launcher", ["24.10", "25.09"])
def test_both_activation_modes(launcher: str, envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(tmp_path / "with space", "add_sub", env=envs["3.10"])  # quoted, never split
    with runner.load(model_dir, triton=launcher, backend_config=CONFIG) as model:
        assert model.info["executable"] == str(envs["3.10"] / "bin" / "python3")
        out = model.infer({"INPUT0": np.ones(3, np.float32), "INPUT1": np.ones(3, np.float32)})
        assert out["OUTPUT0"].tolist() == [2.0, 2.0, 2.0]


DTYPES = [
    np.bool_,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
]
ECHO = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            tensors = [pb_utils.Tensor("OUT_" + t.name(), t.as_numpy()) for t in request.inputs()]
            out.append(pb_utils.InferenceResponse(tensors))
        return out
"""


TYPE_NAMES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}


def test_every_numeric_dtype_and_bool_round_trips(envs: dict[str, Path], tmp_path: Path) -> None:
    declared = [(n, t, "[ -1 ]") for n, t in TYPE_NAMES.items() if n != "bool"]
    declared += [("bool", "TYPE_BOOL", "[ -1, -1 ]"), ("empty", "TYPE_FP32", "[ -1, 4 ]")]
    model_dir = write_model(tmp_path, "echo", env=envs["3.8"], source=ECHO, inputs=declared)
    rng = np.random.default_rng(7)
    inputs = {}
    for dtype in DTYPES:
        if dtype is np.bool_:
            inputs["bool"] = rng.integers(0, 2, (2, 3)).astype(np.bool_)
        else:
            info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
            edge = np.array([info.min, info.max, 0], dtype=dtype)
            inputs[np.dtype(dtype).name] = np.concatenate([edge, rng.integers(0, 100, 5).astype(dtype)])
    inputs["empty"] = np.zeros((0, 4), np.float32)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        out = model.infer(inputs)
    for name, array in inputs.items():
        got = out["OUT_" + name]
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array), name


def test_large_tensors_grow_the_region(envs: dict[str, Path], tmp_path: Path) -> None:
    # The model returns new arrays, which the stub must write: the region grows for the inputs (parent) and
    # again for the outputs (stub), in Triton's growth steps.
    model_dir = write_model(
        tmp_path,
        "copy",
        env=envs["3.10"],
        source=ECHO.replace("t.as_numpy()", "t.as_numpy().copy()"),
        inputs=[("x", "TYPE_FP32", "[ -1 ]")],
    )
    big = np.arange(3 * (1 << 20), dtype=np.float32)  # 12 MB in, 12 MB out: far past the 1 MiB default
    with runner.load(model_dir, backend_config=dict(CONFIG, **{"shm-growth-byte-size": "1048576"})) as model:
        out = model.infer({"x": big})
        assert np.array_equal(out["OUT_x"], big)
        region_size = model._stub.region.size
        assert region_size >= 2 * big.nbytes and (region_size - (1 << 20)) % (1 << 20) == 0
        assert np.array_equal(model.infer({"x": big[:10]})["OUT_x"], big[:10])


def test_outputs_that_are_views_of_inputs(envs: dict[str, Path], tmp_path: Path) -> None:
    # An output that is an input, or a slice of one, is not copied inside the stub: the parent reads it where
    # the input lies. What the caller gets must still be its own copy, right for every request.
    source = ECHO.replace(
        'tensors = [pb_utils.Tensor("OUT_" + t.name(), t.as_numpy()) for t in request.inputs()]',
        "x = request.inputs()[0].as_numpy()\n"
        '            tensors = [pb_utils.Tensor("OUT_x", x), pb_utils.Tensor("OUT_tail", x[x.size // 2 :]),\n'
        '                       pb_utils.Tensor("OUT_odd", x[1::2])]',
    )
    assert "OUT_tail" in source
    model_dir = write_model(
        tmp_path,
        "views",
        env=envs["3.10"],
        source=source,
        inputs=[("x", "TYPE_FP32", "[ -1 ]")],
    )
    with runner.load(model_dir, backend_config=dict(CONFIG, **{"shm-growth-byte-size": "1048576"})) as model:
        kept = []
        for n, size in enumerate([1 << 20, 1 << 20, 5, 3 << 20, 1 << 20]):  # big, same again, small, growth
            x = np.arange(size, dtype=np.float32) + n
            out = model.infer({"x": x})
            assert np.array_equal(out["OUT_x"], x)
            assert np.array_equal(out["OUT_tail"], x[size // 2 :])
            assert np.array_equal(out["OUT_odd"], x[1::2])
            kept.append((x, out))
        for x, out in kept:  # later requests did not change what earlier ones returned
            assert np.array_equal(out["OUT_x"], x)


def test_model_errors_carry_the_python_traceback(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path, "bad_init", env=envs["3.8"], initialize="raise ValueError('no weights')"
    )
    with pytest.raises(ModelError) as info:
        runner.load(model_dir, backend_config=CONFIG)
    assert "ValueError: no weights" in info.value.message
    assert "model.py" in info.value.details and "raise ValueError('no weights')" in info.value.details
    assert leftovers() == []

    model_dir = write_model(tmp_path, "bad_exec", env=envs["3.8"], execute="raise KeyError('INPUT9')")
    with runner.load(model_dir, backend_config=CONFIG) as model:
        ones = {"INPUT0": np.ones(2, np.float32), "INPUT1": np.ones(2, np.float32)}
        with pytest.raises(ModelError, match="KeyError") as info:
            model.infer(ones)
        assert "in execute" in info.value.details
        with pytest.raises(
            ModelError
        ):  # the stub lives on, as in Triton: the next request gets the same error
            model.infer(ones)
    assert leftovers() == []


def test_stub_killed_mid_request(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "slow", env=envs["3.10"], execute="time.sleep(60)")
    model = runner.load(model_dir, backend_config=CONFIG, execute_timeout=120)
    pid = model.pid
    assert pid is not None
    threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
    ones = {"INPUT0": np.ones(2, np.float32), "INPUT1": np.ones(2, np.float32)}
    with pytest.raises(StubError, match="signal SIGKILL while answering execute"):
        model.infer(ones)
    with pytest.raises(StubError, match=r"not running \(signal SIGKILL\)"):
        model.infer(ones)
    model.close()
    model.close()  # twice is fine
    assert leftovers() == []


def test_execute_timeout_kills_and_cleans(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "hangs", env=envs["3.8"], execute="time.sleep(3600)")
    with runner.load(model_dir, backend_config=CONFIG, execute_timeout=1.0) as model:
        with pytest.raises(StubError, match="did not finish answering execute within 1 s; it was killed"):
            model.infer({"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
        assert not psutil.pid_exists(model.pid or 0) or psutil.Process(model.pid).status() == "zombie"
    assert leftovers() == []


def test_frozen_stub_is_not_healthy(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "frozen", env=envs["3.8"], execute="time.sleep(30)")
    with runner.load(model_dir, backend_config=CONFIG, execute_timeout=120) as model:
        threading.Timer(0.3, os.kill, (model.pid, signal.SIGSTOP)).start()
        with pytest.raises(StubError, match="is not healthy: no heartbeat"):
            model.infer({"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
    assert leftovers() == []


PARENT = """
import sys, time
from stubforge.runner import api as runner
model = runner.load(sys.argv[1], backend_config={"shm-region-prefix-name": sys.argv[2]})
print(model.pid, flush=True)
time.sleep(600)
"""


def test_stub_exits_when_the_parent_is_killed(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "orphan", env=envs["3.8"])
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(model_dir), PREFIX],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        assert parent.stdout is not None
        stub_pid = int(parent.stdout.readline())
        stub = psutil.Process(stub_pid)
        parent.kill()
        parent.wait(timeout=30)
        stub.wait(timeout=10)  # psutil.TimeoutExpired here would mean an orphan
    finally:
        parent.kill()
    assert leftovers() == []


def test_stubs_that_cannot_start(
    envs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An env of another Python than the deployment's stub: libpython3.8 is nowhere on its library path.
    model_dir = write_model(tmp_path, "wrong_env", env=envs["3.10"])
    with pytest.raises(StubError, match="ended with exit status 127 while starting") as info:
        runner.load(model_dir, python="3.8", backend_config=CONFIG)
    assert "libpython3.8.so.1.0" in info.value.details and "libpython" in info.value.hint
    # libpython3.8 reachable (LD_LIBRARY_PATH), but the env's python3 is 3.10: Python 3.8 finds no lib/python3.8
    # there and falls back to its compiled-in prefix, which has no numpy (docs/triton-behaviour.md: "How the
    # embedded interpreter finds its environment": "No module named").
    from tests.conftest import interpreter

    py38 = interpreter("3.8")
    assert py38.libpython
    monkeypatch.setenv("LD_LIBRARY_PATH", os.path.dirname(py38.libpython))
    with pytest.raises(StubError, match="while starting") as info:
        runner.load(model_dir, python="3.8", backend_config=CONFIG, triton="25.09")
    assert "No module named" in info.value.details and "numpy" in info.value.hint
    assert leftovers() == []


CHAOS = """
import os, signal, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        if os.environ.get("SF_FAULT") == "init":
            raise RuntimeError("init fault")

    def execute(self, requests):
        fault = os.environ.get("SF_FAULT")
        if fault == "raise":
            raise RuntimeError("execute fault")
        if fault == "hang":
            time.sleep(3600)
        if fault == "exit":
            os._exit(3)
        if fault == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy() * 2)]) for r in requests]
"""
FAULTS = ["none", "init", "raise", "hang", "exit", "segv", "sigkill", "sigterm", "sigstop", "close_early"]


def test_random_faults_leave_nothing_behind(
    envs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 loads with a random fault each: no /dev/shm entry, no semaphore, no process may remain."""
    import random

    model_dir = write_model(
        tmp_path, "chaos", env=envs["3.8"], source=CHAOS, inputs=[("x", "TYPE_FP32", "[ -1 ]")]
    )
    rng = random.Random(20261122)
    outcomes: dict[str, int] = {}
    for _ in range(200):
        fault = rng.choice(FAULTS)
        monkeypatch.setenv("SF_FAULT", fault)
        x = np.arange(rng.randint(1, 300_000), dtype=np.float32)
        try:
            model = runner.load(model_dir, backend_config=CONFIG, execute_timeout=0.5, startup_timeout=20)
        except ModelError:
            outcomes["init-error"] = outcomes.get("init-error", 0) + 1
            assert fault == "init"
            continue
        try:
            if fault in ("sigkill", "sigterm", "sigstop"):
                signal_number = getattr(signal, fault.upper())
                threading.Timer(rng.uniform(0, 0.05), quiet_kill, (model.pid, signal_number)).start()
                time.sleep(0.06)
            if fault != "close_early":
                try:
                    out = model.infer({"x": x})
                    assert np.array_equal(out["OUT"], x * 2)
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                except (ModelError, StubError) as exc:
                    outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
        finally:
            model.close()
    assert leftovers() == []
    sems = [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith("sem.") and PREFIX in p.name]
    assert sems == []
    assert (
        outcomes.get("ok", 0) > 0 and outcomes.get("StubError", 0) > 0 and outcomes.get("ModelError", 0) > 0
    )


LIFECYCLE = """
import os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "finalized")

    def execute(self, requests):
        out = []
        for r in requests:
            a = r.inputs()[0].as_numpy()
            # 1 when the model got a view of the shared region (no copy), 0 when it got its own array.
            view = np.array([0 if a.flags.owndata else 1], dtype=np.int32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("VIEW", view)]))
        return out

    def finalize(self):
        with open(self.marker, "w") as fh:
            fh.write("bye")
"""


def test_inputs_are_shared_not_copied_and_finalize_runs(envs: dict[str, Path], tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path, "life", env=envs["3.10"], source=LIFECYCLE, inputs=[("x", "TYPE_FP32", "[ -1 ]")]
    )
    with runner.load(model_dir, backend_config=CONFIG) as model:
        assert model.infer({"x": np.ones(1000, np.float32)})["VIEW"].tolist() == [1]
        batch = model.infer_many([{"x": np.ones(3, np.float32)}, {"x": np.zeros(5, np.float32)}])
        assert [b["VIEW"].tolist() for b in batch] == [[1], [1]]
        assert not (model_dir / "finalized").exists()
    assert (model_dir / "finalized").read_text() == "bye"
    assert leftovers() == []


def test_bytes_tensors_use_tritons_encoding_both_ways(envs: dict[str, Path], tmp_path: Path) -> None:
    declared = [
        ("words", "TYPE_STRING", "[ 2, 2 ]"),
        ("text", "TYPE_STRING", "[ -1 ]"),
        ("n", "TYPE_INT32", "[ 3 ]"),
    ]
    model_dir = write_model(tmp_path, "echo", env=envs["3.8"], source=ECHO, inputs=declared)
    words = np.array([[b"triton", b""], ["caf\u00e9".encode(), b"\x00\xff binary"]], dtype=np.object_)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        out = model.infer({"words": words, "text": np.array(["a", "bc"]), "n": np.arange(3, dtype=np.int32)})
        with pytest.raises(
            InferenceError, match="inference input 'n' data-type is 'INT64', but model 'echo' expects"
        ):
            model.infer({"words": words, "text": np.array(["a"]), "n": np.arange(3)})
        with pytest.raises(
            InferenceError, match=r"unexpected shape for input 'words' for model 'echo'\. Expected \[2,2\]"
        ):
            model.infer({"words": words[:1], "text": np.array(["a"]), "n": np.arange(3, dtype=np.int32)})
    assert out["OUT_words"].dtype == np.object_ and out["OUT_words"].shape == (2, 2)
    assert out["OUT_words"].tolist() == words.tolist()
    assert out["OUT_text"].tolist() == [
        b"a",
        b"bc",
    ]  # str goes in as UTF-8 and comes back as bytes, as in Triton
    assert out["OUT_n"].tolist() == [0, 1, 2]


def test_byte_tensor_codec_matches_tritonclient() -> None:
    from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

    from stubforge.runner.runtime import _stubforge_wire as ours

    data = np.array([b"x", b"", "\u00e9".encode(), b"long" * 100], dtype=np.object_).reshape(2, 2)
    assert ours.serialize_byte_tensor(data)[0] == serialize_byte_tensor(data).item()
    encoded = serialize_byte_tensor(data).item()
    assert ours.deserialize_bytes_tensor(encoded).tolist() == deserialize_bytes_tensor(encoded).tolist()


FORKS = """
pid = os.fork()
if pid == 0:
    if SETSID:
        os.setsid()
    time.sleep(600)
    os._exit(0)
with open(os.environ["SF_CHILD_FILE"], "w") as fh:
    fh.write(str(pid))
"""


@pytest.mark.parametrize("setsid", [False, True], ids=["same-group", "own-session"])
def test_processes_the_model_forked_end_with_it(
    setsid: bool, envs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child_file = tmp_path / "child.pid"
    monkeypatch.setenv("SF_CHILD_FILE", str(child_file))
    code = FORKS.replace("SETSID", str(setsid)).strip().replace("\n", "\n        ")
    model_dir = write_model(tmp_path, "forks", env=envs["3.10"], initialize=code)
    with runner.load(model_dir, backend_config=CONFIG) as model:
        model.infer({"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
        child = psutil.Process(int(child_file.read_text()))
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    # psutil.TimeoutExpired here would mean the model's child outlived the run.
    with contextlib.suppress(psutil.NoSuchProcess):
        child.wait(timeout=10)
    assert leftovers() == []


def test_a_forked_child_ends_when_the_parent_is_killed(envs: dict[str, Path], tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    code = FORKS.replace("SETSID", "False").strip().replace("\n", "\n        ")
    model_dir = write_model(tmp_path, "forks", env=envs["3.8"], initialize=code)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(model_dir), PREFIX],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
        env=dict(os.environ, SF_CHILD_FILE=str(child_file)),
    )
    try:
        assert parent.stdout is not None
        int(parent.stdout.readline())
        child = psutil.Process(int(child_file.read_text()))
        parent.kill()
        parent.wait(timeout=30)
        with contextlib.suppress(psutil.NoSuchProcess):
            child.wait(timeout=10)  # psutil.TimeoutExpired here would mean an orphan
    finally:
        parent.kill()
    assert leftovers() == []


@pytest.mark.parametrize(
    ("returned", "words"),
    [
        (
            '["not a response"]',
            "Expected an 'InferenceResponse' object in the execute function return list, found type \"<class 'str'>\"",
        ),
        ('"text"', "Expected a list in the execute return, found type \"<class 'str'>\""),
        ("[]", "InferenceRequest(s) size is:1, and InferenceResponse(s) size is:0"),
        (
            "[None]",
            "execute() sent no response for this request: tritonserver would leave its client waiting",
        ),
    ],
    ids=["not-a-response", "not-a-list", "too-few", "none-element"],
)
def test_wrong_execute_returns_are_named(
    returned: str, words: str, envs: dict[str, Path], tmp_path: Path
) -> None:
    model_dir = write_model(tmp_path, "wrong", env=envs["3.10"], execute=f"return {returned}")
    with runner.load(model_dir, backend_config=CONFIG) as model:
        with pytest.raises(ModelError) as caught, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the [None] case warns: Triton would hang
            model.infer({"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
        assert words.replace('"', "'") in str(caught.value.message)
        if returned != "[None]":  # Triton's own check: its bare text, as the client receives it
            text = caught.value.status.message
            assert text.startswith("Failed to process the request(s) for model 'wrong_0_0', message: ")
            assert words.replace('"', "'") in text and "At:" not in text
        assert "AttributeError" not in str(caught.value.message)
    assert leftovers() == []


GROWTH_FAILS = """
import resource, signal
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        # A file-size limit makes the region's ftruncate fail with EFBIG: a real growth failure.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    def execute(self, requests):
        out = []
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()[0])
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", np.zeros(n, np.uint8))]))
        return out
"""


def test_a_region_that_cannot_grow_is_the_stubs_failure_not_the_models(
    envs: dict[str, Path], tmp_path: Path
) -> None:
    model_dir = write_model(tmp_path, "grows", env=envs["3.10"], source=GROWTH_FAILS, dtype="TYPE_INT64")
    with runner.load(model_dir, backend_config=CONFIG) as model:
        big = {"INPUT0": np.array([8 << 20], np.int64), "INPUT1": np.array([0], np.int64)}
        with pytest.raises(StubError, match="could not grow the shared-memory region") as caught:
            model.infer(big)
        assert not isinstance(caught.value, ModelError) and "File too large" in caught.value.message
        assert "/dev/shm" in caught.value.hint and "model's own error" not in caught.value.hint
        # The region is still usable: a small answer goes through.
        small = model.infer({"INPUT0": np.array([16], np.int64), "INPUT1": np.array([0], np.int64)})
        assert small["OUTPUT0"].shape == (16,)
    assert leftovers() == []


MOODY = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = request.inputs()[0].as_numpy()
            if x.size and x.flat[0] == 99:
                out.append(pb_utils.InferenceResponse([], error=pb_utils.TritonError("ninety-nine")))
                continue
            if x.size and x.flat[0] < 0:
                pb_utils.Logger.log_warn("negative " + str(x.flat[0]))
            params = request.parameters()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("TWICE", x * 2),
                pb_utils.Tensor("SAME", x),
                pb_utils.Tensor("PARAMS", np.array([params.encode()], dtype=np.object_)),
            ]))
        return out
"""


def test_like_requests_take_the_short_way_and_every_answer_stays_right(
    envs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain requests go the short way (cached message bytes and reply decoding); a reply with an error, a log
    # record or a BYTES output is handed over to the general path. Shapes, types, requested outputs and
    # parameters change between requests: every answer must be the one the general path gives.
    model_dir = write_model(
        tmp_path, "moody", env=envs["3.10"], source=MOODY, inputs=[("x", "TYPE_FP32", "[ -1 ]")]
    )
    with (model_dir / "config.pbtxt").open("a") as config:  # requested outputs must be declared
        config.write(
            'output [ { name: "TWICE" data_type: TYPE_FP32 dims: [ -1 ] },'
            ' { name: "SAME" data_type: TYPE_FP32 dims: [ -1 ] },'
            ' { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        )
    monkeypatch.setattr(history, "KEPT", 1)  # a model keeps its most recent timings and log records only
    with runner.load(model_dir, backend_config=CONFIG) as model:
        assert model._lane is not None
        for round_ in range(3):
            for size in (4, 1, 70000, 0, 4):
                x = np.arange(size, dtype=np.float32) + round_
                out = model.infer({"x": x}, outputs=["TWICE", "SAME"])
                assert set(out) == {"TWICE", "SAME"}
                assert np.array_equal(out["TWICE"], x * 2) and np.array_equal(out["SAME"], x)
                out["SAME"][...] = -1  # the caller's own copy: the next answer is not affected
            out = model.infer({"x": np.array([1.5], np.float32)}, parameters={"k": round_})
            assert out["PARAMS"][0] == json.dumps({"k": round_}, separators=(",", ":")).encode()
            negative = np.array([-3.0, 1.0], np.float32)
            assert np.array_equal(model.infer({"x": negative})["TWICE"], negative * 2)
            assert any("negative -3.0" in record["message"] for record in model.logs)
            with pytest.raises(ModelError, match="ninety-nine"):
                model.infer({"x": np.array([99.0], np.float32)})
            with pytest.raises(
                InferenceError, match="data-type is 'FP64'"
            ):  # a list: the general path's checks
                model.infer({"x": [5.0, 6.0]})
            strided = np.arange(10, dtype=np.float32)[::3]  # not contiguous: copied in C order
            assert np.array_equal(model.infer({"x": strided})["TWICE"], strided * 2)
        assert model._lane._prepared  # the short way was taken
        assert 1 <= len(model.timings.requests) <= 2 and 1 <= len(model.logs) <= 2
    assert leftovers() == []
