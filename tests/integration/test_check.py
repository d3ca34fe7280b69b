"""stubforge check: one fixture per pitfall, each named with its message; a clean repository passes silently.

Stubs are pyenv interpreter binaries: like a stub they link libpythonX.Y.so.1.0 (NEEDED), which is what check
reads; their RUNPATH is rewritten to a dead path so libpython reachability depends on the env, as for Triton's.
Envs are directory trees or archives with the members check looks at (bin/activate, lib/libpythonX.Y.so.1.0,
numpy's package and dist-info).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from stubforge.core import cache, elf
from stubforge.server import check as checker
from tests.conftest import interpreter

GOOD_CODE = (
    "import numpy as np\nimport triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
    "    def execute(self, requests):\n        return []\n"
)


def stub(dest: Path, minor: str = "3.8", mode: int = 0o755) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath(interpreter(minor).executable), dest)
    elf.shorten_runpath(dest, "/nonexistent")
    os.chmod(dest, mode)
    return dest


def env_tree(
    root: Path, minor: str = "3.8", numpy: str | None = "1.24.4", activate: bool = True, python3: bool = True
) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    if activate:
        (root / "bin" / "activate").write_text("# activate\n")
    if python3:
        (root / "bin" / f"python{minor}").write_bytes(b"")
        (root / "bin" / "python3").symlink_to(f"python{minor}")
    (root / "lib" / f"libpython{minor}.so.1.0").write_bytes(b"")
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    if numpy:
        (site / "numpy").mkdir()
        (site / "numpy" / "__init__.py").write_text("")
        (site / f"numpy-{numpy}.dist-info").mkdir()
        (site / f"numpy-{numpy}.dist-info" / "METADATA").write_text(f"Version: {numpy}\n")
    return root


def archive_of(tree: Path, target: Path, extra: dict[str, str] | None = None) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        tar.add(tree, arcname=".")
        for name, link in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tar.addfile(info, io.BytesIO(b""))
    return target


def model(
    repo: Path,
    name: str = "m",
    *,
    code: str = GOOD_CODE,
    env: str | None = "$$TRITON_MODEL_DIRECTORY/env",
    backend: str = "python",
    extra: str = "",
    with_stub: bool = True,
) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(code)
    param = f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }} }}\n' if env else ""
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "{backend}"\ninput [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }} ]\n'
        + extra
        + param
    )
    if with_stub:
        stub(model_dir / cache.STUB_NAME)
    return model_dir


def findings(target: Path, **options: object) -> dict[str, list[checker.Finding]]:
    report = checker.check(target, **options)  # type: ignore[arg-type]
    found = {m.name: m.findings for m in report.models}
    found["(repository)"] = report.repository
    return found


def only(found: list[checker.Finding], check: str) -> checker.Finding:
    match = [f for f in found if f.check == check]
    assert len(match) == 1, found
    return match[0]


def test_a_clean_repository_has_no_finding(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env")
    report = checker.check(tmp_path / "repo")
    assert report.errors == 0 and report.warnings == 0, report.to_dict()
    assert report.models[0].stub_python == "3.8" and report.models[0].env_python == "3.8"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("class Other:\n    pass\n", "defines no class TritonPythonModel"),
        (
            "class TritonPythonModel:\n    def initialize(self, args):\n        pass\n",
            "has no execute method",
        ),
        ("class TritonPythonModel(:\n", "invalid syntax"),
    ],
)
def test_model_code(tmp_path: Path, code: str, message: str) -> None:
    m = model(tmp_path / "repo", code=code)
    env_tree(m / "env")
    finding = only(findings(tmp_path / "repo")["m"], "model-file")
    assert finding.level == "ERROR" and message in finding.message


def test_heavy_top_level_import_is_a_warning(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", code="import torch\n" + GOOD_CODE)
    env_tree(m / "env")
    finding = only(findings(tmp_path / "repo")["m"], "heavy-import")
    assert finding.level == "WARN" and "torch" in finding.message and "initialize" in finding.fix


def test_config_error_names_the_line(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    (m / "config.pbtxt").write_text(
        'name: "m"\nbackend: "python"\ninput [ { name: "X" data_type: TYPE_FP99 } ]\n'
    )
    finding = only(findings(tmp_path / "repo")["m"], "config")
    assert finding.level == "ERROR" and "line 3" in finding.message


def test_backend_resolution(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    stub(backends / "python" / cache.STUB_NAME)
    (backends / "python_3_9").mkdir()
    (backends / "python_3_9" / "libtriton_python.so").write_bytes(b"")
    model(tmp_path / "repo", "missing", backend="python_3_7", env=None, with_stub=False)
    model(tmp_path / "repo", "renamed", backend="python_3_9", env=None, with_stub=False)
    found = findings(tmp_path / "repo", backends=backends)
    assert (
        "unable to find backend library for backend 'python_3_7'" in only(found["missing"], "backend").message
    )
    assert "No module named 'model'" in only(found["renamed"], "backend").message


def test_stub_and_env_of_different_pythons(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env", minor="3.10")
    finding = only(findings(tmp_path / "repo")["m"], "python-mismatch")
    assert "embeds Python 3.8, the env carries Python 3.10" in finding.message and "--stub" in finding.fix


def test_libpython_nowhere_means_the_r2410_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    model(tmp_path / "repo", env=None)
    finding = only(findings(tmp_path / "repo")["m"], "libpython")
    assert finding.level == "ERROR" and "Triton r24.10 will hang at load" in finding.message


def test_libpython_nowhere_under_2508_claims_no_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--triton 25.08: the same repository, the release's own behaviour (it gives up on a dead stub)."""
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    model(tmp_path / "repo", env=None)
    finding = only(findings(tmp_path / "repo", triton="25.08")["m"], "libpython")
    assert finding.level == "ERROR" and "Triton r25.08 will fail the load" in finding.message
    assert "hang" not in finding.message and "r24.10" not in finding.message


def test_mismatched_env_under_2508_claims_no_hang(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env", minor="3.10")
    finding = only(findings(tmp_path / "repo", triton="25.08")["m"], "python-mismatch")
    assert "Triton r25.08 will fail the load" in finding.message and "hang" not in finding.message


@pytest.mark.parametrize(
    ("numpy", "check", "text"),
    [(None, "numpy", "No module named 'numpy'"), ("2.0.2", "numpy2", "pybind11 2.10.0")],
)
def test_numpy(tmp_path: Path, numpy: str | None, check: str, text: str) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env", numpy=numpy)
    finding = only(findings(tmp_path / "repo")["m"], check)
    assert finding.level == "ERROR" and text in finding.message


def test_numpy2_is_fine_for_a_release_with_pybind11_212(tmp_path: Path) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env", numpy="2.0.2")
    assert not [f for f in findings(tmp_path / "repo", triton="24.11")["m"] if f.check == "numpy2"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("$$TRITON_MODEL_DIRECTORY/../../env", "climbs out of the repository"),
        ("/opt/$$TRITON_MODEL_DIRECTORY/env", "only as a leading prefix"),
        ("$$TRITON_MODEL_DIRECTORY/env.zip", "zip"),
        ("$$TRITON_MODEL_DIRECTORY/nope.tar.gz", "does not exist"),
    ],
)
def test_execution_env_path_rules(tmp_path: Path, value: str, text: str) -> None:
    m = model(tmp_path / "repo", env=value)
    env_tree(tmp_path / "repo" / "env")
    (m / "env.zip").write_bytes(b"PK")
    finding = only(findings(tmp_path / "repo")["m"], "env-path")
    assert finding.level == "ERROR" and text in finding.message.lower() + finding.fix.lower(), finding


def test_archive_without_activate_with_hooks_and_unsafe_links(tmp_path: Path) -> None:
    tree = env_tree(tmp_path / "tree", activate=False)
    (tree / "etc" / "conda" / "activate.d").mkdir(parents=True)
    (tree / "etc" / "conda" / "activate.d" / "cuda.sh").write_text("export X=1\n")
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    archive_of(tree, m / "env.tar.gz", {"lib/escape": "../../../../etc"})
    found = findings(tmp_path / "repo")["m"]
    assert "bin/activate does not exist" in only(found, "env-activate").message
    assert only(found, "env-hooks").level == "WARN"
    assert "points outside the env" in only(found, "env-archive").message


def test_old_libstdcxx_in_the_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = model(tmp_path / "repo")
    env = env_tree(m / "env")
    system = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
    shutil.copyfile(system.resolve(), env / "lib" / "libstdc++.so.6")
    provided = elf.defined_versions(system, "GLIBCXX")
    assert provided
    # The stand-in stub needs no libstdc++; a stub built by a newer compiler needs a newer GLIBCXX than the
    # env's copy: that requirement is the one value stubbed here.
    real_read = elf.read

    def newer_need(path: Path) -> elf.ElfInfo:
        info = real_read(path)
        return elf.ElfInfo(info.machine, info.needed, info.runpath, info.rpath, {"GLIBCXX": "GLIBCXX_3.4.99"})

    monkeypatch.setattr(elf, "read", newer_need)
    finding = only(findings(tmp_path / "repo")["m"], "glibcxx")
    assert f"provides up to {provided}, the stub needs GLIBCXX_3.4.99" in finding.message


def test_env_without_bin_python3(tmp_path: Path) -> None:
    """The stub takes its prefix from the first python3 on PATH: without <env>/bin/python3 that is not the env's."""
    m = model(tmp_path / "repo")
    env_tree(m / "env", python3=False)
    found = only(findings(tmp_path / "repo")["m"], "env-python3")
    assert found.level == "ERROR"
    assert f"{m / 'env'} has no bin/python3" in found.message and "first python3" in found.message
    assert "stubforge pack-env" in found.fix
    # The same for an archive, read from its member list.
    archived = model(tmp_path / "repo2", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    archive_of(env_tree(tmp_path / "tree", python3=False), archived / "env.tar.gz")
    assert only(findings(tmp_path / "repo2")["m"], "env-python3").level == "ERROR"


@pytest.mark.parametrize(
    ("mode", "level", "text"), [(0o100, "WARN", "mode 0100"), (0o644, "ERROR", "not executable")]
)
def test_stub_mode(tmp_path: Path, mode: int, level: str, text: str) -> None:
    m = model(tmp_path / "repo")
    env_tree(m / "env")
    os.chmod(m / cache.STUB_NAME, mode)
    finding = only(findings(tmp_path / "repo")["m"], "stub-mode")
    assert finding.level == level and text in finding.message


def test_shell_characters_in_paths(tmp_path: Path) -> None:
    m = model(tmp_path / "my repo")
    env_tree(m / "env")
    assert "' '" in only(findings(tmp_path / "my repo")["m"], "path-chars").message


def test_a_semicolon_in_a_directory_env_is_an_error_naming_the_release(tmp_path: Path) -> None:
    """issue 12 item 6: r24.10's bash launcher ends the command at ';', and the dynamic loader splits
    LD_LIBRARY_PATH there, so <env>/lib (the env's libpython) is never searched: the model cannot load."""
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env;v2")
    env_tree(m / "env;v2")
    found = only(findings(tmp_path / "repo")["m"], "path-chars")
    assert found.level == "ERROR"
    assert f"{m / 'env;v2'} contains ';'" in found.message
    assert "Triton r24.10 starts the stub through an unquoted bash" in found.message
    assert "LD_LIBRARY_PATH" in found.message and "will not load" in found.message
    # From r25.08 no shell, but the name is refused, and the loader still splits the path.
    newer = only(findings(tmp_path / "repo", triton="25.08")["m"], "path-chars")
    assert newer.level == "ERROR" and "Triton r25.08 rejects names containing it" in newer.message
    assert "r24.10" not in newer.message


def test_a_colon_in_a_directory_env_breaks_ld_library_path_on_every_release(tmp_path: Path) -> None:
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env:v2")
    env_tree(m / "env:v2")
    for triton in ("24.10", "25.08"):
        found = only(findings(tmp_path / "repo", triton=triton)["m"], "path-chars")
        assert found.level == "ERROR", triton
        assert "':'" in found.message and f"Triton r{triton} puts" in found.message
        assert "LD_LIBRARY_PATH" in found.message


def test_characters_bash_keeps_as_written_stay_a_warning(tmp_path: Path) -> None:
    """A glob character mid-path is kept by r24.10's bash unless it matches a file; r25.08 refuses the name."""
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env*1")
    env_tree(m / "env*1")
    assert only(findings(tmp_path / "repo")["m"], "path-chars").level == "WARN"
    assert only(findings(tmp_path / "repo", triton="25.08")["m"], "path-chars").level == "ERROR"


def test_an_archive_env_path_is_not_seen_by_the_launcher(tmp_path: Path) -> None:
    """Triton extracts an archive to /tmp/python_env_* and launches from there: its own name stays a warning."""
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env;v2.tar.gz")
    archive_of(env_tree(tmp_path / "tree"), m / "env;v2.tar.gz")
    found = only(findings(tmp_path / "repo")["m"], "path-chars")
    assert found.level == "WARN" and "env;v2.tar.gz contains ';'" in found.message


def test_the_worst_path_is_reported(tmp_path: Path) -> None:
    """One path-chars finding per model: an ERROR on the env wins over a WARN on the model directory."""
    m = model(tmp_path / "re*po", env="$$TRITON_MODEL_DIRECTORY/env;v2")
    env_tree(m / "env;v2")
    found = only(findings(tmp_path / "re*po")["m"], "path-chars")
    assert found.level == "ERROR" and "env;v2 contains" in found.message


def test_repository_wide_parallel_tarballs_and_shm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name, backend in (("a", "python"), ("b", "python_3_8")):
        m = model(
            repo,
            name,
            backend=backend,
            env="$$TRITON_MODEL_DIRECTORY/env.tar.gz",
            extra='output [ { name: "Y" data_type: TYPE_FP32 dims: [ 100000, 100000 ] } ]\n',
        )
        archive_of(env_tree(tmp_path / f"tree-{name}"), m / "env.tar.gz")
    found = findings(repo)["(repository)"]
    assert "--model-load-thread-count=1" in only(found, "parallel-envs").fix
    assert "Unable to initialize shared memory key" in only(found, "shm").message


def test_env_less_model_and_the_path_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = model(tmp_path / "repo", env=None)
    py38 = interpreter("3.8")
    assert py38.libpython
    monkeypatch.setenv("LD_LIBRARY_PATH", os.path.dirname(py38.libpython))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(py38.executable)  # pyenv's 3.8 has no numpy
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    home = tmp_path / "home"
    (home / ".local" / "lib" / "python3.8" / "site-packages" / "leak").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PYTHONNOUSERSITE", raising=False)
    found = findings(m)["m"]
    assert "which has none" in only(found, "path-python").message
    assert "PYTHONNOUSERSITE=1" in only(found, "user-site").fix


def test_cli_text_json_and_exit_status(tmp_path: Path) -> None:
    good = model(tmp_path / "good")
    env_tree(good / "env")
    bad = model(tmp_path / "bad")
    env_tree(bad / "env", minor="3.10")
    run = [sys.executable, "-m", "stubforge", "check"]
    ok = subprocess.run([*run, str(tmp_path / "good")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "0 error(s), 0 warning(s)" in ok.stdout
    failed = subprocess.run(
        [*run, str(tmp_path / "bad"), "--json"], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["errors"] == 1 and report["models"][0]["findings"][0]["check"] == "python-mismatch"
    missing = subprocess.run([*run, str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert (
        missing.returncode == 2
        and "no such directory" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_truncated_archive_is_named_not_aborted(tmp_path: Path) -> None:
    tree = env_tree(tmp_path / "tree")
    m = model(tmp_path / "repo", env="$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    data = archive_of(tree, tmp_path / "full.tar.gz").read_bytes()
    (m / "env.tar.gz").write_bytes(data[: len(data) // 2])
    finding = only(findings(tmp_path / "repo")["m"], "env")
    assert finding.level == "ERROR" and "archive_read_open_filename() failed" in finding.message
