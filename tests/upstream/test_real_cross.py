"""The real python_backend r24.10 stub cross-built for aarch64 against a `sysroot create` sysroot: opt-in
(STUBFORGE_UPSTREAM_SOURCES), several minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from stubforge.core import elf
from stubforge.core.targets import Target
from stubforge.stubs import build as stub
from stubforge.stubs import sources

pytestmark = [pytest.mark.upstream, pytest.mark.slow]


def test_r2410_cross_built_for_aarch64(
    upstream_sources: Path, cache_root: Path, aarch64_sysroot: Path
) -> None:
    sources.import_sources("24.10", upstream_sources)
    target = Target.parse("aarch64", aarch64_sysroot)
    result = stub.build_one("3.11", stub.BuildOptions(triton="24.10", target=target))
    info = elf.read(result.stub)
    assert info.machine == "EM_AARCH64" and "libpython3.11.so.1.0" in info.needed
    assert info.runpath == []
    manifest = result.manifest
    assert manifest["target"]["arch"] == "aarch64" and manifest["pybind11"] == "2.10.0"
    # Under emulation the real stub answers Triton's probe; the glibc it needs is the sysroot's or older.
    assert manifest["probe"]["exit"] == 1
    assert "GLIBC" in manifest["cross"]["floors_checked"]
