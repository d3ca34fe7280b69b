"""One shared-memory region and its two semaphores, created by the parent for one stub
(docs/triton-behaviour.md: "Shared-memory IPC").

The names follow Triton's (`<shm-region-prefix-name><uuid4>`); they are unlinked as soon as the stub has
opened them, so nothing is left in /dev/shm whatever happens to either process afterwards.
"""

from __future__ import annotations

import contextlib
import marshal
import mmap
import os
from typing import Any

import numpy as np
import posix_ipc

from stubforge.errors import StubforgeError
from stubforge.runner.ipc import layout
from stubforge.runner.ipc.pool import OutputPool


class ShmFull(StubforgeError):
    """/dev/shm cannot hold the region."""


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate the pages now: a region that is only ftruncate'd is sparse, and touching a page tmpfs cannot
    supply kills the process with SIGBUS instead of an error."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        free = os.statvfs("/dev/shm")
        raise ShmFull(
            f"/dev/shm has no room for {length >> 20} MiB more of shared memory "
            f"({(free.f_bavail * free.f_frsize) >> 20} MiB free)",
            hint="give the container more (docker run --shm-size=1g), or send smaller tensors",
        ) from exc


class Region:
    def __init__(self, name: str, default_size: int, growth: int) -> None:
        self.name = name
        self.growth = growth
        self._old_maps: list[mmap.mmap] = []
        p2s, s2p = layout.semaphore_names(name)
        self._shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=default_size)
        try:
            self.to_stub = posix_ipc.Semaphore("/" + p2s, posix_ipc.O_CREX, initial_value=0)
            self.to_parent = posix_ipc.Semaphore("/" + s2p, posix_ipc.O_CREX, initial_value=0)
        except BaseException:
            self.unlink()
            raise
        try:
            _reserve(self._shm.fd, 0, default_size)
            self.map = mmap.mmap(self._shm.fd, default_size)
        except BaseException:
            self.unlink()
            self._shm.close_fd()
            raise
        self.map[: len(layout.MAGIC)] = layout.MAGIC
        self._set(layout.OFF_SIZE, default_size)
        self.linked = True
        self.pool = OutputPool()

    @property
    def size(self) -> int:
        return len(self.map)

    def _get(self, offset: int) -> int:
        return layout.U64.unpack_from(self.map, offset)[0]

    def _set(self, offset: int, value: int) -> None:
        layout.U64.pack_into(self.map, offset, value)

    def heartbeat(self) -> int:
        return self._get(layout.OFF_HEARTBEAT)

    def refresh(self) -> None:
        """Map the whole region again when the stub grew it (it records the new size in the control block)."""
        if self._get(layout.OFF_SIZE) > len(self.map):
            size = os.fstat(self._shm.fd).st_size
            self._old_maps.append(self.map)
            self.map = mmap.mmap(self._shm.fd, size)

    def ensure(self, needed: int) -> None:
        if needed <= len(self.map):
            return
        self.refresh()
        new_size = layout.grown_size(len(self.map), needed, self.growth)
        if new_size > len(self.map):
            os.ftruncate(self._shm.fd, new_size)
            _reserve(self._shm.fd, len(self.map), new_size - len(self.map))
            self._set(layout.OFF_SIZE, new_size)
            self.refresh()

    def write_array(self, offset: int, array: np.ndarray) -> None:
        if array.nbytes:
            target = np.frombuffer(self.map, dtype=array.dtype, count=array.size, offset=offset)
            target[...] = array.reshape(-1)

    def read_array(self, offset: int, datatype: Any, shape: list[int]) -> np.ndarray:
        count = 1
        for dim in shape:  # not np.prod: its call overhead dominates small requests
            count *= dim
        if count == 0:
            return np.empty(shape, dtype=datatype)
        source = np.frombuffer(self.map, dtype=datatype, count=count, offset=offset).reshape(shape)
        target = self.pool.array(source.nbytes, datatype, shape)
        np.copyto(target, source)
        return target

    def write_message(self, header: dict[str, Any], at: int) -> int:
        """Write a header at `at` (aligned); returns the first free byte after it."""
        return self.write_bytes(marshal.dumps(header, layout.MARSHAL_VERSION), at)

    def write_bytes(self, data: bytes, at: int) -> int:
        """Write a marshalled message at `at` (aligned) and name it in the control block; returns the first free
        byte after it."""
        at = layout.align(at)
        end = at + len(data)
        if end > len(self.map):
            self.ensure(end)
        self.map[at:end] = data
        layout.MESSAGE_AT.pack_into(self.map, layout.OFF_MSG_OFFSET, at, len(data))
        return end

    def message_end(self) -> int:
        offset, length = layout.MESSAGE_AT.unpack_from(self.map, layout.OFF_MSG_OFFSET)
        return int(offset + length)

    def message_bytes(self) -> bytes:
        """The other side's last message, as bytes (the whole region mapped again first if it grew)."""
        size, _beat, offset, length = layout.CONTROL.unpack_from(self.map, layout.OFF_SIZE)
        if size > len(self.map):
            self.refresh()
        return self.map[offset : offset + length]

    def read_message(self) -> dict[str, Any]:
        return marshal.loads(self.message_bytes())

    def unlink(self) -> None:
        """Remove the names; the objects live on while mapped or open."""
        for name, kind in (
            ("/" + self.name, posix_ipc.unlink_shared_memory),
            *(("/" + n, posix_ipc.unlink_semaphore) for n in layout.semaphore_names(self.name)),
        ):
            with contextlib.suppress(posix_ipc.ExistentialError):
                kind(name)
        self.linked = False

    def close(self) -> None:
        self.unlink()
        for old in [*self._old_maps, self.map]:
            with contextlib.suppress(BufferError, ValueError):
                old.close()
        with contextlib.suppress(OSError):
            self._shm.close_fd()
        for sem in (self.to_stub, self.to_parent):
            with contextlib.suppress(posix_ipc.ExistentialError):
                sem.close()
