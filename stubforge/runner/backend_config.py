"""The python backend's `--backend-config python,KEY=VALUE` settings the runner honours, validated.

Keys and defaults are Triton's (docs/triton-behaviour.md, "Shared-memory IPC"); every value is checked
before a region is created, so a bad one is a clear error (exit 2), never an overflow deep in mmap.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from stubforge.errors import StubforgeError

DEFAULT_SHM_PREFIX = "triton_python_backend_shm_region_"
MIN_SHM_SIZE = 1 << 20
# POSIX names live in /dev/shm as files: NAME_MAX (255) covers "sem." + prefix + uuid4 (36) + "_p2s".
MAX_PREFIX_LENGTH = 255 - len("sem.") - 36 - len("_p2s")
# off_t is signed 64-bit: no region can be larger.
MAX_BYTES = (1 << 63) - 1


class BackendConfigError(StubforgeError):
    """A --backend-config value the python backend cannot use."""


@dataclass(frozen=True)
class ShmSettings:
    prefix: str = DEFAULT_SHM_PREFIX
    default_size: int = MIN_SHM_SIZE
    growth: int = MIN_SHM_SIZE


def _shm_total() -> int | None:
    try:
        return shutil.disk_usage("/dev/shm").total
    except OSError:
        return None


def _size(config: Mapping[str, str], key: str, minimum: int) -> int:
    text = config.get(key)
    if text is None:
        return MIN_SHM_SIZE
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BackendConfigError(
            f"--backend-config {key}={text!r} is not a number of bytes", hint=f"e.g. {key}=1048576"
        ) from None
    if value < minimum:
        raise BackendConfigError(
            f"--backend-config {key}={value} is below the minimum {minimum}", hint=f"use at least {minimum}"
        )
    total = _shm_total()
    if value > MAX_BYTES or (total is not None and value > total):
        limit = f"/dev/shm's size ({total} bytes)" if total is not None else f"{MAX_BYTES}"
        raise BackendConfigError(
            f"--backend-config {key}={value} is larger than {limit}",
            hint="use a size that fits in /dev/shm (in a container, raise it with --shm-size)",
        )
    return value


def shm_settings(config: Mapping[str, str] | None) -> ShmSettings:
    config = config or {}
    for key in config:
        if not str(key).strip():
            raise BackendConfigError(
                "--backend-config has an empty key", hint="write KEY=VALUE, e.g. shm-growth-byte-size=1048576"
            )
    prefix = config.get("shm-region-prefix-name", DEFAULT_SHM_PREFIX)
    if not prefix or "/" in prefix or any(not c.isprintable() or c.isspace() for c in prefix):
        raise BackendConfigError(
            f"--backend-config shm-region-prefix-name={prefix!r} is not usable as a shared-memory name",
            hint="a plain name without '/', spaces or control characters, e.g. my_server_",
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise BackendConfigError(
            f"--backend-config shm-region-prefix-name is {len(prefix)} characters long; names in /dev/shm "
            f"allow at most {MAX_PREFIX_LENGTH} for the prefix",
            hint="use a shorter prefix",
        )
    return ShmSettings(
        prefix=prefix,
        default_size=_size(config, "shm-default-byte-size", MIN_SHM_SIZE),
        growth=_size(config, "shm-growth-byte-size", 1),
    )
