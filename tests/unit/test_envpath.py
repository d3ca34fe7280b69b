"""EXECUTION_ENV_PATH: the value stubforge writes and the rules Triton applies ($$TRITON_MODEL_DIRECTORY prefix,
no escapes, absolute host paths, readable archive formats)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

import pytest

from stubforge.triton import envpath, pbtxt
from stubforge.triton.config import ConfigError, read_config
from stubforge.triton.envpath import EXECUTION_ENV_PATH
from tests.unit.configs import CONFIGS, NEW, parameters, sample

# ------------------------------------------------------------------------------------------ EXECUTION_ENV_PATH


def make_env_dir(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "activate").write_text("export PATH=...\n")
    return path


def make_tar(path: Path, mode: Literal["w", "w:gz", "w:xz"] = "w:gz") -> Path:
    data = b"export PATH=...\n"
    with tarfile.open(path, mode) as tar:
        member = tarfile.TarInfo("bin/activate")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "repo" / "add_sub"
    (directory / "1").mkdir(parents=True)
    return directory


def test_env_inside_model_dir(model: Path) -> None:
    make_tar(model / "env.tar.gz")
    assert envpath.env_path_value(model, model / "env.tar.gz") == NEW
    make_env_dir(model / "envs" / "py38")
    value = envpath.env_path_value(model, model / "envs" / "py38")
    assert value == "$$TRITON_MODEL_DIRECTORY/envs/py38"
    assert envpath.validate_env_path(model, value) == (model / "envs" / "py38").resolve()
    # A relative env path, and allow_host_path, still give the portable form inside the model dir.
    cwd = os.getcwd()
    try:
        os.chdir(model)
        assert envpath.env_path_value(Path("."), Path("env.tar.gz"), allow_host_path=True) == NEW
    finally:
        os.chdir(cwd)


def test_env_outside_model_dir(model: Path, tmp_path: Path) -> None:
    outside = make_tar(tmp_path / "env.tar.gz")
    with pytest.raises(ConfigError) as info:
        envpath.env_path_value(model, outside)
    error = info.value
    assert str(outside) in error.message and str(model) in error.message and "repository" in error.message
    assert "only on this host" in error.hint and "download only" not in error.hint
    assert "--allow-host-path" in error.hint and f"pack-env --model {model}" in error.hint
    assert envpath.env_path_value(model, outside, allow_host_path=True) == str(outside.resolve())


def test_shared_env_in_the_repository(model: Path, tmp_path: Path) -> None:
    """An env beside the models is written as $$TRITON_MODEL_DIRECTORY/../NAME: the server resolves it locally
    and fetches it from an object store (docs/triton-behaviour.md, "Repositories in object stores (s3)")."""
    shared = make_tar(model.parent / "shared.tar.gz")
    value = envpath.env_path_value(model, shared)
    assert value == "$$TRITON_MODEL_DIRECTORY/../shared.tar.gz"
    assert envpath.validate_env_path(model, value) == shared.resolve()
    (model.parent / "envs").mkdir()
    nested = make_tar(model.parent / "envs" / "py38.tar.gz")
    assert envpath.env_path_value(model, nested) == "$$TRITON_MODEL_DIRECTORY/../envs/py38.tar.gz"
    # A symlink in the repository that leads out of it would not travel with it.
    (model.parent / "linked.tar.gz").symlink_to(make_tar(tmp_path / "real.tar.gz"))
    with pytest.raises(ConfigError, match="outside the model directory"):
        envpath.env_path_value(model, model.parent / "linked.tar.gz")
    with pytest.raises(ConfigError, match="outside the repository through a symlink"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/../linked.tar.gz")


def test_env_symlink_escaping_model_dir(model: Path, tmp_path: Path) -> None:
    outside = make_tar(tmp_path / "real.tar.gz")
    (model / "env.tar.gz").symlink_to(outside)
    with pytest.raises(ConfigError, match="symlink") as info:
        envpath.env_path_value(model, model / "env.tar.gz")
    assert str(outside) in info.value.message
    with pytest.raises(ConfigError, match="through a symlink"):
        envpath.validate_env_path(model, NEW)


def test_env_is_model_dir_itself(model: Path) -> None:
    with pytest.raises(ConfigError, match="model directory itself"):
        envpath.env_path_value(model, model)
    with pytest.raises(ConfigError, match="model directory itself"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/.")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("env.tar.xz", "xz"), ("env.tar.bz2", "bzip2"), ("env.tar.zst", "zstd"), ("env.zip", "zip")],
)
def test_unsupported_archive_names(model: Path, name: str, kind: str) -> None:
    for must_exist in (False, True):
        with pytest.raises(ConfigError) as info:
            envpath.validate_env_path(model, f"$$TRITON_MODEL_DIRECTORY/{name}", must_exist=must_exist)
        assert name in info.value.message and kind in info.value.message
        assert "archive_read_open_filename() failed." in info.value.message
        assert ".tar.gz" in info.value.hint and "directory" in info.value.hint
    with pytest.raises(ConfigError, match="archive_read_open_filename"):
        envpath.env_path_value(model, model / name)


def test_archive_content_is_checked(model: Path) -> None:
    make_tar(model / "ok.tar.gz")
    make_tar(model / "ok.tgz")
    make_tar(model / "ok.tar", "w")
    for name in ("ok.tar.gz", "ok.tgz", "ok.tar"):
        assert (
            envpath.validate_env_path(model, f"$$TRITON_MODEL_DIRECTORY/{name}") == (model / name).resolve()
        )
    make_tar(model / "really_xz.tar.gz", "w:xz")
    with pytest.raises(ConfigError, match="holds xz data"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/really_xz.tar.gz")
    with zipfile.ZipFile(model / "really_zip.tar", "w") as archive:
        archive.writestr("bin/activate", "x")
    with pytest.raises(ConfigError, match="holds zip data"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/really_zip.tar")
    (model / "plain.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ConfigError, match="cannot be read as a tar"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/plain.tar.gz")
    (model / "env.bin").write_bytes(b"x" * 600)
    with pytest.raises(ConfigError, match=r"not named \.tar\.gz"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/env.bin")
    # A directory is fine whatever its name.
    make_env_dir(model / "odd.zip")
    assert envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/odd.zip").is_dir()


def test_dot_dot_escape(model: Path) -> None:
    make_tar(model.parent / "shared.tar.gz")
    # Into the repository: what the server resolves (locally) and fetches (object stores).
    value = "$$TRITON_MODEL_DIRECTORY/../shared.tar.gz"
    assert envpath.validate_env_path(model, value) == (model.parent / "shared.tar.gz").resolve()
    # Out of the repository: refused.
    make_tar(model.parent.parent / "host.tar.gz")
    with pytest.raises(ConfigError) as info:
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/../../host.tar.gz")
    assert "'..'" in info.value.message and "out of the repository" in info.value.message
    assert "../shared.tar.gz" in info.value.hint and "download only" not in info.value.hint
    with pytest.raises(ConfigError, match="model directory itself"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/1/..")
    # '..' that stays inside is only a longer spelling.
    make_tar(model / "env.tar.gz")
    value = "$$TRITON_MODEL_DIRECTORY/1/../env.tar.gz"
    assert envpath.validate_env_path(model, value) == (model / "env.tar.gz").resolve()


def test_symlinked_subdir_escape(model: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    make_tar(tmp_path / "elsewhere" / "env.tar.gz")
    (model / "envs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="through a symlink"):
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/envs/env.tar.gz")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty"),
        ("/opt/$$TRITON_MODEL_DIRECTORY/env.tar.gz", "only as a leading prefix"),
        ("$$TRITON_MODEL_DIRECTORYenv.tar.gz", "does not name a path inside"),
        ("$$TRITON_MODEL_DIRECTORY/", "does not name a path inside"),
        ("env.tar.gz", "relative path"),
        ("~/envs/env.tar.gz", r"relative path \(~ is not expanded\)"),
        ("/opt/env\n.tar.gz", "control character"),
    ],
)
def test_bad_values(model: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        envpath.validate_env_path(model, value)
    assert info.value.hint
    if value.strip() and "\n" not in value:
        assert repr(value) in info.value.message


def test_absolute_values_and_existence(model: Path, tmp_path: Path) -> None:
    env = make_env_dir(tmp_path / "host_env")
    assert envpath.validate_env_path(model, str(env)) == env.resolve()
    missing = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(ConfigError, match="does not exist") as info:
        envpath.validate_env_path(model, missing)
    assert "pack-env" in info.value.hint
    assert envpath.validate_env_path(model, missing, must_exist=False) == Path(missing)
    assert envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/later", must_exist=False) == (
        model.resolve() / "later"
    )
    (model / "empty_env").mkdir()
    with pytest.raises(ConfigError, match="without bin/activate") as info:
        envpath.validate_env_path(model, "$$TRITON_MODEL_DIRECTORY/empty_env")
    assert "bin/activate does not exist" in info.value.message


def test_generated_values_validate(model: Path, tmp_path: Path) -> None:
    # What env_path_value writes, validate_env_path accepts and resolves back to the environment.
    for env in (
        make_tar(model / "env.tar.gz"),
        make_env_dir(model / "a" / "b"),
        make_tar(tmp_path / "x.tgz"),
    ):
        value = envpath.env_path_value(model, env, allow_host_path=True)
        assert envpath.validate_env_path(model, value) == env.resolve()
        # ... and it can be written into a config and read back.
        text = pbtxt.set_parameter(sample("python_basic.pbtxt"), EXECUTION_ENV_PATH, value)
        assert parameters(text)[EXECUTION_ENV_PATH] == value


def test_plan_and_set_env_path(model: Path, tmp_path: Path, cache_root: Path) -> None:
    (model / "config.pbtxt").write_bytes((CONFIGS / "no_parameters_no_newline.pbtxt").read_bytes())
    env = model / "env.tar.gz"
    assert envpath.plan_env_path(model, env) == NEW  # before the archive exists
    with pytest.raises(ConfigError, match="does not exist"):
        envpath.set_env_path(model, env)
    assert read_config(model).parameters == {}
    make_tar(env)
    result = envpath.set_env_path(model, env, backup=False)
    assert result.changed and result.value == NEW and result.backup is None
    assert read_config(model).parameters == {EXECUTION_ENV_PATH: NEW}
    # Outside the model dir: refused before any work, allowed as a host path on request.
    outside = make_env_dir(tmp_path / "host_env")
    with pytest.raises(ConfigError, match="outside the model directory"):
        envpath.plan_env_path(model, outside)
    result = envpath.set_env_path(model, outside, allow_host_path=True)
    assert result.old_value == NEW and result.value == str(outside.resolve())
    assert result.backup == model / "config.pbtxt.bak"
    # A config that sets the key twice is refused before packing.
    (model / "config.pbtxt").write_bytes((CONFIGS / "duplicate_key.pbtxt").read_bytes())
    with pytest.raises(ConfigError, match="2 times"):
        envpath.plan_env_path(model, env)
