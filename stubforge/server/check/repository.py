"""Rules across the repository's models and on the machine they share: parallel-envs, shm."""

from __future__ import annotations

import os
from pathlib import Path

from stubforge.core import releases
from stubforge.errors import StubforgeError
from stubforge.server.check.report import WARN, Finding, ModelCheck
from stubforge.triton.config import read_config, schema

DEFAULT_SHM = 1 << 20  # the backend's default region size (shm-default-byte-size)
_TYPE_BYTES = {
    "TYPE_FP64": 8,
    "TYPE_INT64": 8,
    "TYPE_UINT64": 8,
    "TYPE_FP16": 2,
    "TYPE_BF16": 2,
    "TYPE_INT16": 2,
    "TYPE_UINT16": 2,
    "TYPE_INT8": 1,
    "TYPE_UINT8": 1,
    "TYPE_BOOL": 1,
}


def repository_findings(models: list[ModelCheck], release: releases.Release) -> list[Finding]:
    findings = []
    race = parallel_envs(models, release)
    if race is not None:
        findings.append(race)
    space = shm(models)
    if space is not None:
        findings.append(space)
    return findings


def parallel_envs(models: list[ModelCheck], release: releases.Release) -> Finding | None:
    archives = {m.backend for m in models if m.env and not Path(m.env).is_dir()}
    if len(archives) <= 1 or not release.parallel_extraction_race:
        return None
    return Finding(
        WARN,
        "parallel-envs",
        f"tarball envs on {len(archives)} python-family backends "
        f"({', '.join(sorted(a or '?' for a in archives))}): Triton {release.branch} extracts them "
        "in parallel and they corrupt each other",
        "start tritonserver with --model-load-thread-count=1, or use directory envs",
    )


def shm(models: list[ModelCheck]) -> Finding | None:
    try:
        stats = os.statvfs("/dev/shm")
        free = stats.f_bavail * stats.f_frsize
    except OSError:
        return None
    need = 0
    for model in models:
        try:
            info = read_config(Path(model.path))
        except StubforgeError:
            continue
        config = info.message
        instances = sum(max(1, g.count) for g in config.instance_group) or 1
        sizes = [
            _tensor_bytes([int(d) for d in t.dims], _type_name(t.data_type), config.max_batch_size)
            for t in [*config.input, *config.output]
        ]
        largest = max((b for b in sizes if b), default=0)
        # The auto-complete stub and each instance get a region of the default size, grown for big tensors.
        need += (instances + 1) * max(DEFAULT_SHM, 2 * largest)
    if need <= free:
        return None
    return Finding(
        WARN,
        "shm",
        f"the models need about {need >> 20} MiB of /dev/shm (one region per instance, grown "
        f'for the largest declared tensors), {free >> 20} MiB is free: "Unable to initialize shared '
        'memory key" at load',
        "give the container more (docker run --shm-size=1g)",
    )


def _tensor_bytes(dims: list[int], data_type: str, max_batch: int) -> int | None:
    """A batch of one tensor in bytes; None when a dimension is variable (-1)."""
    if any(d < 0 for d in dims):
        return None
    total = _TYPE_BYTES.get(data_type, 4) * max(1, max_batch)
    for d in dims:
        total *= d
    return total


def _type_name(number: int) -> str:
    """TYPE_FP32 from 11, with the same generated schema triton/config.py loads (no tritonclient[grpc] needed)."""
    descriptor = schema().model_config.DESCRIPTOR
    enum = descriptor.fields_by_name["input"].message_type.fields_by_name["data_type"].enum_type
    return str(enum.values_by_number[number].name)
