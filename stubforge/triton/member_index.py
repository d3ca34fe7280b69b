"""Archive member lists kept between runs.

gzip has no index: listing a tar.gz decompresses all of it (0.3 s for a 36 MB Python + numpy env, far more for
a torch env), and install, check, verify and run each list the same archive again. The list is kept in the
cache under the archive's SHA-256 (36 ms for those 36 MB here): whatever rewrote, replaced or copied the file,
the list found is the one of these bytes. Best effort: a cache that cannot be read or written only means
listing again.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from stubforge.core import cache, fsutil
from stubforge.errors import StubforgeError

KEPT = 64  # index files kept; the least recently written go first
_DIR = "archive-index"
_SCHEMA = 1


def identity(path: Path) -> str | None:
    """The archive's content digest (None: it cannot be read)."""
    try:
        return cache.sha256_of(path)
    except OSError:
        return None


def _index_file(key: str) -> Path:
    return cache.root() / _DIR / f"{key}.json"


def members_of(path: Path, list_members: Callable[[], list[tarfile.TarInfo]]) -> list[tarfile.TarInfo]:
    """The member list of the archive at `path`: the kept one, else list_members()'s (then kept, unless the
    file changed while it was listed)."""
    key = identity(path)
    kept = _load(key) if key is not None else None
    if kept is not None:
        return kept
    members = list_members()
    # A sparse member's map is not kept (only what the rules and small reads need): such a list is not kept.
    if key is not None and all(m.sparse is None for m in members) and identity(path) == key:
        keep(key, members)
    return members


def _load(key: str) -> list[tarfile.TarInfo] | None:
    try:
        data = json.loads(_index_file(key).read_text())
        if data.get("schema") != _SCHEMA or data.get("identity") != key:
            return None
        return [_member(row) for row in data["members"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError, StubforgeError):
        return None


def keep(key: str, members: list[tarfile.TarInfo]) -> None:
    """Keep `members` (with their offsets) as the list of the archive whose SHA-256 is `key`: for a writer that
    knows what it wrote (pack-env), so that the first look at its archive lists nothing either."""
    with contextlib.suppress(OSError, StubforgeError):
        target = _index_file(key)
        rows = [
            [m.name, m.type.decode("latin-1"), m.size, m.mode, m.linkname, m.mtime, m.offset, m.offset_data]
            for m in members
        ]
        fsutil.write_json_atomic(target, {"schema": _SCHEMA, "identity": key, "members": rows})
        _prune(target.parent)


def _member(row: list[object]) -> tarfile.TarInfo:
    name, kind, size, mode, linkname, mtime, offset, offset_data = row
    member = tarfile.TarInfo(str(name))
    member.type = str(kind).encode("latin-1")
    member.size, member.mode, member.mtime = int(size), int(mode), int(mtime)  # type: ignore[call-overload]
    member.linkname = str(linkname)
    member.offset, member.offset_data = int(offset), int(offset_data)  # type: ignore[call-overload]
    return member


def _prune(folder: Path) -> None:
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in files[KEPT:]:
        old.unlink(missing_ok=True)
