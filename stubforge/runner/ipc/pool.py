"""Recycled memory for large outputs copied out of the region.

A fresh 64 MB array costs as much in page faults as the copy into it; an array from a buffer the caller has
dropped costs only the copy. A buffer is reused only when nothing but the pool refers to it (CPython reference
counts), so an array a caller still holds is never overwritten.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

MIN_BYTES = 1 << 20  # below this, allocation is cheap and pooling is not worth a lookup
MAX_BUFFERS = 4


class OutputPool:
    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []

    def array(self, nbytes: int, dtype: Any, shape: list[int]) -> np.ndarray:
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype=dtype)
        for buffer in self._buffers:
            # 3 = the pool's list + this loop variable + getrefcount's argument: no array views it.
            if buffer.nbytes >= nbytes and sys.getrefcount(buffer) == 3:
                return buffer[:nbytes].view(dtype).reshape(shape)
        buffer = np.empty(nbytes, dtype=np.uint8)
        if len(self._buffers) >= MAX_BUFFERS:
            self._buffers.pop(0)
        self._buffers.append(buffer)
        return buffer[:nbytes].view(dtype).reshape(shape)
