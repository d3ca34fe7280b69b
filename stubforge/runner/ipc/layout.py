"""Byte layout of a harness region: one fact each, shared by the parent (here) and the stub (stub_src/sfstub.c
and runtime/_stubforge_loop.py repeat these numbers; tests/unit/test_ipc_layout.py checks they agree).

The control block sits at the control offset (argv 7 of the stub, 0 here). A message is a header (dicts, lists,
strings and numbers in marshal format version 2, which every Python from 3.6 to 3.13 reads and writes, and which
costs a few microseconds where JSON cost a quarter of a small round trip) at (message offset, message length);
tensor bytes live elsewhere in the region at offsets the header names.
"""

from __future__ import annotations

import struct

MAGIC = b"SFSTUB01"
OFF_SIZE = 8  # u64: current region size (whoever grows the region writes it)
OFF_HEARTBEAT = 16  # u64: incremented by the stub every HEARTBEAT_S
OFF_MSG_OFFSET = 24  # u64
OFF_MSG_LENGTH = 32  # u64
CONTROL_SIZE = 4096  # tensor data starts after the control block
ALIGN = 64  # tensor offsets are cache-line aligned (and numpy-aligned for every dtype)
HEARTBEAT_S = 0.3
MARSHAL_VERSION = 2
U64 = struct.Struct("<Q")
# The adjacent fields read or written together: size, heartbeat, message offset, message length; and the message's
# offset and length.
CONTROL = struct.Struct("<QQQQ")
MESSAGE_AT = struct.Struct("<QQ")


def align(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def grown_size(current: int, needed: int, growth: int) -> int:
    """Triton's rule: grow by whole growth steps, growth * (need / growth + 1) (docs/triton-behaviour.md:
    "Shared-memory IPC")."""
    if needed <= current:
        return current
    missing = needed - current
    return current + growth * (missing // growth + 1)


def semaphore_names(region: str) -> tuple[str, str]:
    """(parent→stub, stub→parent); the stub derives the same names from the region name."""
    return f"{region}_p2s", f"{region}_s2p"
