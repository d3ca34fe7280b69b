"""EnvironmentManager semantics (docs/triton-behaviour.md, "EXECUTION_ENV_PATH and extraction"): directory envs
are used in place; archives are extracted
once per (realpath, mtime) into a private temp dir, re-extracted when the file changes, and concurrent loads of
one archive wait for each other. Unlike Triton before r26.06, extraction refuses every member that could write
outside the destination (envs/archive.py), and an archive that expands beyond its limit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from stubforge.core import leftovers, releases
from stubforge.envs import archive as archive_rules
from stubforge.errors import EnvError


def safe_extract(
    archive: Path, dest: Path, release: releases.Release | None = None, *, max_bytes: int | None = None
) -> None:
    """Extract an env archive with the rules of envs/archive.py (one set for the runner and `check`);
    `release` words what that Triton would do with an unsafe member."""
    archive_rules.extract(
        archive, dest, limits=archive_rules.default_limits(archive, max_bytes), release=release
    )


class EnvironmentManager:
    def __init__(self, *, max_env_bytes: int | None = None) -> None:
        # None: each archive's default limit (envs/archive.py default_limits).
        self.max_env_bytes = max_env_bytes
        self._base: Path | None = None
        self._extracted: dict[str, tuple[float, Path]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._count = 0

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            if self._base is None:
                # Runs killed with SIGKILL could not remove theirs: take them back before adding ours.
                leftovers.reclaim_runner_orphans()
                self._base = Path(tempfile.mkdtemp(prefix=leftovers.RUNNER_PREFIX))
                leftovers.write_owner(self._base)
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
            safe_extract(real, dest, release, max_bytes=self.max_env_bytes)
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
