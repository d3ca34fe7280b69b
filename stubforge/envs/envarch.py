"""Which architecture an execution environment is for, from its own files (a directory, or a .tar.gz with or
without stubforge's manifest beside it): an env of the wrong architecture fails in the server only at load time,
with a loader message that does not say so."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

from stubforge.core import elf
from stubforge.envs import sysroot_python

_LIBPYTHON = re.compile(r"^(?:\./)?lib/libpython3\.\d+\.so\.1\.0$")
MANIFEST_SUFFIX = ".stubforge.json"  # envs/packenv.py writes it beside an archive


def env_arch(path: Path) -> str | None:
    """'aarch64', 'x86_64', ...; None when it cannot be told (no libpython, unreadable)."""
    try:
        if path.is_dir():
            for lib in sorted((path / "lib").glob("libpython3*.so.1.0")):
                machine = sysroot_python.elf_machine(lib.resolve())
                if machine is not None:
                    return elf.arch_of_machine(machine) or machine
            return None
        manifest = path.with_name(path.name + MANIFEST_SUFFIX)
        if manifest.is_file():
            arch = (json.loads(manifest.read_text()).get("target") or {}).get("arch")
            if isinstance(arch, str):
                return arch
        return _archive_arch(path) if path.is_file() else None
    except (OSError, ValueError, tarfile.TarError):
        return None


def _archive_arch(path: Path) -> str | None:
    """The ELF machine of the archive's lib/libpython3.X.so.1.0, read from the stream (only its header)."""
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and _LIBPYTHON.match(member.name):
                handle = tar.extractfile(member)
                if handle is None:
                    return None
                head = handle.read(20)
                if len(head) < 20 or head[:4] != b"\x7fELF":
                    return None
                number = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
                machine = {62: "EM_X86_64", 183: "EM_AARCH64"}.get(number, f"EM_{number}")
                return elf.arch_of_machine(machine) or machine
    return None
