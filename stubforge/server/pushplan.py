"""The local side of `push`: which files of a repository travel, and what must not.

Never pushed: config.pbtxt backups (`*.bak`, `*.bak.N`), stubforge's sidecars (`<stub>.stubforge.json`,
`<env>.tar.gz.stubforge.json`, a directory env's `stubforge-env.json`, a backend's `stubforge-backend.json`,
the runner's `.stubforge-owner`), `__pycache__` and `*.pyc` (the server compiles its own), and the temporary
files of an interrupted atomic write (`.NAME.XXXXXXXX[.tmp]` beside NAME). Triton reads none of them, and a
backup or sidecar in a model directory is one more object every server lists and downloads.

Refused: a model whose EXECUTION_ENV_PATH is a directory (see server/check/store.py for why it fails from an
object store) unless asked; reported: an env outside the repository (it is not pushed) and per-model stubs
(they arrive without their execute bit).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from stubforge.core import cache
from stubforge.errors import StubforgeError
from stubforge.server.check import store as store_rules
from stubforge.triton import deployment, stores

# What never travels, by file name (fnmatch patterns), and directories never descended into.
SKIP_FILES = (
    "*.bak",
    "*.bak.[0-9]*",
    "*.stubforge.json",
    "stubforge-env.json",
    "stubforge-backend.json",
    ".stubforge-owner",
    "*.pyc",
)
SKIP_DIRS = ("__pycache__",)
# fsutil's temporary names: "." + the final name + "." + 8 random characters (+ ".tmp"), beside the final name.
_TEMP = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}(?:\.tmp)?$")


class PushRefused(StubforgeError):
    """The repository holds something that will not work from an object store."""


@dataclass(frozen=True)
class LocalFile:
    relative: str  # the key below the prefix, '/'-separated
    path: Path
    size: int

    def digest(self, algorithm: str) -> str:
        """The hex digest of the content ("md5" or "sha256"): one algorithm per read, only the one needed."""
        hasher = (
            hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
        )
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(block)
        return hasher.hexdigest()


@dataclass
class PushPlan:
    repository: Path
    files: list[LocalFile]
    skipped: list[str] = field(default_factory=list)  # relative paths left out, for --dry-run and the report
    warnings: list[str] = field(default_factory=list)


def skipped_name(name: str, siblings: set[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in SKIP_FILES):
        return True
    temp = _TEMP.match(name)
    return bool(temp and temp.group("final") in siblings)


def plan(repository: Path, *, allow_directory_env: bool = False) -> PushPlan:
    """The files to push from `repository` (a directory of models), with what is left out and why."""
    if not repository.is_dir():
        raise StubforgeError(f"{repository}: no such directory", hint="pass the model repository to push")
    models = deployment.list_models(repository)
    if not models:
        raise StubforgeError(
            f"{repository} holds no model (no <name>/config.pbtxt)",
            hint="pass the model repository, the directory whose subdirectories are models",
        )
    result = PushPlan(repository, [])
    _check_models(result, models, allow_directory_env)
    seen: set[str] = set()
    for top, dirs, files in os.walk(repository, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop, or the same directory twice: push it once
            dirs[:] = []
            continue
        seen.add(real)
        here = Path(top)
        names = set(dirs) | set(files)
        for name in sorted(dirs):
            if name in SKIP_DIRS or skipped_name(name, names):
                dirs.remove(name)
                result.skipped.append(_relative(repository, here / name) + "/")
        dirs.sort()
        for name in sorted(files):
            path = here / name
            relative = _relative(repository, path)
            if skipped_name(name, names):
                result.skipped.append(relative)
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # a dangling symlink: nothing to upload
                result.warnings.append(f"{relative} is a dangling symlink: not pushed")
                continue
            result.files.append(LocalFile(relative, path, size))
    return result


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_models(result: PushPlan, models: list[Path], allow_directory_env: bool) -> None:
    refused = []
    for model_dir in models:
        try:
            resolved = deployment.resolve(model_dir)
        except StubforgeError:
            continue  # a broken config.pbtxt is check's to report; it is pushed as it is
        env = resolved.env
        if env is not None and env.path is not None:
            if env.path.is_dir():
                reason = store_rules.directory_env_reason(
                    env.path, store_rules.count_files(env.path), stores.S3
                )
                if allow_directory_env:
                    result.warnings.append(
                        f"{model_dir.name}: {reason} (pushed anyway: --allow-directory-env)"
                    )
                else:
                    refused.append(f"{model_dir.name}: {reason}")
            if not _inside(env.path, result.repository):
                result.warnings.append(
                    f"{model_dir.name}: its env {env.path} is outside the repository and is not pushed; it must "
                    "exist at that path on every server"
                )
        stub = model_dir / cache.STUB_NAME
        if stub.is_file():
            result.warnings.append(
                f"{model_dir.name}: its per-model stub arrives without its execute bit; the server chmods its copy "
                "(which fails on a read-only volume: see stubforge check --for s3)"
            )
    if refused:
        raise PushRefused(
            "refusing to push a directory env:\n  " + "\n  ".join(refused),
            hint=store_rules.PACK_HINT + "; or push it anyway with --allow-directory-env",
        )


def _inside(path: Path, directory: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, base]) == base
