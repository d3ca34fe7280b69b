"""list --backends, verify's static diagnosis, and verify's refusals: no real server needed for these.

A pyenv interpreter binary stands in for a stub where only its ELF matters: like a stub, it links
libpythonX.Y.so.1.0 (NEEDED), which is all that `list` and the env diagnosis read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from stubforge.core import cache
from stubforge.server.verify import session as run
from stubforge.triton import backends as backend_dirs
from tests.conftest import interpreter


def elf_like_stub(minor: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath(interpreter(minor).executable), dest)
    os.chmod(dest, 0o755)
    return dest


def env_archive(path: Path, minor: str) -> Path:
    member = path.parent / f"libpython{minor}.so.1.0"
    member.write_bytes(b"")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(member, arcname=f"lib/libpython{minor}.so.1.0")
    member.unlink()
    return path


def write_model(repo: Path, name: str, backend: str, env_param: str | None = None) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text("")
    param = f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env_param}" }} }}\n'
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "{backend}"\n' + (param if env_param else "")
    )
    return model


@pytest.fixture
def backend_tree(tmp_path: Path) -> Path:
    root = tmp_path / "backends"
    elf_like_stub("3.8", root / "python" / cache.STUB_NAME)
    (root / "python" / "libtriton_python.so").write_bytes(b"")
    elf_like_stub("3.10", root / "python_3_10" / cache.STUB_NAME)
    (root / "python_3_10" / "model.py").write_text("")
    env_archive(root / "python_3_10" / backend_dirs.DEFAULT_ENV, "3.8")  # wrong on purpose
    (root / "python_3_9").mkdir()
    (root / "python_3_9" / "model.py").write_text("")  # no stub of its own: python/'s is used
    (root / "onnxruntime").mkdir()
    (root / "onnxruntime" / "libtriton_onnxruntime.so").write_bytes(b"")
    return root


def test_list_backends_reads_elf_env_and_flags_mismatches(backend_tree: Path) -> None:
    found = {b.name: b for b in backend_dirs.list_backends(backend_tree)}
    assert sorted(found) == ["python", "python_3_10", "python_3_9"]  # onnxruntime is not python-family
    assert (found["python"].kind, found["python"].python, found["python"].problems) == ("stock", "3.8", [])
    assert found["python_3_9"].stub == backend_tree / "python" / cache.STUB_NAME
    assert found["python_3_9"].python == "3.8"
    mismatch = found["python_3_10"]
    assert (mismatch.python, mismatch.default_env_python) == ("3.10", "3.8")
    assert any("carries Python 3.8" in p for p in mismatch.problems)


def test_env_mismatch_names_stub_env_and_fix(backend_tree: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    model = write_model(repo, "m", "python", "$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    env_archive(model / "env.tar.gz", "3.10")
    hint = run.env_mismatch(model, backend_tree)
    assert hint and "embeds Python 3.8" in hint and "carries Python 3.10" in hint and "--stub" in hint
    # A per-model stub of the env's Python wins over the backend's: no mismatch then.
    elf_like_stub("3.10", model / cache.STUB_NAME)
    assert run.env_mismatch(model, backend_tree) is None
    # A Python-based backend's default env counts when the model names none.
    other = write_model(repo, "n", "python_3_10")
    assert "carries Python 3.8" in (run.env_mismatch(other, backend_tree) or "")


def sf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stubforge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_list_cli_text_and_json(backend_tree: Path) -> None:
    text = sf("list", "--backends", str(backend_tree))
    assert text.returncode == 0
    assert "python_3_10" in text.stdout and "problem: default env" in text.stdout
    data = json.loads(sf("list", "--backends", str(backend_tree), "--json").stdout)
    assert {b["name"] for b in data} == {"python", "python_3_9", "python_3_10"}
    missing = sf("list", "--backends", str(backend_tree / "nope"))
    assert missing.returncode == 2 and "nope: not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pytriton", "--tritonserver", "/x"], "exactly one of --tritonserver PATH and --pytriton"),
        ([], "exactly one of --tritonserver PATH and --pytriton"),
        (["--tritonserver", "/nonexistent/bin/tritonserver"], "no such file"),
    ],
)
def test_verify_refuses_unclear_server(tmp_path: Path, args: list[str], message: str) -> None:
    write_model(tmp_path / "repo", "m", "python")
    proc = sf("verify", str(tmp_path / "repo"), *args)
    assert proc.returncode == 2 and message in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def _fake_server_root(tmp_path: Path, script: str) -> Path:
    """A tritonserver install whose binary cannot serve: the start-up failure path, not a fake server."""
    root = tmp_path / "tritonserver"
    (root / "bin").mkdir(parents=True)
    (root / "backends" / "python").mkdir(parents=True)
    binary = root / "bin" / "tritonserver"
    binary.write_text(script)
    binary.chmod(0o755)
    return root


def test_verify_names_repository_problems(tmp_path: Path) -> None:
    root = _fake_server_root(tmp_path, "#!/bin/sh\nexit 1\n")
    proc = sf("verify", str(tmp_path / "missing"), "--tritonserver", str(root))
    assert proc.returncode == 2 and "no such model repository" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = sf("verify", str(tmp_path / "empty"), "--tritonserver", str(root))
    assert proc.returncode == 2 and "holds no model" in proc.stderr
    write_model(tmp_path / "repo", "m", "python")
    proc = sf("verify", str(tmp_path / "repo"), "--tritonserver", str(root), "--model", "other")
    assert (
        proc.returncode == 2 and "other: not a model of" in proc.stderr and "models there: m" in proc.stderr
    )


def test_server_that_exits_at_start_is_reported_with_its_output(tmp_path: Path) -> None:
    root = _fake_server_root(
        tmp_path, "#!/bin/sh\necho 'error: creating server: Internal - no GPU'\nexit 1\n"
    )
    write_model(tmp_path / "repo", "m", "python")
    env = dict(os.environ, STUBFORGE_CACHE=str(tmp_path / "cache"))
    proc = sf("verify", str(tmp_path / "repo"), "--tritonserver", str(root), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "tritonserver exited with code 1 before it was live" in proc.stderr
    assert "creating server: Internal - no GPU" in proc.stderr  # the server's own words
    assert "Traceback" not in proc.stderr


def test_verify_without_pytriton_says_how_to_get_it(tmp_path: Path) -> None:
    write_model(tmp_path / "repo", "m", "python")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    proc = sf("verify", str(tmp_path / "repo"), "--pytriton", env=env)
    assert proc.returncode == 2 and "no nvidia-pytriton installation" in proc.stderr
    assert "pip install nvidia-pytriton" in proc.stderr


def test_the_precheck_checks_against_the_servers_own_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --backends, verify serves the backends/ beside the server binary; its pre-check looks there too
    instead of asking for the --backends it already has."""
    from stubforge import api
    from stubforge.errors import StubforgeError

    root = _fake_server_root(
        tmp_path, "#!/bin/sh\necho 'error: creating server: Internal - no GPU'\nexit 1\n"
    )
    write_model(tmp_path / "repo", "m", "python")
    seen: list[object] = []
    real_check = api.check

    def spy(repository: Path, **kwargs: object) -> object:
        seen.append(kwargs.get("backends"))
        report = real_check(repository, **kwargs)  # type: ignore[arg-type]
        seen.append([f.message + f.fix for m in report.models for f in m.findings])
        return report

    monkeypatch.setattr(api, "check", spy)
    with pytest.raises(StubforgeError, match="exited with code 1"):
        api.verify(tmp_path / "repo", tritonserver=root)
    assert seen[0] == root / "backends"
    assert not any("pass --backends" in text for text in seen[1])  # type: ignore[union-attr]
