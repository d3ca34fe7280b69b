"""One request's inputs built from a model's config: its dtypes and dims, -1 → 1, a batch of 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# ModelConfig DataType name → (numpy dtype, Triton wire dtype). BF16 has no numpy type: sent as raw FP32 bits
# is not what Triton expects, so it is reported as unsupported instead.
DTYPES: dict[str, tuple[Any, str]] = {
    "TYPE_BOOL": (np.bool_, "BOOL"),
    "TYPE_UINT8": (np.uint8, "UINT8"),
    "TYPE_UINT16": (np.uint16, "UINT16"),
    "TYPE_UINT32": (np.uint32, "UINT32"),
    "TYPE_UINT64": (np.uint64, "UINT64"),
    "TYPE_INT8": (np.int8, "INT8"),
    "TYPE_INT16": (np.int16, "INT16"),
    "TYPE_INT32": (np.int32, "INT32"),
    "TYPE_INT64": (np.int64, "INT64"),
    "TYPE_FP16": (np.float16, "FP16"),
    "TYPE_FP32": (np.float32, "FP32"),
    "TYPE_FP64": (np.float64, "FP64"),
    "TYPE_STRING": (np.object_, "BYTES"),
}


class UnsupportedInput(Exception):
    """An input stubforge cannot synthesise (the request is then skipped, not failed)."""


@dataclass
class SyntheticInput:
    name: str
    datatype: str  # Triton wire name: FP32, BYTES, ...
    data: np.ndarray


def _shape(dims: list[int], max_batch_size: int) -> list[int]:
    shape = [1 if d < 0 else int(d) for d in dims]
    return ([1, *shape]) if max_batch_size > 0 else shape


def _values(dtype: Any, shape: list[int]) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    if dtype is np.object_:
        return np.array([b"stubforge"] * count, dtype=np.object_).reshape(shape)
    if dtype is np.bool_:
        return (np.arange(count) % 2 == 0).reshape(shape)
    # Small positive values: valid for every integer type, exact in FP16, never an index out of range of 1.
    return (np.arange(count) % 4 + 1).astype(dtype).reshape(shape)


def inputs_for(config: dict[str, Any]) -> list[SyntheticInput]:
    """Inputs of the model config (as the server reports it, JSON form, so auto-completed fields count)."""
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    built = []
    for spec in config.get("input", []):
        name = spec["name"]
        type_name = spec.get("data_type", "TYPE_FP32")
        if type_name not in DTYPES:
            raise UnsupportedInput(f"input {name}: {type_name} has no numpy type to synthesise")
        dims = [int(d) for d in spec.get("dims", [])]
        dtype, wire = DTYPES[type_name]
        built.append(SyntheticInput(name, wire, _values(dtype, _shape(dims, max_batch_size))))
    return built
