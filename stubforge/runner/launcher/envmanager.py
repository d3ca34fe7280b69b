"""EnvironmentManager semantics (docs/triton-behaviour.md, "EXECUTION_ENV_PATH"): directory envs are used in
place; archives are extracted once per (realpath, mtime) into a private temp dir, re-extracted when the file
changes, and concurrent loads of one archive wait for each other. Whatever the release imitated, extraction refuses
absolute paths, `..`, links that leave the destination, and device files (releases without
`refuses_unsafe_archive_members` extract such members; the runner never does).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from stubforge.core import releases
from stubforge.errors import StubforgeError


class EnvError(StubforgeError):
    """An execution environment that cannot be used."""


def _looks_like_tar_or_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def _unsafe_hint(release: releases.Release | None) -> str:
    if release is not None:
        outcome = release.unsafe_archive_outcome()
    else:
        since = releases.first_release(lambda r: r.refuses_unsafe_archive_members)
        outcome = f"Triton before {since} extracts it anyway, {since} and later refuse it"
    return f"the archive is unsafe (zip-slip); {outcome}. Rebuild it with stubforge pack-env"


def _check_member(
    member: tarfile.TarInfo, dest: Path, archive: Path, release: releases.Release | None = None
) -> None:
    """Raise EnvError for a member that must not be extracted; `release` (None: any) words the hint."""
    name = member.name
    parts = Path(name).parts
    if os.path.isabs(name) or ".." in parts:
        raise EnvError(
            f"{archive}: member {name!r} would be written outside the env directory",
            hint=_unsafe_hint(release),
        )
    if member.isdev() or member.isfifo():
        raise EnvError(
            f"{archive}: member {name!r} is a device or FIFO", hint="rebuild it with stubforge pack-env"
        )
    if member.issym() or member.islnk():
        base = dest / Path(name).parent if member.issym() else dest
        target = os.path.normpath(os.path.join(base, member.linkname))
        if os.path.isabs(member.linkname) or not (
            target == str(dest) or target.startswith(str(dest) + os.sep)
        ):
            raise EnvError(
                f"{archive}: link {name!r} points outside the env ({member.linkname!r})",
                hint="an env must be self-contained; rebuild it with stubforge pack-env",
            )


def safe_extract(archive: Path, dest: Path, release: releases.Release | None = None) -> None:
    if not _looks_like_tar_or_gzip(archive):
        raise EnvError(
            f"{archive}: archive_read_open_filename() failed. (Triton reads only tar and tar.gz)",
            hint="repack it as .tar.gz (stubforge pack-env -o NAME.tar.gz)",
        )
    dest.mkdir(parents=True, exist_ok=True)
    resolved = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, resolved, archive, release)
            extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(resolved, members=members, **extra)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EnvError(
            f"{archive}: cannot extract ({exc})", hint="the archive is damaged; pack it again"
        ) from exc


class EnvironmentManager:
    def __init__(self) -> None:
        self._base: Path | None = None
        self._extracted: dict[str, tuple[float, Path]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._count = 0

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            if self._base is None:
                self._base = Path(tempfile.mkdtemp(prefix="stubforge_env_"))
            return self._locks.setdefault(key, threading.Lock())

    def resolve(self, env_path: Path, release: releases.Release | None = None) -> Path:
        """The directory to activate for EXECUTION_ENV_PATH `env_path`; `release` words the errors."""
        real = Path(os.path.realpath(env_path))
        if not real.exists():
            raise EnvError(f"{env_path}: no such execution environment", hint="check EXECUTION_ENV_PATH")
        if real.is_dir():
            return real
        lock = self._lock_for(str(real))
        with lock:
            mtime = real.stat().st_mtime
            known = self._extracted.get(str(real))
            if known and known[0] == mtime:
                return known[1]
            assert self._base is not None
            # Always a new directory: models already running from an older extraction keep their files.
            self._count += 1
            dest = self._base / str(self._count)
            safe_extract(real, dest, release)
            if not (dest / "bin" / "activate").is_file():
                shutil.rmtree(dest, ignore_errors=True)
                raise EnvError(
                    f"Path {dest}/bin/activate does not exist. The Python environment should contain an "
                    f"'activate' script. (extracted from {real})",
                    hint="pack the env with stubforge pack-env or conda-pack; a venv archive has no interpreter",
                )
            self._extracted[str(real)] = (mtime, dest)
            return dest

    def close(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
            self._extracted.clear()


_shared: EnvironmentManager | None = None


def shared() -> EnvironmentManager:
    """One manager per process, like Triton's per backend: an archive is extracted once for every model that
    names it, and the extractions go when the process exits."""
    global _shared
    if _shared is None:
        _shared = EnvironmentManager()
        atexit.register(_shared.close)
    return _shared
