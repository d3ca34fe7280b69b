# Tensor bytes in the region, for both sides: the stub imports it as a top-level module from the python-lib dir,
# the parent as stubforge.runner.runtime._stubforge_wire. Triton's BYTES encoding. Python 3.6+, numpy only.
import struct

import numpy as np

_LENGTH = struct.Struct("<I")


class WireError(Exception):
    """A tensor with no Triton encoding (the stub turns it into a TritonModelException)."""


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


def _is_bytes(array):
    return array.dtype == np.object_ or array.dtype.type in (np.bytes_, np.str_)


def serialize_byte_tensor(input_tensor):
    """Triton's BYTES encoding: each element as a 4-byte little-endian length and its bytes, in C order.
    Returns a 1-element object array holding the encoded bytes (an empty array for an empty tensor)."""
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if not _is_bytes(input_tensor):
        raise WireError(f"cannot serialize a tensor of dtype {input_tensor.dtype} as BYTES")
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
        raise WireError(f"output dtype {dtype} is not a Triton tensor type")
    return name


def _write_array(region, offset, array):
    target = np.frombuffer(region, dtype=array.dtype, count=array.size, offset=offset)
    target[...] = array.reshape(-1)
