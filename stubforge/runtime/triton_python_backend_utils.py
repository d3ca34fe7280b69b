# stubforge's triton_python_backend_utils for the harness stub: the names and behaviour a model.py uses from
# Triton's module of the same name, written from its documented API (no upstream code). Runs on Python 3.6+.

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
        return _triton_dtype(self._array.dtype)

    def _wire(self):
        """(Triton datatype, shape, flat payload to copy into the region)."""
        return _wire(self._array)


class InferenceRequest:
    def __init__(
        self, inputs, requested_output_names, request_id="", correlation_id=0, flags=0, parameters="{}"
    ):
        self._inputs = inputs
        self._requested = list(requested_output_names)
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self._parameters = parameters

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

    def parameters(self):
        return self._parameters

    def is_cancelled(self):
        return False


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


class Logger:
    """Records reach the parent with the next answer, as Triton's stub sends them to the server log."""

    @staticmethod
    def log(message, level=None):
        _records.append({"level": level or "INFO", "message": str(message)})

    @staticmethod
    def log_info(message):
        Logger.log(message, "INFO")

    @staticmethod
    def log_warn(message):
        Logger.log(message, "WARNING")

    @staticmethod
    def log_error(message):
        Logger.log(message, "ERROR")

    @staticmethod
    def log_verbose(message):
        Logger.log(message, "VERBOSE")


class LogLevel:
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    VERBOSE = "VERBOSE"


def _drain_logs():
    drained = list(_records)
    del _records[:]
    return drained


def _request_from_message(message, region):
    inputs = []
    for spec in message["inputs"]:
        raw = region[spec["offset"] : spec["offset"] + spec["nbytes"]]
        # Numeric inputs are views of the shared region: the parent wrote the bytes once, the model reads them.
        inputs.append(Tensor(spec["name"], _from_wire(spec["datatype"], spec["shape"], raw)))
    return InferenceRequest(
        inputs,
        message.get("requested_output_names", []),
        message.get("request_id", ""),
        message.get("correlation_id", 0),
        message.get("flags", 0),
        message.get("parameters", "{}"),
    )
