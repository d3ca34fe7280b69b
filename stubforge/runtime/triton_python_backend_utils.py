# stubforge's triton_python_backend_utils for the harness stub: the names and behaviour a model.py uses from
# Triton's module of the same name, written from its documented API (no upstream code). Runs on Python 3.6+.

import struct

import numpy as np

_LENGTH = struct.Struct("<I")

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2

_TRITON_TO_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_NUMPY_TO_TRITON = {np.dtype(v).str: k for k, v in _TRITON_TO_NUMPY.items() if k != "BYTES"}


def triton_string_to_numpy(triton_type_string):
    """'TYPE_FP32' (config) or 'FP32' (wire) → numpy type."""
    name = triton_type_string[5:] if triton_type_string.startswith("TYPE_") else triton_type_string
    if name == "STRING":
        name = "BYTES"
    return _TRITON_TO_NUMPY.get(name)


def _is_bytes(array):
    return array.dtype == np.object_ or array.dtype.type in (np.bytes_, np.str_)


def serialize_byte_tensor(input_tensor):
    """Triton's BYTES encoding: each element as a 4-byte little-endian length and its bytes, in C order.
    Returns a 1-element object array holding the encoded bytes (an empty array for an empty tensor)."""
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if not _is_bytes(input_tensor):
        raise TritonModelException(f"cannot serialize a tensor of dtype {input_tensor.dtype} as BYTES")
    parts = []
    for item in input_tensor.reshape(-1, order="C"):
        if isinstance(item, np.ndarray):
            item = item.item()
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif not isinstance(item, bytes):
            item = str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    flat = np.empty([1], dtype=np.object_)
    flat[0] = b"".join(parts)
    return flat


def deserialize_bytes_tensor(encoded_tensor):
    """The inverse of serialize_byte_tensor: a flat object array of bytes."""
    buffer = bytes(encoded_tensor)
    items = []
    offset = 0
    while offset < len(buffer):
        (length,) = _LENGTH.unpack_from(buffer, offset)
        offset += 4
        items.append(buffer[offset : offset + length])
        offset += length
    array = np.empty([len(items)], dtype=np.object_)
    array[:] = items
    return array


def _wire(array):
    if _is_bytes(array):
        encoded = serialize_byte_tensor(array)
        payload = np.frombuffer(encoded[0] if encoded.size else b"", dtype=np.uint8)
        return "BYTES", list(array.shape), payload
    array = np.ascontiguousarray(array)
    return _triton_dtype(array.dtype), list(array.shape), array


def _from_wire(datatype, shape, raw):
    """An array from its region bytes: numeric types as a view (no copy), BYTES decoded."""
    if datatype == "BYTES":
        return deserialize_bytes_tensor(raw).reshape(shape)
    dtype = np.dtype(_TRITON_TO_NUMPY[datatype])
    count = 1
    for dim in shape:  # not np.prod: its overhead dominates small requests
        count *= dim
    if count == 0:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


def _triton_dtype(dtype):
    name = _NUMPY_TO_TRITON.get(np.dtype(dtype).str)
    if name is None:
        raise TritonModelException(f"output dtype {dtype} is not a Triton tensor type")
    return name


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


def get_input_config_by_name(model_config, name):
    for spec in model_config.get("input", []):
        if spec.get("name") == name:
            return spec
    return None


def get_output_config_by_name(model_config, name):
    for spec in model_config.get("output", []):
        if spec.get("name") == name:
            return spec
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


def _write_array(region, offset, array):
    target = np.frombuffer(region, dtype=array.dtype, count=array.size, offset=offset)
    target[...] = array.reshape(-1)
