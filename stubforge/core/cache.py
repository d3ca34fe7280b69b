"""The on-disk store: upstream sources, built stubs with their manifests, build trees, logs and locks.

Layout under the root (platformdirs' user cache dir, or $STUBFORGE_CACHE):
    sources/triton/<rYY.MM>/{python_backend,common,core,backend}/  + <rYY.MM>.json
    sources/<pybind11|dlpack|googletest>/<version>/                 + <version>.json
    sources/boost/<version>.tar.gz | sources/boost/<name>.json (header trees are referenced, not copied)
    stubs/<key>/{triton_python_backend_stub,manifest.json,build.log}
    builds/<key>/            (the key's scratch build tree, removed after each build)
    logs/  locks/
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock
import platformdirs

# Re-exported for callers that still reach them through cache (install, build, packenv ...); they live in fsutil.
from stubforge.core.fsutil import staging_dir as staging_dir
from stubforge.core.fsutil import write_json_atomic as write_json_atomic
from stubforge.errors import StubforgeError

STUB_NAME = "triton_python_backend_stub"
MANIFEST_NAME = "manifest.json"
LOCK_TIMEOUT_S = 3 * 3600.0


def root() -> Path:
    override = os.environ.get("STUBFORGE_CACHE")
    path = Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("stubforge"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StubforgeError(
            f"cannot create the cache directory {path} ({exc.strerror})",
            hint="set STUBFORGE_CACHE to a writable directory",
        ) from exc
    return path


def sources_dir() -> Path:
    return root() / "sources"


def stubs_dir() -> Path:
    return root() / "stubs"


def logs_dir() -> Path:
    path = root() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def builds_dir() -> Path:
    path = root() / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(
    name: str, timeout: float = LOCK_TIMEOUT_S, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Serialise work on one key across processes; a second build of the same key waits here."""
    lock_dir = root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_dir / f"{name}.lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if on_wait is not None:
                on_wait()
            lock.acquire(timeout=timeout)
        try:
            yield
        finally:
            lock.release()
    except filelock.Timeout as exc:
        raise StubforgeError(
            f"another stubforge process holds the lock {lock.lock_file} for more than {timeout:.0f} s",
            hint="wait for it to finish, or stop it",
        ) from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def stub_artifacts() -> list[dict[str, Any]]:
    """Manifests of every complete artifact (a stub plus its manifest), newest first."""
    base = stubs_dir()
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir()):
        manifest = entry / MANIFEST_NAME
        if entry.name.startswith(".") or not manifest.is_file() or not (entry / STUB_NAME).is_file():
            continue
        try:
            data = read_json(manifest)
        except (OSError, ValueError):
            continue
        data["path"] = str(entry / STUB_NAME)
        found.append(data)
    return sorted(found, key=lambda d: d.get("created", ""), reverse=True)
