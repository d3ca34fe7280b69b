"""check --for s3|gcs|azure: the object-store rules (server/check/store.py), and none of them for local."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from stubforge.cli import cli
from stubforge.errors import StubforgeError
from stubforge.server.check import check


def write_model(repo: Path, name: str, *, backend: str = "python", env: str | None = None) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    text = f'name: "{name}"\nbackend: "{backend}"\n'
    if env:
        text += f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n'
    (model / "config.pbtxt").write_text(text)
    return model


def archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("bin/activate"), io.BytesIO(b""))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    archive_model = write_model(root, "archive_env", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    archive(archive_model / "env.tar.gz")
    dir_model = write_model(root, "dir_env", env="$$TRITON_MODEL_DIRECTORY/env")
    (dir_model / "env" / "bin").mkdir(parents=True)
    (dir_model / "env" / "bin" / "activate").write_text("")
    archive(root / "shared.tar.gz")
    write_model(root, "shared_python", env="$$TRITON_MODEL_DIRECTORY/../shared.tar.gz")
    write_model(root, "shared_py38", backend="python_3_8", env="$$TRITON_MODEL_DIRECTORY/../shared.tar.gz")
    stub_model = write_model(root, "own_stub")
    (stub_model / "triton_python_backend_stub").write_bytes(b"not an ELF")
    return root


def store_findings(repo: Path, store: str) -> dict[str, list[tuple[str, str]]]:
    report = check(repo, store=store)
    assert report.store == store
    return {
        m.name: sorted((f.level, f.check) for f in m.findings if f.check.startswith("store-"))
        for m in report.models
    }


def test_local_repository_has_no_store_findings(repo: Path) -> None:
    assert all(not found for found in store_findings(repo, "local").values())
    # `..` into the repository is a valid EXECUTION_ENV_PATH now, in every kind of repository.
    report = check(repo)
    shared = next(m for m in report.models if m.name == "shared_python")
    assert not [f for f in shared.findings if f.check == "env-path"]


def test_s3_rules(repo: Path) -> None:
    found = store_findings(repo, "s3")
    assert found["archive_env"] == []
    assert found["dir_env"] == [("ERROR", "store-env-dir")]
    assert found["shared_python"] == []  # the server fetches it for backend python
    assert found["shared_py38"] == [("ERROR", "store-parent-env")]
    assert found["own_stub"] == [("WARN", "store-stub-mode")]
    report = check(repo, store="s3")
    by_name = {m.name: m for m in report.models}
    env_dir = next(f for f in by_name["dir_env"].findings if f.check == "store-env-dir")
    assert "No module named 'numpy'" in env_dir.message and "(1 files)" in env_dir.message
    assert "pack-env" in env_dir.fix and "env.tar.gz" in env_dir.fix
    stub = next(f for f in by_name["own_stub"].findings if f.check == "store-stub-mode")
    assert "read-only" in stub.message and "Failed to give execute permission" in stub.message
    assert "python_3_X" in stub.fix and "install backend" in stub.fix
    assert "untested" not in stub.message and "not run against" not in stub.message


@pytest.mark.parametrize("store", ["gcs", "azure"])
def test_gcs_and_azure_say_they_are_untested(repo: Path, store: str) -> None:
    found = store_findings(repo, store)
    assert found["dir_env"] == [("ERROR", "store-env-dir")]
    report = check(repo, store=store)
    stub = next(f for m in report.models for f in m.findings if f.check == "store-stub-mode")
    assert f"not run against a real {store} store" in stub.message


def test_unknown_store_and_cli(repo: Path) -> None:
    with pytest.raises(StubforgeError, match="--for ftp"):
        check(repo, store="ftp")
    result = CliRunner().invoke(cli, ["check", str(repo), "--for", "s3"])
    assert result.exit_code == 1 and "store-env-dir" in result.output and "read from s3" in result.output
