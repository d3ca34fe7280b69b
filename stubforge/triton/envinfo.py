"""What an execution environment offers, read without extracting it: a directory, or an archive's members.

An archive's member list is read once (gzip has no index: listing means decompressing the whole file) and kept,
in the cache too (member_index: the next command that looks at the same archive does not list it again); a
directory is looked at file by file, and walked only when every name is asked for.
"""

from __future__ import annotations

import contextlib
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from isal import igzip, isal_zlib

from stubforge.triton import member_index
from stubforge.triton.stubinfo import libpython_minor

# igzip's error for a damaged stream (its type stubs declare it as an instance, not a class).
_IGZIP_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
# What reading a damaged, truncated or non-tar file raises.
READ_ERRORS = (OSError, tarfile.TarError, EOFError, zlib.error, _IGZIP_ERROR)


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """A tar or tar.gz opened for reading. gzip goes through ISA-L's igzip: listing pack-env's Python 3.8 +
    numpy archive (35 MB) took 1.6-2.1 s instead of 4.0-4.4 s with zlib on a busy 2-core machine, and every
    check, verify and run of an archive env lists it (the runner's extraction reads it twice)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if not gzipped:
        with tarfile.open(path) as tar:
            yield tar
        return
    with igzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
        yield tar


def _list_members(path: Path) -> list[tarfile.TarInfo]:
    with open_archive(path) as tar:
        return tar.getmembers()


class EnvContents:
    """The files of an env. Opening an archive raises one of READ_ERRORS when it cannot be listed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_dir = path.is_dir()
        self.members: dict[str, tarfile.TarInfo] = {}  # archive members by name without a leading './'
        # Every member in archive order, repeated names included: what the safety rules must see.
        self.member_list: list[tarfile.TarInfo] = []
        self._names: list[str] | None = None
        if not self.is_dir:
            self.member_list = member_index.members_of(path, lambda: _list_members(path))
            for member in self.member_list:
                name = member.name[2:] if member.name.startswith("./") else member.name
                self.members[name] = member
            self._names = list(self.members)

    @property
    def names(self) -> list[str]:
        """Every file and symlink, relative to the env's root."""
        if self._names is None:
            self._names = [
                str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file() or p.is_symlink()
            ]
        return self._names

    def under(self, prefix: str) -> list[str]:
        """The names below a directory of the env (prefix ends with '/'), without walking the rest of it."""
        if self.is_dir:
            base = self.path / prefix
            if not base.is_dir():
                return []
            return [str(p.relative_to(self.path)) for p in base.rglob("*") if p.is_file() or p.is_symlink()]
        return [n for n in self.names if n.startswith(prefix)]

    def has(self, name: str) -> bool:
        if self.is_dir:
            target = self.path / name
            return target.is_symlink() or target.exists()
        return name in self.members

    def python(self) -> str | None:
        """X.Y of the lib/libpythonX.Y.so.1.0 the env carries (the file a stub's NEEDED names)."""
        if self.is_dir:
            candidates = sorted(p.name for p in (self.path / "lib").glob("libpython*.so.1.0"))
        else:
            candidates = [n[len("lib/") :] for n in self.names if n.startswith("lib/") and n.count("/") == 1]
        for name in candidates:
            minor = libpython_minor(name)
            if minor and name.endswith(".so.1.0"):
                return minor
        return None

    def read(self, name: str) -> bytes | None:
        """A small member's bytes (e.g. lib/libstdc++.so.6), or None."""
        if self.is_dir:
            target = self.path / name
            return target.read_bytes() if target.is_file() else None
        member = self.members.get(name)
        if member is None or not member.isfile():
            return None
        try:
            with open_archive(self.path) as tar:
                handle = tar.extractfile(member)
                return handle.read() if handle else None
        except READ_ERRORS:
            return None


def env_python(path: Path) -> str | None:
    """The Python an env (directory or archive) carries; None when it carries none or cannot be read."""
    try:
        return EnvContents(path).python()
    except READ_ERRORS:
        return None
