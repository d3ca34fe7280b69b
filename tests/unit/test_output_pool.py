"""The output pool never hands out memory a caller still holds."""

from __future__ import annotations

import numpy as np

from stubforge.runner.ipc.pool import MIN_BYTES, OutputPool


def address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_held_arrays_are_never_reused() -> None:
    pool = OutputPool()
    n = MIN_BYTES // 2  # float32: 2 MiB
    first = pool.array(n * 4, np.float32, [n])
    first[:] = 1
    second = pool.array(n * 4, np.float32, [n])
    assert not np.shares_memory(first, second) and (first == 1).all()
    first_address = address(first)
    kept = second.reshape(2, -1)[0]  # a view keeps second's buffer alive after `second` is gone
    del first, second
    third = pool.array(n * 4, np.float32, [n])
    assert address(third) == first_address  # first's buffer was free: reused
    assert not np.shares_memory(third, kept)


def test_small_arrays_are_not_pooled() -> None:
    pool = OutputPool()
    big = pool.array(MIN_BYTES * 3, np.int16, [MIN_BYTES * 3 // 2])
    assert big.dtype == np.int16 and big.shape == (MIN_BYTES * 3 // 2,)
    small = pool.array(16, np.float64, [2])
    assert small.shape == (2,) and len(pool._buffers) == 1
