"""Rules on the GPU setting of the stub and the server: gpu-mismatch, cudart."""

from __future__ import annotations

from pathlib import Path

from stubforge.core import releases
from stubforge.server.check.report import ERROR, WARN, ModelCheck
from stubforge.triton import deployment, gpu


def gpu_rules(
    check: ModelCheck,
    resolved: deployment.Deployment,
    backends: Path | None,
    release: releases.Release,
    library_path: tuple[str, ...] = (),
) -> None:
    """`library_path`: directories the server's LD_LIBRARY_PATH has besides this process's (verify knows them)."""
    stub = resolved.stub
    if stub is None or stub.elf_error:
        return
    stub_build = gpu.of_stub(stub)
    library_file = gpu.server_library(resolved, backends)
    library = gpu.of_binary(library_file) if library_file is not None else None
    if stub_build is not None and library is not None:
        found = gpu.mismatch(stub_build, library)
        if found is not None:
            check.add(WARN, "gpu-mismatch", *found)
    reach = gpu.cudart_reach(resolved, library_path)
    if reach is not None and not reach.found:
        message, fix = gpu.unreachable_message(
            reach, stub.path, library, release.dead_stub_outcome(at_load=True)
        )
        check.add(ERROR, "cudart", message, fix)
