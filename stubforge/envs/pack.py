"""Write an env directory as a deterministic tar.gz, or prune it.

Triton reads tar or tar+gzip only (libarchive with the gzip filter): `.tar.xz`, `.tar.bz2`, `.tar.zst` and
`.zip` fail at load time with `archive_read_open_filename() failed.` (docs/triton-behaviour.md:
"EXECUTION_ENV_PATH and extraction").
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from isal import igzip_threaded

from stubforge.core.fsutil import publish, tree_size
from stubforge.errors import StubforgeError
from stubforge.triton import envpath

# A fixed, non-zero timestamp (2020-01-01): some tools treat mtime 0 as "missing".
FIXED_MTIME = 1577836800
# What pack-env writes; triton/envpath.py knows every format Triton can or cannot read.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def check_archive_name(path: Path) -> None:
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return
    kind = envpath.unsupported_archive(name)
    if kind is not None:
        stem = path.name[: -len(next(s for s in envpath.UNSUPPORTED_SUFFIXES if name.endswith(s)))]
        raise StubforgeError(
            f"{path}: Triton cannot read {kind} archives (it fails with 'archive_read_open_filename() failed.')",
            hint=f"name it {stem}.tar.gz, or use --dir for a directory env (fastest to load)",
        )
    raise StubforgeError(
        f"{path}: an archive env must end in .tar.gz",
        hint="use -o NAME.tar.gz, or --dir DIR for a directory env",
    )


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root in a fixed order (sorted per directory, parents first); symlinks not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            yield base / name
        for name in dirnames:
            if not (base / name).is_symlink():
                yield base / name


def _is_bytecode(path: Path) -> bool:
    """The env's own bytecode is left out of archives: with the fixed mtimes every timestamp .pyc would be
    stale (Python checks the source's mtime) and pip's record its temporary install path. What the validating
    launch imported is packed instead (write_unpublished's `bytecode`): hash-checked .pyc files, the same
    bytes on every pack, that spare each stub start compiling them."""
    return path.name == "__pycache__" or path.suffix == ".pyc"


def _tarinfo(inodes: dict[tuple[int, int], str], path: Path, arcname: str) -> tarfile.TarInfo:
    """The member for path with nothing of the packing machine in it: fixed mtime, owner 0 with no names,
    modes 0755/0644 (so a umask changes nothing). Built from lstat rather than TarFile.gettarinfo, which
    looks up user and group names for every file only for them to be dropped."""
    st = os.lstat(path)
    info = tarfile.TarInfo(arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISREG(st.st_mode):
        inode = (st.st_ino, st.st_dev)
        first = inodes.get(inode)
        if st.st_nlink > 1 and first is not None and first != arcname:
            info.type, info.linkname = tarfile.LNKTYPE, first  # a second name of a file already packed
        else:
            inodes[inode] = arcname
            info.size = st.st_size
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    else:
        raise StubforgeError(
            f"{path}: neither a file, a directory nor a symbolic link; Triton's extraction cannot use it",
            hint="remove it from the environment and pack again",
        )
    return info


# gzip through ISA-L's igzip (python-isal), not zlib: on Python 3.8 + numpy (110 MB of files) level 2 takes
# 0.6 s where zlib level 4 takes 5.2 s, for a 10 % larger stream (38.4 vs 34.9 MB; pruning wins that back).
# Level 3 would gain 2 % more for twice the time. It is one ordinary gzip member, which Triton's libarchive
# reads (docs/triton-behaviour.md: "EXECUTION_ENV_PATH and extraction").
COMPRESS_LEVEL = 2
# Blocks of 1 MiB are compressed on up to two threads, each primed with the previous block's last 32 KiB (as
# pigz does), so the ratio barely suffers; the bytes depend only on the data, never on the thread count.
_BLOCK = 1 << 20


def _threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


class _Position:
    """A writer that knows how much went through it: tarfile asks tell() once, the gzip writer cannot seek
    (tarfile's own stream mode would, but it re-copies its buffer on every small write)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._written = 0

    def write(self, data: bytes) -> int:
        self._written += len(data)
        return self._out.write(data)

    def tell(self) -> int:
        return self._written


def write_archive(
    env_dir: Path, output: Path, compresslevel: int = COMPRESS_LEVEL, *, replace: bool = True
) -> None:
    """Pack env_dir's contents (not the dir itself) into output, atomically and byte-for-byte reproducibly.
    compresslevel is igzip's (0-3). replace=False: FileExistsError if output exists by the time it is written
    (nothing is overwritten)."""
    tmp = write_unpublished(env_dir, output, compresslevel)
    try:
        publish_archive(tmp, output, replace=replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class Cancelled(Exception):
    """write_unpublished was told to stop (its caller failed meanwhile)."""


def write_unpublished(
    env_dir: Path,
    output: Path,
    compresslevel: int = COMPRESS_LEVEL,
    cancel: threading.Event | None = None,
    bytecode: Callable[[], dict[str, bytes]] | None = None,
    written: list[tarfile.TarInfo] | None = None,
) -> Path:
    """The archive of env_dir under a temporary name beside output, for publish_archive (or removal) by the
    caller. Raises Cancelled, leaving nothing behind, once `cancel` is set. `bytecode`, called once the env's
    own files are written (it may wait for them to be made): .pyc files (path relative to the env -> bytes)
    added after them, with their __pycache__ directories. `written` receives every member with the offsets a
    reader of the archive finds (so the member list can be kept without listing the archive again)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            igzip_threaded.open(
                raw, "wb", compresslevel=compresslevel, threads=_threads(), block_size=_BLOCK
            ) as gz,
            tarfile.TarFile(
                fileobj=_Position(gz),  # type: ignore[arg-type]  # tarfile only writes and tells
                mode="w",
                format=tarfile.PAX_FORMAT,
                copybufsize=_BLOCK,
            ) as tar,
        ):
            inodes: dict[tuple[int, int], str] = {}  # files with several names: the first one packed
            for path in _walk(env_dir):
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                if _is_bytecode(path):
                    continue
                info = _tarinfo(inodes, path, path.relative_to(env_dir).as_posix())
                start = tar.offset
                if info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
                _record(written, info, start, tar.offset)
            if bytecode is not None:
                _add_bytecode(tar, bytecode(), cancel, written)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


def _record(written: list[tarfile.TarInfo] | None, info: tarfile.TarInfo, start: int, end: int) -> None:
    """`info` as a reader finds it: its headers (a PAX one included) start at `start`, its data fills the
    512-byte blocks before `end`."""
    if written is not None:
        info.offset = start
        info.offset_data = end - (
            -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE if info.isfile() else 0
        )
        written.append(info)


def _add_bytecode(
    tar: tarfile.TarFile,
    files: dict[str, bytes],
    cancel: threading.Event | None,
    written: list[tarfile.TarInfo] | None = None,
) -> None:
    """Each __pycache__ directory, then its files, in a fixed order and with the fixed metadata of the rest.
    `files`: .pyc path relative to the env -> its bytes."""
    added: set[str] = set()
    for name in sorted(files):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or len(parts) < 2 or parts[-2] != "__pycache__":
            raise StubforgeError(
                f"{name}: not a .pyc inside a __pycache__ of the env", hint="a bug: report it"
            )
        folder = "/".join(parts[:-1])
        if folder not in added:
            added.add(folder)
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
            start = tar.offset
            tar.addfile(info)
            _record(written, info, start, tar.offset)
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.size = 0o644, FIXED_MTIME, len(files[name])
        start = tar.offset
        tar.addfile(info, io.BytesIO(files[name]))
        _record(written, info, start, tar.offset)


def publish_archive(tmp: Path, output: Path, *, replace: bool = True) -> None:
    os.chmod(tmp, 0o644)
    publish(tmp, output, replace=replace)


_PRUNE_DIRS = {"tests", "test"}
# Static libraries and headers are for building against the env, Windows launchers and installers (pip's
# distlib, the stdlib's distutils) never run on Linux.
_PRUNE_SUFFIXES = (".a", ".exe")
_HEADER_SUFFIXES = (".h", ".hpp")
# Packages that compile C or C++ against the env at run time (torch.utils.cpp_extension, torch.compile's
# triton, cupy, cffi): their envs keep every header.
COMPILES_AT_RUNTIME = ("torch", "triton", "cupy", "cffi")


def keeps_headers(env_dir: Path) -> list[str]:
    """The installed packages that need the env's headers at run time (their names; empty: prune them)."""
    found = set()
    for site in env_dir.glob("lib/python*/site-packages"):
        for name in COMPILES_AT_RUNTIME:
            if (site / name).is_dir() or any(site.glob(f"{name}-*.dist-info")):
                found.add(name)
    return sorted(found)


def prune(env_dir: Path, *, bytecode: bool = False, headers: bool = True) -> int:
    """Remove test suites, static libraries, Windows executables and (headers=True) headers; returns the
    bytes freed. bytecode=True also removes __pycache__ and *.pyc (archives leave them out anyway; a
    directory env keeps them by default: they spare the first import a compile).

    Kept: numpy's own `testing` module (numpy imports it); anything that is a symlink."""
    dirs = _PRUNE_DIRS | ({"__pycache__"} if bytecode else set())
    suffixes = _PRUNE_SUFFIXES + (_HEADER_SUFFIXES if headers else ()) + ((".pyc",) if bytecode else ())
    freed = 0
    for dirpath, dirnames, filenames in os.walk(env_dir, topdown=True):
        base = Path(dirpath)
        for name in list(dirnames):
            if name in dirs and not (base / name).is_symlink():
                freed += tree_size(base / name)
                shutil.rmtree(base / name)
                dirnames.remove(name)
        for name in filenames:
            path = base / name
            if name.endswith(suffixes) and not path.is_symlink():
                freed += path.stat().st_size
                path.unlink()
        if headers and base.name == "include" and base.parent == env_dir:
            freed += tree_size(base)
            shutil.rmtree(base)
            dirnames[:] = []
    return freed
