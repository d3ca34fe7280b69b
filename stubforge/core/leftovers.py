"""Leftovers on disk: stubforge's own env extractions whose owner is gone, and Triton's copies that no running
process uses.

The runner extracts archives under `<tmp>/stubforge_env_*` with an owner file (pid + process start time); a run
killed with SIGKILL cannot remove its directory, so the next run (and `stubforge clean`) removes every one whose
owner no longer exists. Triton never removes `/tmp/python_env_*` (its env extractions) on unload, nor the
`/tmp/folderXXXXXX` copies of models read from an object store; `stubforge clean` removes those that no running
process maps, runs from or names on its command line (a live server's stubs do all three).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from stubforge.core import fsutil

OWNER_FILE = ".stubforge-owner"
RUNNER_PREFIX = "stubforge_env_"
# Triton's templates: mkdtemp("python_env_XXXXXX") and mkdtemp("folderXXXXXX").
TRITON_ENV = re.compile(r"^python_env_[A-Za-z0-9]{6}$")
TRITON_COPY = re.compile(r"^folder[A-Za-z0-9]{6}$")


@dataclass(frozen=True)
class Leftover:
    path: str
    kind: str  # "runner-env", "triton-env", "triton-model-copy"
    size: int
    reason: str  # why it is safe to remove

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def write_owner(directory: Path) -> None:
    """Mark `directory` as this process's (pid and start time, so a reused pid is not taken for us)."""
    me = psutil.Process()
    (directory / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))


def owner_alive(directory: Path) -> bool | None:
    """True/False for a directory with an owner file; None when it has none (not ours to judge)."""
    try:
        owner = json.loads((directory / OWNER_FILE).read_text())
        pid, started = int(owner["pid"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


def runner_orphans(tmp: Path | None = None) -> list[Leftover]:
    base = tmp or Path(tempfile.gettempdir())
    found = []
    for path in sorted(base.glob(RUNNER_PREFIX + "*")):
        if path.is_dir() and not path.is_symlink() and owner_alive(path) is False:
            found.append(
                Leftover(str(path), "runner-env", fsutil.tree_size(path), "the run that extracted it is gone")
            )
    return found


def reclaim_runner_orphans(tmp: Path | None = None) -> list[Leftover]:
    """Remove the extractions of runs that were killed; called when a run starts extracting."""
    return _remove(runner_orphans(tmp))


def _remove(found: list[Leftover]) -> list[Leftover]:
    """Remove each; only what is really gone is returned (another user's directory may refuse us)."""
    for leftover in found:
        shutil.rmtree(leftover.path, ignore_errors=True)
    return [f for f in found if not os.path.lexists(f.path)]


def _paths_in_use() -> list[str]:
    """Every path a running process maps, runs from, has open or names as an argument."""
    used: list[str] = []
    for proc in psutil.process_iter(["cwd", "cmdline", "exe"]):
        info = proc.info
        used.extend(p for p in [info.get("cwd"), info.get("exe")] if p)
        used.extend(a for a in info.get("cmdline") or [] if a.startswith("/"))
        try:
            used.extend(m.path for m in proc.memory_maps(grouped=True) if m.path.startswith("/"))
            used.extend(f.path for f in proc.open_files())
        except (psutil.Error, OSError):
            continue
    return used


def _unused(candidates: Iterable[Path], used: list[str]) -> list[Path]:
    return [c for c in candidates if not any(u == str(c) or u.startswith(str(c) + os.sep) for u in used)]


def triton_leftovers(tmp: Path = Path("/tmp")) -> list[Leftover]:
    """Triton's env extractions and object-store model copies that no running process uses."""
    envs = [
        p
        for p in tmp.glob("python_env_*")
        if TRITON_ENV.match(p.name)
        and p.is_dir()
        and not p.is_symlink()
        # Each holds numbered extractions with bin/activate; an empty one is what a failed extraction leaves.
        and (not any(p.iterdir()) or any((d / "bin" / "activate").exists() for d in p.iterdir()))
    ]
    copies = [
        p
        for p in tmp.glob("folder*")
        if TRITON_COPY.match(p.name) and p.is_dir() and not p.is_symlink() and (p / "config.pbtxt").is_file()
    ]
    if not envs and not copies:
        return []
    used = _paths_in_use()
    found = [
        Leftover(
            str(p), "triton-env", fsutil.tree_size(p), "no running process uses it (Triton never removes it)"
        )
        for p in _unused(envs, used)
    ]
    found += [
        Leftover(
            str(p),
            "triton-model-copy",
            fsutil.tree_size(p),
            "no running process uses it (a model copied from an object store)",
        )
        for p in _unused(copies, used)
    ]
    return found


def clean(*, dry_run: bool = False, triton: bool = True, tmp: Path | None = None) -> list[Leftover]:
    """Find (and unless dry_run remove) the leftovers above; returns what was (or would be) removed: a
    directory that could not be removed is not in the list."""
    found = runner_orphans(tmp)
    if triton:
        found += triton_leftovers(tmp or Path("/tmp"))
    return found if dry_run else _remove(found)
