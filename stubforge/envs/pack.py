"""Write an env directory as a deterministic tar.gz, or prune it.

Triton reads tar or tar+gzip only (libarchive with the gzip filter): `.tar.xz`, `.tar.bz2`, `.tar.zst` and
`.zip` fail at load time with `archive_read_open_filename() failed.` (docs/triton-behaviour.md:
"EXECUTION_ENV_PATH and extraction").
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    """Bytecode is left out of archives: with the fixed mtimes every .pyc would be stale anyway (Python checks
    the source's mtime) and is recompiled at first import; leaving it out keeps archives smaller and
    byte-reproducible (pip's .pyc files record its temporary install path)."""
    return path.name == "__pycache__" or path.suffix == ".pyc"


def _tarinfo(tar: tarfile.TarFile, path: Path, arcname: str) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(path), arcname=arcname)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # Keep only the permission bits that matter, so a umask on the packing machine changes nothing.
    if info.isdir() or (info.isfile() and info.mode & stat.S_IXUSR):
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o644
    return info


# Level 4 (conda-pack's default too): half the time of level 6 for a 4% larger archive.
COMPRESS_LEVEL = 4


def write_archive(
    env_dir: Path, output: Path, compresslevel: int = COMPRESS_LEVEL, *, replace: bool = True
) -> None:
    """Pack env_dir's contents (not the dir itself) into output, atomically and byte-for-byte reproducibly.
    replace=False: FileExistsError if output exists by the time it is written (nothing is overwritten)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in _walk(env_dir):
                if _is_bytecode(path):
                    continue
                info = _tarinfo(tar, path, path.relative_to(env_dir).as_posix())
                if info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        os.chmod(tmp, 0o644)
        publish(tmp, output, replace=replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


_PRUNE_DIRS = {"__pycache__", "tests", "test"}
_PRUNE_SUFFIXES = (".a", ".pyc", ".h", ".hpp")


def prune(env_dir: Path) -> int:
    """Remove bytecode caches, test suites, headers and static libraries; returns the bytes freed.

    Kept: anything under lib/pythonX.Y top level named test (the stdlib's is already gone) is inside packages
    only; numpy's own `testing` module stays because numpy imports it."""
    freed = 0
    for dirpath, dirnames, filenames in os.walk(env_dir, topdown=True):
        base = Path(dirpath)
        for name in list(dirnames):
            if name in _PRUNE_DIRS and not (base / name).is_symlink():
                freed += tree_size(base / name)
                shutil.rmtree(base / name)
                dirnames.remove(name)
        for name in filenames:
            path = base / name
            if name.endswith(_PRUNE_SUFFIXES) and not path.is_symlink():
                freed += path.stat().st_size
                path.unlink()
        if base.name == "include" and base.parent == env_dir:
            freed += tree_size(base)
            shutil.rmtree(base)
            dirnames[:] = []
    return freed
