"""Rules for a repository the server copies out of an object store (`check --for s3|gcs|azure`): store-env-dir,
store-stub-mode, store-parent-env.

What the server does with such a repository: docs/triton-behaviour.md, "Repositories in object stores (s3)".
The kind of store is data (triton/stores.py); `--for local` applies none of these rules.
"""

from __future__ import annotations

import os
from pathlib import Path

from stubforge.server.check.report import ERROR, WARN, ModelCheck
from stubforge.triton import deployment, envpath, stores

PACK_HINT = (
    "pack it as an archive, which keeps modes and links: stubforge pack-env ... -o MODEL/env.tar.gz (or "
    "`tar -czf env.tar.gz -C ENV .`) and point EXECUTION_ENV_PATH at it (stubforge param MODEL MODEL/env.tar.gz "
    "--write)"
)


def count_files(directory: Path) -> int:
    """Files an upload would make objects of (symlinks followed, as uploads do)."""
    return sum(len(files) for _, _, files in os.walk(directory, followlinks=True))


def directory_env_reason(env: Path, files: int, store: stores.Store) -> str:
    """Why a directory env fails from an object store: the words push and check share."""
    return (
        f"{env} is a directory env ({files} files): in an {store.name} repository every file becomes an object, "
        "symlinks are copied, execute bits are lost, and the server lists and downloads each object at load "
        "(about 145 s and 66 s for 4,400 objects), then the stub cannot run bin/python3 and the model fails "
        "with \"No module named 'numpy'\"" + store.untested_note
    )


def store_rules(check: ModelCheck, resolved: deployment.Deployment, store: stores.Store) -> None:
    if not store.copies_model_dir:
        return
    env = resolved.env
    if env is not None and env.origin is deployment.EnvOrigin.CONFIG and env.path is not None:
        if env.path.is_dir():
            check.add(
                ERROR,
                "store-env-dir",
                directory_env_reason(env.path, count_files(env.path), store),
                PACK_HINT,
            )
        climbs = env.written.startswith(envpath.MODEL_DIR_VAR) and not _inside(env.path, resolved.model_dir)
        if climbs and resolved.backend != stores.PARENT_ENV_BACKEND:
            check.add(
                ERROR,
                "store-parent-env",
                f"EXECUTION_ENV_PATH {env.written!r} climbs out of the model directory and the model's backend is "
                f"{resolved.backend!r}: the server fetches such an env from an {store.name} store only for backend "
                f"{stores.PARENT_ENV_BACKEND!r}, so it looks for it beside its local copy of the model and fails "
                'with "Failed to get the canonical path for .../folderXXXXXX/../NAME."' + store.untested_note,
                "put the env inside the model directory ($$TRITON_MODEL_DIRECTORY/env.tar.gz), or give the "
                "backend its default env (stubforge install backend --env ENV.tar.gz)",
            )
    stub = resolved.stub
    if stub is not None and _inside(stub.path, resolved.model_dir):
        check.add(
            WARN,
            "store-stub-mode",
            f"{stub.path} arrives without its execute bit from an {store.name} store: the server chmods its copy "
            "before the first start, which fails on a read-only volume (KServe mounts model storage read-only) "
            'with "Failed to give execute permission to ..."' + store.untested_note,
            "where the copy is read-only, bake the stub into the server image instead: a python_3_X backend "
            '(stubforge install backend --backends DIR --python X.Y) and backend: "python_3_X" in config.pbtxt',
        )


def _inside(path: Path, directory: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(directory)
    return real != base and os.path.commonpath([real, base]) == base
