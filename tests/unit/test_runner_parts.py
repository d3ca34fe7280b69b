"""The runner's parts that need no stub process: the launch plan, request encoding, BLS routing, typed options."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stubforge.errors import RunnerError
from stubforge.runner import api, bls, instances, protocol
from stubforge.runner.launcher.stub import ModelError
from stubforge.runner.requests import InferenceError

BATCHED = {
    "name": "b",
    "max_batch_size": 4,
    "input": [
        {"name": "X", "data_type": "TYPE_INT32", "dims": [2], "reshape": {"shape": [1, 2]}},
        {"name": "S", "data_type": "TYPE_STRING", "dims": [1]},
    ],
    "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": [2]}],
}


def test_instance_names() -> None:
    assert instances.instance_names({"name": "m"}) == ["m_0_0"]
    config = {"name": "m", "instance_group": [{"count": 2}, {"name": "fast", "count": 1, "kind": "KIND_CPU"}]}
    assert instances.instance_names(config) == ["m_0_0", "m_0_1", "fast_0"]
    with pytest.raises(RunnerError, match="KIND_GPU"):
        instances.instance_names({"name": "m", "instance_group": [{"kind": "KIND_GPU"}]})


def test_closed_pool_lends_nothing() -> None:
    with pytest.raises(RunnerError, match="closed"), instances.InstancePool().borrow():
        pass


def test_request_encoding_follows_the_config() -> None:
    encoder = protocol.RequestEncoder()
    inputs = {"X": np.array([[1, 2]], dtype=np.int32), "S": np.array([[b"ab"]], dtype=object)}
    message, arrays = encoder.encode(BATCHED, inputs, ["Y"])
    assert message["requested_output_names"] == ["Y"]
    x, s = message["inputs"]
    assert (x["name"], x["datatype"], x["shape"], x["nbytes"]) == ("X", "INT32", [1, 1, 2], 8)  # reshaped
    assert (s["datatype"], s["shape"]) == ("BYTES", [1, 1])
    assert arrays[0].tobytes() == inputs["X"].tobytes()
    assert arrays[1].nbytes == s["nbytes"] == 4 + 2  # Triton's BYTES encoding: length, then the bytes
    again, _ = encoder.encode(BATCHED, inputs, None)  # the same signature: the cached check answers
    assert again["inputs"][0]["shape"] == [1, 1, 2] and again["requested_output_names"] == []
    with pytest.raises(RunnerError, match="complex64 is not a Triton tensor type"):
        encoder.encode(BATCHED, {"X": np.zeros((1, 2), np.complex64)}, None)
    with pytest.raises(InferenceError, match="expected 2 inputs but got 3 inputs"):  # Triton counts first
        encoder.encode(BATCHED, {**inputs, "Z": np.zeros(1, np.float32)}, None)
    with pytest.raises(InferenceError, match=r"^unexpected inference input 'Z'"):
        encoder.encode(BATCHED, {"X": inputs["X"], "Z": np.zeros(1, np.float32)}, None)
    protocol.check_request(BATCHED, inputs)
    with pytest.raises(InferenceError):
        protocol.check_request(BATCHED, {"X": np.zeros((1, 2), np.float64), "S": inputs["S"]})


def test_initialize_header_is_what_triton_passes() -> None:
    header = protocol.initialize_header(
        config={"name": "m"},
        instance="m_0_0",
        model_dir=Path("/r/m"),
        version="3",
        name="m",
        auto_complete=True,
    )
    assert header["op"] == "initialize" and header["auto_complete"] is True
    assert header["args"] == {
        "model_config": '{"name": "m"}',
        "model_instance_kind": "CPU",
        "model_instance_name": "m_0_0",
        "model_instance_device_id": "0",
        "model_repository": "/r/m",
        "model_version": "3",
        "model_name": "m",
    }


def test_check_reply_keeps_logs_and_raises_the_model_error() -> None:
    logs: list[dict[str, str]] = []
    ok = {"ok": True, "logs": [{"level": "INFO", "message": "hi"}]}
    assert protocol.check_reply("m", ok, logs) is ok and logs == ok["logs"]
    failed = {"ok": False, "error": {"type": "ValueError", "message": "bad", "traceback": "tb"}}
    with pytest.raises(ModelError, match="m: ValueError: bad") as info:
        protocol.check_reply("m", failed, logs)
    assert info.value.details == "tb" and info.value.error_type == "ValueError"


class _Peer:
    decoupled = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.closed = False

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> Any:
        return inputs

    def close(self) -> None:
        self.closed = True


def test_peers_load_siblings_once_and_close_them(tmp_path: Path) -> None:
    (tmp_path / "add_sub").mkdir()
    (tmp_path / "add_sub" / "config.pbtxt").write_text('backend: "python"\n')
    (tmp_path / "no_config").mkdir()
    loads: list[Path] = []

    def load(path: Path) -> _Peer:
        loads.append(path)
        return _Peer(path)

    peers = bls.Peers(tmp_path, load)
    first = peers["add_sub"]
    assert peers["add_sub"] is first and loads == [tmp_path / "add_sub"]
    for name in ("missing", "no_config"):
        with pytest.raises(
            RunnerError, match=f"Failed for execute the inference request. Model '{name}' is not ready."
        ):
            peers[name]
    peers.close()
    assert first.closed and peers.loaded == {}


def test_peer_options_inherit_the_callers_python() -> None:
    options = api.ModelOptions(python="3.8", execute_timeout=5.0, backend_config={"k": "v"})
    peer = options.for_peer()
    assert peer.python is None and peer.fallback_python == "3.8"
    assert (peer.execute_timeout, peer.backend_config) == (5.0, {"k": "v"})
    assert api.ModelOptions(fallback_python="3.10").for_peer().fallback_python == "3.10"


def test_load_and_repository_show_models_keyword_arguments() -> None:
    model = inspect.signature(api.Model.__init__).parameters
    expected = [(p.name, p.default, p.annotation) for p in model.values() if p.kind is p.KEYWORD_ONLY]
    assert [name for name, _, _ in expected] == [f.name for f in dataclasses.fields(api.ModelOptions)]
    for function in (api.load, api.Repository.__init__):
        parameters = inspect.signature(function).parameters.values()
        assert [(p.name, p.default, p.annotation) for p in parameters if p.kind is p.KEYWORD_ONLY] == expected
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters)
