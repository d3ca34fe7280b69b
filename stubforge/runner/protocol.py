"""The messages between the runner and one stub process, and the tensors they carry in its shared memory.

initialize (with the config auto_complete_config may complete), execute with the requests of one batch, the
responses a decoupled model streams (each acknowledged), BLS calls the model makes on the way (answered through a
callback), and the final reply. Tensors travel in Triton's encodings (see runtime/_stubforge_wire), laid out
after the message that names them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from stubforge.errors import RunnerError
from stubforge.runner import requests as validate
from stubforge.runner.launcher.stub import ModelError, StubError, StubProcess, place
from stubforge.runner.runtime import _stubforge_wire as wire
from stubforge.runner.status import TritonStatus, code_name, load_failed

# Numeric Triton types and their numpy dtypes: the runtime's table (BYTES travels encoded, see _stubforge_wire).
TRITON_TO_NUMPY = {k: np.dtype(v) for k, v in wire._TRITON_TO_NUMPY.items() if k != "BYTES"}
NUMPY_TO_TRITON = {v: k for k, v in TRITON_TO_NUMPY.items()}

Tensors = dict[str, np.ndarray]


def initialize_header(
    *,
    config: dict[str, Any],
    instance: str,
    model_dir: Path,
    version: str,
    name: str,
    auto_complete: bool,
) -> dict[str, Any]:
    """The initialize message: the args Triton passes to initialize(), and whether to auto-complete first."""
    args = {
        "model_config": json.dumps(config),
        "model_instance_kind": "CPU",
        "model_instance_name": instance,
        "model_instance_device_id": "0",
        "model_repository": str(model_dir),
        "model_version": version,
        "model_name": name,
    }
    return {"op": "initialize", "args": args, "auto_complete": auto_complete}


def check_reply(
    model_name: str, reply: dict[str, Any], logs: list[dict[str, str]], *, version: str = "1"
) -> dict[str, Any]:
    """`reply` when the model's initialize (or auto_complete_config) succeeded; its log records go to `logs`
    either way, its error is raised with the status tritonserver's load API answers."""
    logs.extend(reply.get("logs", []))
    if not reply.get("ok"):
        error = reply.get("error", {})
        if error.get("origin") == "region":
            raise StubError(
                f"{model_name}: {error.get('message', '')}",
                hint="/dev/shm has too little room for the region (`df -h /dev/shm`; in a container raise "
                "--shm-size), or a file-size limit applies to the stub (ulimit -f); the model's outputs did "
                "not fit in the region",
                details=error.get("traceback", ""),
            )
        raise ModelError(
            f"{model_name}: {error.get('type', 'Error')}: {error.get('message', '')}",
            hint="the model's own error; its Python traceback is shown above",
            details=error.get("traceback", ""),
            error_type=error.get("type", ""),
            status=TritonStatus(
                "INVALID_ARG",  # the load API answers 400
                load_failed(model_name, version, error.get("triton") or error.get("message", "")),
            ),
        )
    return reply


def encode_tensor(name: str, array: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The spec that names one tensor in a message (without its offset) and the payload written for it."""
    datatype, shape, payload = wire._wire(array)
    return {"name": name, "datatype": datatype, "shape": shape, "nbytes": int(payload.nbytes)}, payload


def read_tensor(stub: StubProcess, spec: dict[str, Any]) -> np.ndarray:
    """One tensor (an output, or a BLS call's input) out of an instance's region."""
    region = stub.region
    if spec["datatype"] == "BYTES":
        raw = bytes(region.map[spec["offset"] : spec["offset"] + spec["nbytes"]])
        return wire.deserialize_bytes_tensor(raw).reshape(spec["shape"])
    return region.read_array(spec["offset"], TRITON_TO_NUMPY[spec["datatype"]], spec["shape"])


def _datatype(array: np.ndarray) -> str:
    return "BYTES" if wire._is_bytes(array) else NUMPY_TO_TRITON.get(array.dtype, str(array.dtype))


Parameters = dict[str, Union[bool, int, float, str]]


def parameters_json(parameters: Parameters | None) -> str:
    """Request parameters as the python backend hands them to request.parameters(): the server's compact JSON,
    in the order given (docs/triton-behaviour.md, "Request parameters")."""
    for key, value in (parameters or {}).items():
        if not isinstance(key, str) or not isinstance(value, (bool, int, float, str)):
            raise RunnerError(
                f"request parameter {key!r}: {type(value).__name__} is not a Triton parameter type",
                hint="parameter names are str, values bool, int, float or str",
            )
    return json.dumps(parameters or {}, separators=(",", ":"), ensure_ascii=False)


def check_request(config: dict[str, Any], inputs: Tensors, outputs: list[str] | None = None) -> None:
    """Triton's request checks (requested outputs, input names, data types, shapes, batch size), without
    sending anything."""
    validate.check_outputs(config, outputs or [])
    wires = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        wires[name] = (_datatype(array), list(array.shape))
    validate.check(config, wires)


class RequestEncoder:
    """Requests as execute messages, checked as Triton checks them.

    The checks' answer (the shapes the model sees after a config reshape) is kept for the last signature (config,
    names, types, shapes): a stream of like requests is checked once.
    """

    def __init__(self) -> None:
        self._checked: tuple[Any, dict[str, list[int]]] = (None, {})

    def encode(
        self,
        config: dict[str, Any],
        inputs: Tensors,
        outputs: list[str] | None,
        parameters: Parameters | None = None,
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        # Triton checks the requested outputs before any input (core's InferenceRequest::Normalize).
        validate.check_outputs(config, outputs or [])
        arrays, specs, wires = [], [], {}
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype not in NUMPY_TO_TRITON and not wire._is_bytes(array):
                raise RunnerError(
                    f"input {name}: dtype {array.dtype} is not a Triton tensor type",
                    hint="numeric types, bool, and bytes/str (object, S or U arrays) for BYTES",
                )
            spec, payload = encode_tensor(name, array)
            wires[name] = (spec["datatype"], spec["shape"])
            arrays.append(payload)
            specs.append(spec)
        # Triton's checks and wording; a reshape in the config changes the shape the model sees.
        signature = (id(config), tuple((n, d, tuple(sh)) for n, (d, sh) in wires.items()))
        if signature == self._checked[0]:  # the same names, types and shapes as the last request: same answer
            reached = self._checked[1]
        else:
            reached = validate.check(config, wires)
            self._checked = (signature, reached)
        for spec in specs:
            spec["shape"] = reached[spec["name"]]
        message = {"inputs": specs, "requested_output_names": list(outputs or [])}
        if parameters:
            message["parameters"] = parameters_json(parameters)
        return message, arrays


@dataclass
class StreamedResponse:
    """One response a model sent through a response sender during execute(), for request number `request` of
    the batch; `empty` is a send of the final flag alone (Triton's empty final response)."""

    request: int
    tensors: Tensors
    flags: int
    error: TritonStatus | None
    empty: bool = False

    @property
    def final(self) -> bool:
        return bool(self.flags & FINAL)


@dataclass
class Finished:
    """The end of one execute(): the stub's final reply, with the responses of a non-decoupled model."""

    reply: dict[str, Any]


Event = Union[StreamedResponse, Finished]
BlsAnswer = Callable[[StubProcess, dict[str, Any]], dict[str, Any]]
CancelCheck = Callable[[int], bool]
FINAL = 1  # TRITONSERVER_RESPONSE_COMPLETE_FINAL


def carried_error(error: Any) -> TritonStatus | None:
    """The TritonError a response carries ({"message", "code"} from the stub) as a client receives it."""
    if not error:
        return None
    if isinstance(error, str):
        return TritonStatus("INTERNAL", error)
    return TritonStatus(code_name(error.get("code")), str(error.get("message", "")))


def place_inputs(requests: list[dict[str, Any]], arrays: list[np.ndarray]) -> list[int]:
    """Give each input spec of these requests the offset its tensor is written at (StubProcess.request's
    layout, in order); returns the offsets."""
    offsets = place([a.nbytes for a in arrays])
    specs = [spec for message in requests for spec in message["inputs"]]
    for spec, offset in zip(specs, offsets):
        spec["offset"] = offset
    return offsets


def execute(
    stub: StubProcess,
    requests: list[dict[str, Any]],
    arrays: list[np.ndarray],
    *,
    timeout: float | None,
    answer_bls: BlsAnswer,
    is_cancelled: CancelCheck = lambda index: False,
    first_reply: dict[str, Any] | None = None,
) -> Generator[Event, None, None]:
    """One execute() on one instance: each response a decoupled model sends, BLS calls answered on the way
    through `answer_bls`, then Finished. The requests' input tensors are `arrays`, in order. `first_reply`: the
    execute was already sent (by the lane) and this is the stub's first answer to it."""
    finished = False
    try:
        if first_reply is None:
            place_inputs(requests, arrays)
            reply = stub.request({"op": "execute", "requests": requests}, arrays, timeout=timeout)
        else:
            reply = first_reply
        while reply.get("op") in ("response", "bls", "cancelled"):
            if reply["op"] == "response":
                tensors = {t["name"]: read_tensor(stub, t) for t in reply["tensors"]}
                yield StreamedResponse(
                    reply["request"],
                    tensors,
                    reply["flags"],
                    carried_error(reply.get("error")),
                    bool(reply.get("empty")),
                )
                reply = stub.request({"op": "ack"}, start=stub.message_end(), timeout=timeout)
            elif reply["op"] == "cancelled":
                answer = {"op": "cancelled", "cancelled": is_cancelled(int(reply["request"]))}
                reply = stub.request(answer, start=stub.message_end(), timeout=timeout)
            else:
                reply = answer_bls(stub, reply)
        finished = True
    finally:
        if not finished and stub.alive() and not stub.exit_reason:
            # Left in the middle of an exchange (the caller stopped, an error, Ctrl-C): the stub waits for an
            # answer that will not come, and the next request would be read as that answer. Stop it.
            stub.kill()
            stub.exit_reason = "interrupted in the middle of a request"
    yield Finished(reply)


def outputs(stub: StubProcess, specs: list[dict[str, Any]], requested: list[str] | None) -> Tensors:
    """A response's output tensors from an instance's region (only the requested ones, as the server sends)."""
    tensors = {o["name"]: read_tensor(stub, o) for o in specs}
    if requested:
        tensors = {k: v for k, v in tensors.items() if k in requested}
    return tensors


BlsResponse = tuple[list[tuple[dict[str, Any], np.ndarray]], Union[str, None]]


def answer_bls_call(stub: StubProcess, responses: list[BlsResponse], timeout: float | None) -> dict[str, Any]:
    """Send the answer to a BLS call: its responses (one, or a decoupled model's stream), each its outputs as
    encode_tensor made them and its error; return the stub's next message."""
    start = stub.message_end()
    specs = [spec for tensors, _ in responses for spec, _ in tensors]
    payloads = [payload for tensors, _ in responses for _, payload in tensors]
    for spec, offset in zip(specs, place([p.nbytes for p in payloads], start)):
        spec["offset"] = offset
    header = {
        "op": "bls_reply",
        "tensors": specs,
        "responses": [(len(tensors), error) for tensors, error in responses],
    }
    return stub.request(header, payloads, start=start, timeout=timeout)
