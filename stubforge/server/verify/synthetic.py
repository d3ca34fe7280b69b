"""One request's inputs built from a model's config: its dtypes and dims, -1 → 1, a batch of 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stubforge.runner.runtime._stubforge_config import TRITON_STRING_TO_NUMPY

# ModelConfig DataType name → (numpy type, Triton wire dtype), from the runner's own table. BF16 has no numpy
# type, so such an input is reported as unsupported instead of being sent wrong.
DTYPES: dict[str, tuple[Any, str]] = {
    name: (np.dtype(numpy_type).type, "BYTES" if name == "TYPE_STRING" else name[len("TYPE_") :])
    for name, numpy_type in TRITON_STRING_TO_NUMPY.items()
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
