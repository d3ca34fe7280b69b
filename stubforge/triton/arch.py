"""The architecture of each piece of a deployment, and of the deployment itself.

A stub, an env or a backend directory built for one machine cannot serve on another: an aarch64 stub in an x86_64
server fails to start with "Exec format error", an x86_64 env's libpython cannot be loaded by an aarch64 stub.
`install` refuses such a piece and `check` flags it (rule `arch`), naming both architectures.
"""

from __future__ import annotations

from pathlib import Path

from stubforge.core import elf
from stubforge.core.targets import Target, host_target
from stubforge.triton.envinfo import READ_ERRORS, EnvContents

LIBRARY = "libtriton_python.so"


def file_arch(path: Path) -> str | None:
    """The architecture of an ELF file (a stub, libtriton_python.so); None when unreadable or not ELF."""
    try:
        with open(path, "rb") as fh:
            return elf.arch_of_header(fh.read(20))
    except OSError:
        return None


def env_arch(contents: EnvContents) -> str | None:
    """An env's architecture from its interpreter binary (bin/python3.X: a few KB in a shared-libpython build),
    else its libpython."""
    names = sorted(n for n in contents.under("bin/") if n.startswith("bin/python3"))
    for name in [*names, *sorted(n for n in contents.under("lib/") if n.startswith("lib/libpython3"))]:
        data = _read_following_links(contents, name)
        arch = elf.arch_of_header(data[:20]) if data else None
        if arch:
            return arch
    return None


def _read_following_links(contents: EnvContents, name: str) -> bytes | None:
    if contents.is_dir:
        path = contents.path / name
        try:
            with open(path, "rb") as fh:
                return fh.read(20)
        except OSError:
            return None
    for _ in range(8):
        member = contents.members.get(name)
        if member is None:
            return None
        if member.issym():
            name = str(Path(name).parent / member.linkname) if not member.linkname.startswith("/") else ""
            continue
        return contents.read(name)
    return None


def env_arch_of(path: Path) -> str | None:
    try:
        return env_arch(EnvContents(path))
    except READ_ERRORS:
        return None


def backends_arch(backends: Path | None) -> str | None:
    """The server's architecture as its backend directory shows it (python/libtriton_python.so)."""
    if backends is None:
        return None
    return file_arch(backends / "python" / LIBRARY)


def deployment_arch(target: Target | None, backends: Path | None) -> tuple[str, str]:
    """(arch, where that answer came from): --arch when given, else the backends' libtriton_python.so, else
    this machine."""
    if target is not None:
        return target.arch, "--arch"
    found = backends_arch(backends)
    if found is not None and backends is not None:
        return found, str(backends / "python" / LIBRARY)
    return host_target().arch, "this machine"
