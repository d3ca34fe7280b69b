# stubforge's triton_python_backend_utils for the runner's stub: the names and behaviour a model.py uses from
# Triton's module of the same name, written from its documented API (no upstream code). Runs on Python 3.6+.

import json

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
    """The model's directory (the one holding config.pbtxt)."""
    return _hooks.model_dir if _hooks is not None else None


class InferenceRequest:
    """A request the model received, or one it builds for BLS:
    InferenceRequest(model_name=..., inputs=[Tensor...], requested_output_names=[...]).exec()."""

    def __init__(
        self,
        model_name="",
        inputs=None,
        requested_output_names=None,
        request_id="",
        correlation_id=0,
        flags=0,
        timeout=0,
        model_version=-1,
        parameters="{}",
        **_ignored,
    ):
        self._model_name = model_name
        self._inputs = list(inputs or [])
        self._requested = list(requested_output_names or [])
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self._model_version = model_version
        self._timeout = timeout
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters)
        self._sender = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

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
        if self._sender is None or _hooks is None:
            return False
        return _hooks.is_cancelled(self._sender._index)

    def set_release_flags(self, flags):
        """TRITONSERVER_REQUEST_RELEASE_RESCHEDULE: execute returns None for this request and it runs again in a
        later execute (only with a sequence batcher or dynamic batching, as Triton requires)."""
        self._release_flags = flags

    def get_response_sender(self):
        if self._sender is None:
            raise TritonModelException(
                "Unable to send response. Response sender has no reference to the decoupled state of the model."
            )
        return self._sender

    def exec(self, decoupled=False):
        """Run another model of the repository (BLS); returns its InferenceResponse."""
        if decoupled:
            raise TritonModelException("the stubforge runner does not run decoupled BLS requests yet")
        if _hooks is None:
            raise TritonModelException("BLS requests can only be sent from a running model")
        return _hooks.bls(self)

    async def async_exec(self, decoupled=False):
        return self.exec(decoupled)


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


def _request_from_message(message, region, sender=None):
    inputs = []
    for spec in message["inputs"]:
        raw = region[spec["offset"] : spec["offset"] + spec["nbytes"]]
        # Numeric inputs are views of the shared region: the parent wrote the bytes once, the model reads them.
        inputs.append(Tensor(spec["name"], _from_wire(spec["datatype"], spec["shape"], raw)))
    request = InferenceRequest(
        inputs=inputs,
        requested_output_names=message.get("requested_output_names", []),
        request_id=message.get("request_id", ""),
        correlation_id=message.get("correlation_id", 0),
        flags=message.get("flags", 0),
        parameters=message.get("parameters", "{}"),
    )
    request._sender = sender
    return request
