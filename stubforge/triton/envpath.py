"""EXECUTION_ENV_PATH: the value that points Triton at a model's environment, and the rules Triton applies to it.

`$$TRITON_MODEL_DIRECTORY` counts only as a leading prefix; `..` after it may climb into the repository (a
shared `$$TRITON_MODEL_DIRECTORY/../shared.tar.gz`: the server resolves it for a local repository and fetches
it itself from an object store), but not out of it, and symlinks may not lead out of the model directory; any
other value is an absolute host path; the target is a directory with bin/activate or a tar / tar.gz archive, the
only formats Triton can open (docs/triton-behaviour.md, "EXECUTION_ENV_PATH and extraction"). What an object
store adds (directory envs, backends other than `python`) is server/check/store.py's.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from stubforge.triton import config, pbtxt

EXECUTION_ENV_PATH = "EXECUTION_ENV_PATH"  # the config.pbtxt parameter the Python backend reads
MODEL_DIR_VAR = "$$TRITON_MODEL_DIRECTORY"
# Triton opens anything that is not a directory with libarchive, gzip being the only filter it enables.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
UNSUPPORTED_SUFFIXES = {
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar.bz2": "bzip2",
    ".tbz": "bzip2",
    ".tbz2": "bzip2",
    ".tar.zst": "zstd",
    ".tzst": "zstd",
    ".tar.lz4": "lz4",
    ".tar.lzma": "lzma",
    ".tar.lz": "lzip",
    ".zip": "zip",
    ".7z": "7-zip",
    ".rar": "rar",
    ".conda": "conda package",
    ".whl": "wheel (zip)",
    ".xz": "xz",
    ".bz2": "bzip2",
    ".zst": "zstd",
    ".gz": "gzip (not a .tar.gz name)",
}
_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7-zip"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_ARCHIVE_FAILURE = "archive_read_open_filename() failed."

_OUTSIDE_HINT = (
    "an absolute host path exists only on this host (not in a container, on another server or in an "
    "object-store repository), and an env outside the repository is not part of it when it is copied or pushed"
)


def _inside(path: str, directory: str) -> bool:
    return path != directory and os.path.commonpath([path, directory]) == directory


def unsupported_archive(name: str) -> str | None:
    """The archive format a file name says it holds when Triton cannot read it (e.g. "xz"), else None."""
    lower = name.lower()
    if lower.endswith(ARCHIVE_SUFFIXES):
        return None
    for suffix, kind in UNSUPPORTED_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _archive_problem(path: Path, shown: str) -> tuple[str, str] | None:
    """Why Triton could not open this environment archive (message, hint), from its name and content."""
    hint = (
        "pack the environment as .tar.gz or .tar (e.g. `tar -czf env.tar.gz -C env .` or `stubforge pack-env`), "
        "or point EXECUTION_ENV_PATH at an unpacked directory, which Triton uses as is and loads fastest"
    )
    if path.is_dir():
        return None  # directories are used as they are, whatever their name
    kind = unsupported_archive(path.name)
    if kind is not None:
        return (
            f"{shown}: Triton cannot read {kind} archives (it reads only tar or tar+gzip and fails with "
            f"`{_ARCHIVE_FAILURE}`)",
            hint,
        )
    if not path.is_file():
        return None  # not there (yet): only its name can be judged
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return (
            f"{shown} is a file but not named .tar.gz, .tgz or .tar; Triton needs a directory or a tar(.gz) "
            "archive",
            hint,
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
        for magic, name in _MAGIC:
            if head.startswith(magic):
                return (
                    f"{shown} is named like a tar archive but holds {name} data; Triton fails with "
                    f"`{_ARCHIVE_FAILURE}`",
                    hint,
                )
        if head.startswith(b"\x1f\x8b"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
    except (OSError, EOFError, zlib.error) as exc:
        return (f"{shown} cannot be read as a tar or tar.gz archive ({exc})", hint)
    if head[257:262] != b"ustar":
        return (f"{shown} is not a tar archive (no tar header found)", hint)
    return None


def env_path_value(model_dir: Path, env: Path, *, allow_host_path: bool = False) -> str:
    """The EXECUTION_ENV_PATH value that points Triton at `env` for the model in `model_dir`.

    Inside the model directory: `$$TRITON_MODEL_DIRECTORY/<relative path>`, which works in every kind of
    repository. Elsewhere in the repository (the model directory's parent), a shared env:
    `$$TRITON_MODEL_DIRECTORY/../<relative path>`, which the server resolves in a local repository and fetches
    from an object store (for backend "python"; docs/triton-behaviour.md, "Repositories in object stores (s3)").
    Outside the repository: an error, unless `allow_host_path`, which gives the absolute real path.
    """
    model_abs = os.path.abspath(model_dir)
    model_real = os.path.realpath(model_dir)
    env_abs = os.path.abspath(env)
    env_real = os.path.realpath(env)
    if env_real == model_real or env_abs == model_abs:
        raise config.ConfigError(
            f"the environment {env} is the model directory itself",
            hint="put the environment in a file or directory inside it, e.g. <model>/env.tar.gz",
        )
    problem = _archive_problem(Path(env), str(env))
    if problem is not None:
        raise config.ConfigError(problem[0], hint=problem[1])
    if _inside(env_real, model_real):
        # Keep the name the user gave when it is inside (a symlink inside the model dir stays a symlink).
        if _inside(env_abs, model_abs):
            relative = os.path.relpath(env_abs, model_abs)
        else:
            relative = os.path.relpath(env_real, model_real)
        return f"{MODEL_DIR_VAR}/{Path(relative).as_posix()}"
    repository_abs, repository_real = os.path.dirname(model_abs), os.path.dirname(model_real)
    if _inside(env_abs, repository_abs) and _inside(env_real, repository_real):
        # A real file or directory of the repository (a symlink out of it would not travel with it).
        return f"{MODEL_DIR_VAR}/../{Path(os.path.relpath(env_abs, repository_abs)).as_posix()}"
    if allow_host_path:
        return env_real
    via = (
        f" (it is a symlink, or lies under one, that leads to {env_real})"
        if _inside(env_abs, model_abs)
        else ""
    )
    raise config.ConfigError(
        f"the environment {env} is outside the model directory {model_dir} and its repository{via}",
        hint=f"{_OUTSIDE_HINT}. Put the environment inside the model directory (e.g. `stubforge pack-env "
        f"--model {model_dir}`) or beside the models in the repository (shared by them), or pass "
        f"--allow-host-path to write the absolute path {env_real}",
    )


def validate_env_path(model_dir: Path, value: str, *, must_exist: bool = True) -> Path:
    """Resolve an EXECUTION_ENV_PATH value as Triton does and return the real path it names.

    `$$TRITON_MODEL_DIRECTORY` is honoured only as a leading prefix; `..` may climb into the repository but not
    out of it, and no symlink may lead out of the model directory; any other value must be absolute. The
    target must be a directory or a .tar.gz/.tgz/.tar archive. With `must_exist`, it must exist here and a
    directory needs bin/activate.
    """
    shown = repr(value)
    fix = f"e.g. {MODEL_DIR_VAR}/env.tar.gz for an environment inside the model directory"
    if not value.strip():
        raise config.ConfigError("EXECUTION_ENV_PATH is empty", hint=f"set it to the environment, {fix}")
    if any(ch in value for ch in "\0\n\r"):
        raise config.ConfigError(
            f"EXECUTION_ENV_PATH {shown} contains a control character", hint=f"write a plain path, {fix}"
        )
    position = value.find(MODEL_DIR_VAR)
    model_real = os.path.realpath(model_dir)
    if position > 0:
        raise config.ConfigError(
            f"EXECUTION_ENV_PATH {shown} uses {MODEL_DIR_VAR} after the start; Triton replaces it only as a "
            "leading prefix",
            hint=f"start the value with it, {fix}",
        )
    if position == 0:
        rest = value[len(MODEL_DIR_VAR) :]
        if not rest.startswith("/") or not rest.strip("/"):
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} does not name a path inside the model directory",
                hint=f"follow {MODEL_DIR_VAR} with / and the environment's relative path, {fix}",
            )
        target = Path(os.path.abspath(model_dir)) / rest.lstrip("/")
        real = os.path.realpath(target)
        # `..` is resolved textually first (as the server does): what it reaches is judged, then symlinks.
        lexical = os.path.normpath(target)
        climbs = ".." in Path(rest).parts and not _inside(lexical, os.path.abspath(model_dir))
        repository_real = os.path.dirname(model_real)
        if real == model_real or lexical == os.path.abspath(model_dir):
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} names the model directory itself",
                hint=f"name the environment inside it, {fix}",
            )
        if climbs and _inside(lexical, os.path.dirname(os.path.abspath(model_dir))):
            if not _inside(real, repository_real):
                raise config.ConfigError(
                    f"EXECUTION_ENV_PATH {shown} leads outside the repository through a symlink: it resolves to "
                    f"{real}",
                    hint=f"{_OUTSIDE_HINT}. Put the environment (a real file or directory) in the repository",
                )
        elif climbs:
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} climbs out of the repository with '..': it resolves to {real}, "
                f"outside {os.path.dirname(os.path.abspath(model_dir))}",
                hint=f"{_OUTSIDE_HINT}. Put a shared environment beside the models "
                f"({MODEL_DIR_VAR}/../shared.tar.gz) or inside the model directory, {fix}",
            )
        elif not _inside(real, model_real):
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} leads outside the model directory {model_dir} through a symlink: "
                f"it resolves to {real}",
                hint=f"{_OUTSIDE_HINT}. Move the environment into the model directory (a real file or "
                f"directory, not a symlink out), or name a shared one as {MODEL_DIR_VAR}/../NAME",
            )
    else:
        if not os.path.isabs(value):
            tilde = " (~ is not expanded)" if value.startswith("~") else ""
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} is a relative path{tilde}; Triton needs an absolute path or "
                f"{MODEL_DIR_VAR}/...",
                hint=fix,
            )
        target = Path(value)
        real = os.path.realpath(target)
    problem = _archive_problem(target, f"EXECUTION_ENV_PATH {shown}")
    if problem is not None:
        raise config.ConfigError(problem[0], hint=problem[1])
    if must_exist:
        if not os.path.exists(real):
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} does not exist ({real})",
                hint="create or pack the environment there (stubforge pack-env), or fix the path; an absolute path "
                "must exist on the host (or in the container) that runs Triton",
            )
        if os.path.isdir(real) and not os.path.isfile(os.path.join(real, "bin", "activate")):
            raise config.ConfigError(
                f"EXECUTION_ENV_PATH {shown} is a directory without bin/activate; Triton stops with "
                f"`Path {real}/bin/activate does not exist`",
                hint="point it at a complete environment (a venv/conda prefix with bin/activate), e.g. one made by "
                "stubforge pack-env",
            )
    return Path(real)


def plan_env_path(model_dir: Path, env: Path, *, allow_host_path: bool = False) -> str:
    """The EXECUTION_ENV_PATH value set_env_path will write, checked before anything is packed.

    Fails early (before a long pack) when the env would be outside the model directory, when its name is an
    archive Triton cannot read, or when the model's config.pbtxt is missing, malformed or sets the key twice.
    """
    value = env_path_value(model_dir, env, allow_host_path=allow_host_path)
    info = config.read_config(model_dir)
    pbtxt.set_parameter(info.text, EXECUTION_ENV_PATH, value, source=str(info.path))
    return value


def set_env_path(
    model_dir: Path, env: Path, *, allow_host_path: bool = False, backup: bool = True
) -> pbtxt.WriteResult:
    """Point the model's EXECUTION_ENV_PATH at an existing environment (archive or directory)."""
    value = env_path_value(model_dir, env, allow_host_path=allow_host_path)
    validate_env_path(model_dir, value)
    return pbtxt.write_parameter(config.config_file(model_dir), EXECUTION_ENV_PATH, value, backup=backup)


def param_block(value: str, *, key: str = EXECUTION_ENV_PATH) -> str:
    """The text block that sets EXECUTION_ENV_PATH (or `key`) to `value`, ready to paste into a config.pbtxt."""
    return pbtxt.parameter_block(key, value)
