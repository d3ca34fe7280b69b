"""An aarch64 sysroot and runner stub for tests and benchmarks, made by stubforge itself: `sysroot create`
(Debian's arm64 python3.11, never installed on the host) and `build --flavor runner --arch aarch64 --sysroot`.

STUBFORGE_TEST_SYSROOT names an existing sysroot instead (e.g. a board's rootfs). Both need arm64 package lists
and the cross compiler (.ci/run installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def sysroot(dest: Path, cache: Path) -> Path:
    """A Debian arm64 root with python3.11 and libpython3.11(-dev), made once into `dest` (debs in `cache`)."""
    from stubforge.core import debian_sysroot

    given = os.environ.get("STUBFORGE_TEST_SYSROOT")
    if given:
        return Path(given)
    if not (dest / "usr" / "bin" / "python3.11").is_file():
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STUBFORGE_CACHE", str(cache))
            debian_sysroot.create(dest, "aarch64", "3.11")
    return dest


def runner_stub(root: Path, dest: Path, cache: Path) -> Path:
    """The runner's stub for the sysroot's Python 3.11, cross-built by stubforge (cached in `cache`), copied to
    `dest`."""
    from stubforge.core.targets import Target
    from stubforge.stubs.runner_stub import build_runner_stub

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUBFORGE_CACHE", str(cache))
        built = build_runner_stub("3.11", target=Target.parse("aarch64", root))
    shutil.copy2(built.stub, dest)
    return dest
