"""Running a binary of another architecture on this machine: qemu user-mode emulation through binfmt_misc.

With `qemu-user-static` and `binfmt-support` installed, the kernel hands aarch64 ELF files to qemu and they run
like native ones; without binfmt, `qemu-aarch64-static FILE` still runs one explicitly. `QEMU_LD_PREFIX` makes
qemu look up the target's loader and libraries in a sysroot first (docs/triton-behaviour.md: "aarch64: emulation
and cross-compilation").
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stubforge.core.targets import host_target

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
INSTALL_HINT = "apt-get install qemu-user-static binfmt-support"


@dataclass(frozen=True)
class Emulation:
    arch: str
    prefix: tuple[str, ...]  # () when the kernel runs the file itself (native, or binfmt), else (qemu,)
    how: str  # "native", "binfmt", "qemu"

    def command(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]

    def environment(
        self, base: dict[str, str], sysroot: Path | None, lib_dirs: tuple[Path, ...] = ()
    ) -> dict[str, str]:
        """`base` plus what lets the target's loader find the sysroot's libraries."""
        env = dict(base)
        if self.how != "native" and sysroot is not None:
            env["QEMU_LD_PREFIX"] = str(sysroot)
        if lib_dirs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (*(str(d) for d in lib_dirs), base.get("LD_LIBRARY_PATH", "")) if p
            )
        return env


def _binfmt_enabled(arch: str) -> bool:
    entry = BINFMT_DIR / f"qemu-{arch}"
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def emulation_for(arch: str) -> Emulation | None:
    """How to run `arch` binaries here: natively, through binfmt, or by calling qemu; None when nothing can."""
    if arch == host_target().arch:
        return Emulation(arch, (), "native")
    if _binfmt_enabled(arch):
        return Emulation(arch, (), "binfmt")
    for name in (f"qemu-{arch}-static", f"qemu-{arch}"):
        found = shutil.which(name)
        if found:
            return Emulation(arch, (found,), "qemu")
    return None


def unavailable_reason(arch: str) -> str:
    here = host_target().arch
    return f"no emulation for {arch} on this {here} machine (no binfmt entry, no qemu-{arch}): {INSTALL_HINT}"
