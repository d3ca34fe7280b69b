"""Writing files so that nothing is lost: atomic replacement, staged directories, numbered backups.

Every writer here builds the new content beside its destination (same directory, so same file system) and moves
it into place with os.replace, which readers see as one step: the old file or the new one, never half of either.
On any failure, Ctrl-C included, the temporary file or directory is removed and the destination is untouched.
`publish` without `replace` claims a new name instead: link(2) for a file, renameat2(RENAME_NOREPLACE) for a
directory, so of two runs writing one output exactly one wins and the other gets FileExistsError.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from stubforge.errors import StubforgeError


@contextlib.contextmanager
def atomic_file(
    path: Path,
    *,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
    check: Callable[[Path], None] | None = None,
    fsync: bool = False,
    suffix: str = "",
) -> Iterator[IO[bytes]]:
    """A binary file to write that becomes `path` when the block ends without an exception.

    The temp file is `.<name>.<random><suffix>` in `path`'s directory. `mode` is applied (mkstemp makes 0600);
    `owner` (uid, gid) is given when this process may (only root may give a file away; others keep their own);
    with `fsync` the data reaches the disk before the rename. `check` runs on the complete temp file before it
    replaces anything; if it raises, nothing is replaced. OSErrors are raised as they are.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            with contextlib.suppress(OSError):
                os.chown(tmp, *owner)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    owner: tuple[int, int] | None = None,
    check: Callable[[Path], None] | None = None,
    error: type[StubforgeError] = StubforgeError,
) -> None:
    """Replace `path` with `data` (synced to disk) through a temp file in the same directory and os.replace.

    `check` runs on the complete temp file before it replaces anything; if it raises (or anything else fails,
    Ctrl-C included) the temp file is removed and `path` is untouched. An OSError becomes `error` (the caller's
    error type, so its exit code stays) with a hint.
    """
    opened = False
    try:
        with atomic_file(
            path, mode=0o644 if mode is None else mode, owner=owner, check=check, fsync=True, suffix=".tmp"
        ) as fh:
            opened = True
            fh.write(data)
    except OSError as exc:
        if not opened:
            raise error(
                f"cannot write in {path.parent} ({exc.strerror})", hint="check that the directory is writable"
            ) from exc
        raise error(
            f"cannot write {path} ({exc.strerror})", hint="check the file system and permissions"
        ) from exc


def copy_atomic(source: Path, path: Path, *, mode: int = 0o644) -> None:
    """Copy the file `source` to `path` atomically, with `mode` (0o755 for an executable)."""
    with atomic_file(path, mode=mode) as fh, open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1 << 20)


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented, key-sorted JSON at `path`, atomically (the parent directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        fh.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temp dir beside `final` that replaces it on success and disappears on any failure or Ctrl-C."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    # mkdtemp makes 0700; artifacts must be readable by other accounts (a tritonserver user).
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def backup_path(target: Path, data: bytes) -> tuple[Path, bool]:
    """Where to keep `data` (the content `target` had) as a backup, and whether that file must be written.

    `<name>.bak`, then `.bak.1`, `.bak.2` ...: an existing backup holding exactly `data` is reused (False), a
    different one is never touched, so every earlier version stays recoverable.
    """
    index = 0
    while True:
        candidate = target.with_name(target.name + (".bak" if index == 0 else f".bak.{index}"))
        if not candidate.exists() and not candidate.is_symlink():
            return candidate, True
        if candidate.is_file() and not candidate.is_symlink():
            with contextlib.suppress(OSError):
                if candidate.read_bytes() == data:
                    return candidate, False
        index += 1


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with FileExistsError when dst exists, atomically (Linux renameat2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc < 2.28: claim the name with mkdir, then replace our own empty directory
        os.mkdir(dst)
        os.replace(src, dst)
        return
    if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


def publish(tmp: Path, final: Path, *, replace: bool) -> None:
    """Move a finished file or directory to its final name. Without `replace`, the name is claimed atomically:
    when something appeared there meanwhile (another run), FileExistsError, and `final` is untouched."""
    if replace:
        if tmp.is_dir() and not tmp.is_symlink() and final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return
    if tmp.is_dir() and not tmp.is_symlink():
        rename_noreplace(tmp, final)
    else:
        os.link(tmp, final)  # EEXIST when the name is taken
        tmp.unlink()


def tree_size(path: Path) -> int:
    """Bytes of the files below `path` (links counted as links, unreadable entries skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
