# stubforge's triton_python_backend_utils for the runner's stub: the names and behaviour a model.py uses from
# Triton's module of the same name, written from its documented API (no upstream code). Runs on Python 3.6+.

import enum
import json
import os
import sys

import numpy as np
from _stubforge_config import (  # noqa: F401 - re-exported: pb_utils.<name> is the public API
    TRITON_STRING_TO_NUMPY,
    ModelConfig,
    get_input_config_by_name,
    get_output_config_by_name,
    numpy_to_triton_type,
    triton_string_to_numpy,
    triton_to_numpy_type,
    using_decoupled_model_transaction_policy,
)
from _stubforge_config import normalize_config as _normalize_config  # noqa: F401 - for the stub loop
from _stubforge_wire import (  # noqa: F401 - re-exported: pb_utils.<name> is the public API
    WireError,
    _from_wire,
    _triton_dtype,
    _wire,
    _write_array,
    deserialize_bytes_tensor,
    serialize_byte_tensor,
)

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

_hooks = None  # the stub loop: sends decoupled responses and BLS requests to the parent


class TritonError(Exception):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=INTERNAL):
        super().__init__(message)
        self._message = message
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code


class TritonModelException(Exception):
    def message(self):
        return str(self)


class Tensor:
    def __init__(self, name, array):
        if not isinstance(array, np.ndarray):
            raise TritonModelException(f"Tensor {name}: expected a numpy array, got {type(array).__name__}")
        self._name = name
        self._array = array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True

    def shape(self):
        return list(self._array.shape)

    def triton_dtype(self):
        """The TRITONSERVER_DataType number (FP32 is 11, BYTES 13)."""
        return numpy_to_triton_type(self._array.dtype.type)

    def to_dlpack(self):
        """A DLPack capsule sharing this tensor's memory (CPU)."""
        if not hasattr(self._array, "__dlpack__"):
            raise TritonModelException("to_dlpack() needs numpy >= 1.22 in the model's env")
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(name, dlpack_tensor):
        """A Tensor sharing the memory of a DLPack capsule or of an object with __dlpack__ (CPU only)."""
        if not hasattr(np, "from_dlpack"):
            raise TritonModelException("from_dlpack() needs numpy >= 1.22 in the model's env")
        source = dlpack_tensor if hasattr(dlpack_tensor, "__dlpack__") else _Capsule(dlpack_tensor)
        return Tensor(name, np.from_dlpack(source))

    def _wire(self):
        """(Triton datatype, shape, flat payload to copy into the region)."""
        return _wire(self._array)


class _Capsule:
    """A bare DLPack capsule, presented the way numpy.from_dlpack wants it."""

    def __init__(self, capsule):
        self._capsule = capsule

    def __dlpack__(self, *args, **kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU, device 0


def get_model_dir():
    """The directory of the model file: <model>/<version>, as Triton's stub answers (not the directory holding
    config.pbtxt). A Python-based backend reads its per-model files (model.json) from here."""
    return _hooks.version_dir if _hooks is not None else None


def _text(value, what):
    """A name as Triton's stub takes it: str, or bytes (a BYTES tensor element) read as UTF-8."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError("InferenceRequest: " + what + " must be str or bytes, got " + type(value).__name__)
    return value


def _parameters_json(parameters):
    """A BLS request's parameters as Triton's stub keeps them: json.dumps of a dict with str keys and
    bool/int/str values (None is {})."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise TypeError("InferenceRequest: parameters must be a dict, got " + type(parameters).__name__)
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(
                "Expect parameters keys to have type str, found type " + str(type(key))
            )
        if not isinstance(value, (bool, int, str)):
            raise TritonModelException(
                "Expect parameters values to have type bool/int/str, found type " + str(type(value))
            )
    return json.dumps(parameters)


class InferenceRequest:
    """A request the model received, or one it builds for BLS:
    InferenceRequest(model_name=..., inputs=[Tensor...], requested_output_names=[...]).exec().

    The arguments in Triton's order (request_id, correlation_id, inputs, requested_output_names, model_name, ...);
    names may be bytes, as a BYTES tensor holds them."""

    def __init__(
        self,
        request_id="",
        correlation_id=0,
        inputs=None,
        requested_output_names=None,
        model_name="",
        model_version=-1,
        flags=0,
        timeout=0,
        preferred_memory=None,
        trace=None,
        parameters=None,
    ):
        if inputs is None or requested_output_names is None:
            raise TypeError("InferenceRequest: inputs, requested_output_names and model_name are required")
        if not isinstance(correlation_id, (int, str)):
            raise TritonModelException("Correlation ID must be integer or string")
        self._model_name = _text(model_name, "model_name")
        self._inputs = list(inputs)
        self._requested = [_text(n, "requested_output_names") for n in requested_output_names]
        self._request_id = _text(request_id, "request_id")
        self._correlation_id = correlation_id
        self._flags = flags
        self._timeout = timeout
        self._model_version = model_version
        self._parameters = _parameters_json(parameters)
        self._sender = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    # A received request's place in its execute batch (None: a request the model built, for BLS) and whether
    # its model is decoupled: its response sender is made when the model first asks for it. The other class
    # values are what a received request starts with (set per instance only when they differ).
    _index = None
    _decoupled = False
    _model_name = ""
    _timeout = 0
    _model_version = -1
    _sender = None
    _release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    @classmethod
    def _received(cls, inputs, requested, request_id, correlation_id, flags, parameters, index, decoupled):
        """A request as execute() receives it (fields from the parent, already checked as Triton checks them)."""
        request = cls.__new__(cls)
        request._inputs = inputs
        request._requested = requested  # handed out as copies: one list serves every request of a plan
        request._request_id = request_id
        request._correlation_id = correlation_id
        request._flags = flags
        request._parameters = parameters
        request._index = index
        request._decoupled = decoupled
        return request

    def model_name(self):
        return self._model_name

    def inputs(self):
        return list(self._inputs)

    def requested_output_names(self):
        return list(self._requested)

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def flags(self):
        return self._flags

    def timeout(self):
        """The request's timeout in microseconds (0: none)."""
        return self._timeout

    def parameters(self):
        return self._parameters

    def is_cancelled(self):
        """True once the caller cancelled this request (the runner's harness: Model.submit(...).cancel())."""
        if self._index is None or _hooks is None:
            return False
        return _hooks.is_cancelled(self._index)

    def set_release_flags(self, flags):
        """TRITONSERVER_REQUEST_RELEASE_RESCHEDULE: execute returns None for this request and it runs again in a
        later execute (only with a sequence batcher or dynamic batching, as Triton requires)."""
        self._release_flags = flags

    def get_response_sender(self):
        if self._sender is None and self._index is not None:
            self._sender = InferenceResponseSender(self._index, self._decoupled)
        if self._sender is None:
            raise TritonModelException(
                "Unable to send response. Response sender has no reference to the decoupled state of the model."
            )
        return self._sender

    def exec(self, decoupled=False):
        """Run another model of the repository (BLS): its InferenceResponse, or with decoupled=True an iterator
        of its responses (the last one carries the final flag; it is empty when the model sent the flag alone)."""
        if _hooks is None:
            raise TritonModelException("BLS requests can only be sent from a running model")
        responses = _hooks.bls(self, bool(decoupled))
        return ResponseIterator(responses) if decoupled else responses[0]

    async def async_exec(self, decoupled=False):
        return self.exec(decoupled)


class ResponseIterator:
    """The responses of a decoupled BLS request. Iterating again after the end starts from the first one,
    as Triton's iterator does."""

    def __init__(self, responses):
        self._responses = list(responses)
        self._index = 0

    def __iter__(self):
        if self._index >= len(self._responses):
            self._index = 0
        return self

    def __next__(self):
        if self._index >= len(self._responses):
            raise StopIteration("Iteration is done for the responses.")
        self._index += 1
        return self._responses[self._index - 1]


class InferenceResponseSender:
    """request.get_response_sender(): a decoupled model sends any number of responses, then the final flag; a
    non-decoupled one may send its single response through it (Triton's checks and words, in this order)."""

    def __init__(self, index, decoupled=True):
        self._index = index
        self._decoupled = decoupled
        self._closed = False
        self._sent = 0

    def _count(self, response, flags):
        if not self._decoupled:
            if response is not None and self._sent > 0:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send more than one response."
                )
            if response is None and flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL and self._sent == 0:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send complete final before sending a "
                    "response."
                )
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self._closed = True
        self._sent += 1

    def send(self, response=None, flags=0):
        if flags != TRITONSERVER_RESPONSE_COMPLETE_FINAL and flags != 0:
            raise TritonModelException("Unable to send response. Unsupported flag provided.")
        if flags == 0 and response is None:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero."
            )
        self._count(response, flags)
        _hooks.send_response(self._index, response, flags)

    def is_cancelled(self):
        return _hooks.is_cancelled(self._index) if _hooks is not None else False


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None, parameters=None):
        self._outputs = list(output_tensors or [])
        self._error = error
        self._parameters = parameters

    def output_tensors(self):
        return list(self._outputs)

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


def get_input_tensor_by_name(request, name):
    for tensor in request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(response, name):
    for tensor in response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


_records = []


class LogLevel(enum.Enum):
    """Logger.LogLevel: Triton's enum (INFO 0, WARNING 1, ERROR 2, VERBOSE 3), also as Logger.INFO etc."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3

    def __int__(self):
        return self.value

    __index__ = __int__


_Level = LogLevel


class Logger:
    """Records reach the parent with the next answer, as Triton's stub sends them to the server log (with the
    calling file and line)."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message, level=LogLevel.INFO):
        if not isinstance(message, (str, bytes)) or not isinstance(level, LogLevel):
            raise TypeError(
                "log(): incompatible function arguments. The following argument types are supported:\n"
                "    1. (message: str, level: triton_python_backend_utils.Logger.LogLevel = LogLevel.INFO) -> None"
            )
        _record(message, level, 2)

    @staticmethod
    def log_info(message):
        _record(message, LogLevel.INFO, 2)

    @staticmethod
    def log_warn(message):
        _record(message, LogLevel.WARNING, 2)

    @staticmethod
    def log_error(message):
        _record(message, LogLevel.ERROR, 2)

    @staticmethod
    def log_verbose(message):
        _record(message, LogLevel.VERBOSE, 2)


def _record(message, level, depth):
    if isinstance(message, bytes):
        message = message.decode("utf-8")
    elif not isinstance(message, str):
        raise TypeError("Logger: message must be str, got " + type(message).__name__)
    caller = sys._getframe(depth)
    _records.append(
        {
            "level": level.name,
            "message": message,
            "file": os.path.basename(caller.f_code.co_filename),
            "line": caller.f_lineno,
        }
    )


def _drain_logs():
    drained = list(_records)
    del _records[:]
    return drained
