"""Type stub for stubforge's triton_python_backend_utils (``import triton_python_backend_utils as pb_utils``).

Covers the public API of triton_python_backend_utils.py and the names it re-exports from
_stubforge_config.py and _stubforge_wire.py.
"""

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, CapsuleType

# Response and request flags, with the values of Triton's TRITONSERVER_* enums.
TRITONSERVER_RESPONSE_COMPLETE_FINAL: Final = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START: Final = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END: Final = 2
TRITONSERVER_REQUEST_RELEASE_ALL: Final = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE: Final = 2

# config.pbtxt data type name ("TYPE_FP32", ..., "TYPE_STRING") -> numpy type (bool for TYPE_BOOL).
TRITON_STRING_TO_NUMPY: dict[str, type[Any]]

class TritonError(Exception):
    """An error a model puts in an InferenceResponse (or finds in a BLS response), with a Triton error code."""

    UNKNOWN: Final = 0
    INTERNAL: Final = 1
    NOT_FOUND: Final = 2
    INVALID_ARG: Final = 3
    UNAVAILABLE: Final = 4
    UNSUPPORTED: Final = 5
    ALREADY_EXISTS: Final = 6
    CANCELLED: Final = 7

    def __init__(self, message: str, code: int = 1) -> None:
        """An error with its message and code (TritonError.INTERNAL unless given)."""

    def message(self) -> str:
        """The error's message, as the client sees it."""

    def code(self) -> int:
        """The error's code: one of TritonError.UNKNOWN ... TritonError.CANCELLED."""

class TritonModelException(Exception):
    """Raised by pb_utils (and by models) when a call fails; the request then fails with its message."""

    def message(self) -> str:
        """The exception's message."""

class WireError(Exception):
    """A tensor with no Triton encoding (e.g. serialize_byte_tensor of a numeric array)."""

class Tensor:
    """A named input or output tensor of a request or response, holding a numpy array."""

    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        """An output tensor `name` holding `array` (numpy only; anything else raises TritonModelException)."""

    def name(self) -> str:
        """The tensor's name, as in config.pbtxt."""

    def as_numpy(self) -> npt.NDArray[Any]:
        """The tensor's data as a numpy array (a view of shared memory for numeric inputs)."""

    def is_cpu(self) -> bool:
        """Whether the tensor is in CPU memory (always True in the stubforge runner)."""

    def shape(self) -> list[int]:
        """The tensor's shape as a list of dimensions."""

    def triton_dtype(self) -> int | None:
        """The tensor's TRITONSERVER_DataType number (FP32 is 11, BYTES 13), or None for a non-Triton dtype."""

    def to_dlpack(self) -> CapsuleType:
        """A DLPack capsule sharing the tensor's (CPU) memory, for torch.from_dlpack and the like."""

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: object) -> Tensor:
        """A tensor `name` sharing the memory of a DLPack capsule or of an object with __dlpack__ (CPU only)."""

class InferenceResponse:
    """The answer to one request: output tensors, or an error."""

    def __init__(
        self,
        output_tensors: Iterable[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: str | Mapping[str, Any] | None = None,
    ) -> None:
        """A response carrying `output_tensors`, or `error` to fail the request."""

    def output_tensors(self) -> list[Tensor]:
        """The response's output tensors."""

    def has_error(self) -> bool:
        """Whether the response carries an error."""

    def error(self) -> TritonError | None:
        """The response's error, or None."""

class InferenceResponseSender:
    """A decoupled model's sender for one request: any number of responses, then the final flag; a model that
    is not decoupled sends its one response with it."""

    def __init__(self, index: int, decoupled: bool = True) -> None:
        """The sender for request number `index` of the current execute() (created by the runner)."""

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        """Send one response; flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL ends the request's stream."""

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request (in the runner: after `Model.submit(...).cancel()`)."""

class InferenceRequest:
    """A request the model received in execute(), or one it builds to call another model (BLS)."""

    def __init__(
        self,
        request_id: str | bytes = "",
        correlation_id: int | str = 0,
        inputs: Iterable[Tensor] | None = None,
        requested_output_names: Iterable[str | bytes] | None = None,
        model_name: str | bytes = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: object = None,
        trace: object = None,
        parameters: Mapping[str, bool | int | str] | None = None,
    ) -> None:
        """A BLS request for `model_name` (str, or bytes read as UTF-8, as a BYTES tensor holds it) with `inputs`,
        asking for `requested_output_names`; `parameters` reach the callee's request.parameters()."""

    def model_name(self) -> str:
        """The name of the model the request is for ("" for a request the model received)."""

    def inputs(self) -> list[Tensor]:
        """The request's input tensors."""

    def requested_output_names(self) -> list[str]:
        """The names of the outputs the client asked for."""

    def request_id(self) -> str:
        """The request's ID ("" if the client set none)."""

    def correlation_id(self) -> int:
        """The request's correlation ID (sequence ID), 0 if none."""

    def flags(self) -> int:
        """The request's flags (TRITONSERVER_REQUEST_FLAG_SEQUENCE_START/END)."""

    def parameters(self) -> str:
        """The request's parameters as a JSON string."""

    def timeout(self) -> int:
        """The request's timeout in microseconds (0: none)."""

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request (in the runner: after `Model.submit(...).cancel()`)."""

    def set_release_flags(self, flags: int) -> None:
        """TRITONSERVER_REQUEST_RELEASE_RESCHEDULE: return None for this request; it runs again later."""

    def get_response_sender(self) -> InferenceResponseSender:
        """The request's response sender: a decoupled model's stream, or the one response of a model that is
        not decoupled (then execute returns None)."""

    def exec(self, decoupled: bool = False) -> Any:
        """Run the request on another model of the repository (BLS): its InferenceResponse, or with
        decoupled=True a ResponseIterator over its responses."""

    async def async_exec(self, decoupled: bool = False) -> Any:
        """Run the request on another model (BLS) from an async execute(); await it for what exec() returns."""

class ResponseIterator:
    """The responses of a decoupled BLS request; the last one carries the final flag (empty if it came alone)."""

    def __init__(self, responses: Iterable[InferenceResponse]) -> None:
        """An iterator over `responses` (created by exec(decoupled=True))."""

    def __iter__(self) -> ResponseIterator:
        """Itself; after the end, iteration starts again from the first response."""

    def __next__(self) -> InferenceResponse:
        """The next response; StopIteration after the last."""

class ModelConfig:
    """The model's config as auto_complete_config(auto_complete_model_config) receives it."""

    def __init__(self, model_config: dict[str, Any]) -> None:
        """Wrap a model config dict (config.pbtxt as JSON)."""

    def as_dict(self) -> dict[str, Any]:
        """The (completed) model config as a dict."""

    def set_max_batch_size(self, max_batch_size: int) -> None:
        """Set max_batch_size (ValueError if config.pbtxt already sets a larger one)."""

    def set_dynamic_batching(self) -> None:
        """Turn on dynamic batching (ValueError if another scheduler is configured)."""

    def add_input(self, input: Mapping[str, Any]) -> None:
        """Declare an input: a dict with name, data_type and dims (optionally format, reshape, optional...)."""

    def add_output(self, output: Mapping[str, Any]) -> None:
        """Declare an output: a dict with name, data_type and dims (optionally reshape, label_filename...)."""

    def set_model_transaction_policy(self, transaction_policy_dict: Mapping[str, Any]) -> None:
        """Set the model transaction policy, e.g. {"decoupled": True}."""

class LogLevel(enum.Enum):
    """Logger.LogLevel: Triton's log levels."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3

    def __int__(self) -> int:
        """The level's number."""

    def __index__(self) -> int:
        """The level's number."""

_Level = LogLevel

class Logger:
    """Writes to Triton's server log (the runner forwards records, with file and line, with the next answer)."""

    LogLevel: type[_Level]
    INFO: _Level
    WARNING: _Level
    ERROR: _Level
    VERBOSE: _Level

    @staticmethod
    def log(message: str, level: _Level = ...) -> None:
        """Log `message` at `level` (Logger.INFO by default)."""

    @staticmethod
    def log_info(message: object) -> None:
        """Log `message` at INFO level."""

    @staticmethod
    def log_warn(message: object) -> None:
        """Log `message` at WARNING level."""

    @staticmethod
    def log_error(message: object) -> None:
        """Log `message` at ERROR level."""

    @staticmethod
    def log_verbose(message: object) -> None:
        """Log `message` at VERBOSE level."""

def serialize_byte_tensor(input_tensor: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """Encode a BYTES tensor Triton's way (4-byte length + bytes per element) into a 1-element object array."""

def deserialize_bytes_tensor(encoded_tensor: Buffer | npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """Decode Triton's BYTES encoding into a flat object array of bytes."""

def get_model_dir() -> str | None:
    """The directory of the model file, <model>/<version> (as Triton answers); None outside a running model."""

def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    """The request's input tensor called `name`, or None."""

def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    """The response's output tensor called `name`, or None."""

def get_input_config_by_name(model_config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The config entry of input `name` in a model config dict, or None."""

def get_output_config_by_name(model_config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The config entry of output `name` in a model config dict, or None."""

def triton_string_to_numpy(triton_type_string: str) -> type[Any]:
    """The numpy type of a config.pbtxt data type name ("TYPE_FP32" -> numpy.float32; KeyError if unknown)."""

def triton_to_numpy_type(data_type: int) -> type[np.generic] | None:
    """The numpy type of a numeric Triton DataType (model_config.proto enum), or None."""

def numpy_to_triton_type(data_type: type[Any] | np.dtype[Any]) -> int | None:
    """The numeric Triton DataType (model_config.proto enum) of a numpy type, or None."""

def using_decoupled_model_transaction_policy(model_config: Mapping[str, Any]) -> bool:
    """Whether a model config dict sets model_transaction_policy { decoupled: true }."""
