"""pack-env with real interpreters, real pip and real numpy wheels; envs run the way Triton starts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from stubforge.core import pythons, targets
from stubforge.envs import create, inspect, pack, packenv
from stubforge.envs.create import EnvError
from stubforge.errors import StubforgeError
from stubforge.triton import member_index

pytestmark = pytest.mark.slow


def _run_in_env(env_dir: Path, bash_activate: bool) -> dict[str, object]:
    return inspect.run_probe(env_dir, ["numpy"], activate_with_bash=bash_activate)


def _assert_self_contained(env_dir: Path, base: pythons.Interpreter, data: dict[str, object]) -> None:
    assert os.path.realpath(str(data["prefix"])) == os.path.realpath(env_dir)
    imports = data["imports"]
    assert isinstance(imports, dict) and not str(imports["numpy"]).startswith("ERROR")
    base_prefix = os.path.realpath(base.base_prefix)
    paths = [p for p in data["path"] if p]  # type: ignore[union-attr]
    assert paths and not [p for p in paths if os.path.realpath(p).startswith(base_prefix)]
    maps = data["maps"]
    assert isinstance(maps, list)
    assert any(m.endswith(f"lib/{Path(base.libpython or '').name}") for m in maps)
    assert not [m for m in maps if m.startswith(base_prefix)], (
        "a file of the build machine's Python was loaded"
    )


def test_py38_archive_works_after_extraction_both_launcher_styles(
    cache_root: Path, tmp_path: Path, py38: pythons.Interpreter
) -> None:
    out = tmp_path / "model" / "env38.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(python="3.8", output=out))
    assert result.kind == "archive" and out.is_file()
    manifest = json.loads(out.with_name(out.name + packenv.MANIFEST_SUFFIX).read_text())
    assert manifest["python"] == py38.version
    assert manifest["numpy"].startswith("1.")  # r24.10 stubs: numpy<2 added automatically
    assert manifest["sha256"] and manifest["size"] == out.stat().st_size
    assert manifest["target"] == targets.host_target().to_dict()
    with tarfile.open(out) as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert "bin/activate" in names and "bin/python3" in names and "lib/libpython3.8.so.1.0" in names
    assert all(m.mtime == pack.FIXED_MTIME and m.uid == 0 and m.uname == "" for m in members)

    # pack-env kept the member list it wrote: the first look at the archive lists nothing, and finds what a
    # reader finds.
    def fields(m: tarfile.TarInfo) -> tuple[object, ...]:
        return (m.name, m.type, m.size, m.mode, m.linkname, m.mtime, m.offset, m.offset_data)

    def unlisted() -> list[tarfile.TarInfo]:
        raise AssertionError("the archive was listed")

    assert [fields(m) for m in member_index.members_of(out, unlisted)] == [fields(m) for m in members]
    # Extract elsewhere, as Triton does into /tmp/python_env_XXXXXX/N.
    extracted = tmp_path / "python_env_test" / "0"
    extracted.mkdir(parents=True)
    with tarfile.open(out) as tar:
        tar.extractall(extracted)
    for bash_activate in (True, False):  # r24.10 sources activate; r25.08+ only sets variables
        data = _run_in_env(extracted, bash_activate)
        assert data["version"] == py38.version
        _assert_self_contained(extracted, py38, data)


def test_py310_directory_env(cache_root: Path, tmp_path: Path, py310: pythons.Interpreter) -> None:
    target = tmp_path / "out" / "env310"
    result = packenv.pack_env(packenv.PackOptions(python="3.10", directory=target, prune=True))
    assert result.kind == "directory" and (target / packenv.DIR_MANIFEST).is_file()
    assert result.manifest["pruned_bytes"] > 0
    assert not [p for p in target.rglob("tests") if p.is_dir()] and not list(target.rglob("*.h"))
    # A directory env keeps pip's bytecode: it spares the stub's first import of numpy a compile.
    assert list(target.glob("lib/python3.10/site-packages/numpy/__pycache__/*.pyc"))
    for bash_activate in (True, False):
        data = _run_in_env(target, bash_activate)
        assert data["version"] == py310.version
        _assert_self_contained(target, py310, data)
    # No leftovers beside the output.
    assert sorted(p.name for p in target.parent.iterdir()) == ["env310"]


def test_archives_are_reproducible(tmp_path: Path, py38: pythons.Interpreter) -> None:
    env = tmp_path / "env"
    env.mkdir()
    create.copy_interpreter(py38, env)
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    pack.write_archive(env, first)
    os.utime(env / "bin" / "activate", (1, 1))  # mtimes and owners on disk must not matter
    pack.write_archive(env, second)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("name", ["env.tar.xz", "env.tar.bz2", "env.zip", "env.tar.zst", "env"])
def test_unsupported_archive_names(cache_root: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StubforgeError) as info:
        packenv.pack_env(packenv.PackOptions(python="3.8", output=out / name))
    assert ".tar.gz" in info.value.hint
    assert list(out.iterdir()) == []


def test_existing_output_needs_force(cache_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.tar.gz"
    out.write_bytes(b"keep me")
    with pytest.raises(EnvError, match="already exists"):
        packenv.pack_env(packenv.PackOptions(python="3.8", output=out))
    assert out.read_bytes() == b"keep me"


def test_stub_of_another_python_is_refused(
    cache_root: Path, tmp_path: Path, py310: pythons.Interpreter
) -> None:
    # A real ELF that links libpython3.10, standing in for a 3.10 stub.
    with pytest.raises(EnvError, match=r"links libpython3\.10\.so\.1\.0, but the env would be Python 3\.8"):
        packenv.pack_env(
            packenv.PackOptions(python="3.8", output=tmp_path / "e.tar.gz", stub=Path(py310.real_path))
        )


def test_numpy2_with_an_r2410_stub_is_an_error(cache_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EnvError) as info:
        packenv.pack_env(
            packenv.PackOptions(python="3.10", output=out / "e.tar.gz", requirements=["numpy>=2"])
        )
    assert "numpy 2" in info.value.message and "pybind11 2.10.0" in info.value.message
    assert "numpy<2" in info.value.hint
    assert list(out.iterdir()) == []


def test_missing_requirements_file(cache_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="no such requirements file"):
        packenv.pack_env(
            packenv.PackOptions(
                python="3.8", output=tmp_path / "e.tar.gz", requirement_files=[tmp_path / "r.txt"]
            )
        )


def test_interrupted_pack_leaves_nothing(cache_root: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stubforge", "pack-env", "--python", "3.8", "-o", str(out_dir / "e.tar.gz")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, STUBFORGE_CACHE=str(cache_root)),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "] pip install" in line:  # a progress line: [pack-env  0.4s] pip install ...
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert list(out_dir.iterdir()) == []


CONFIG = """name: "add_sub"
backend: "python"
# EXECUTION_ENV_PATH is set by stubforge below
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def test_pack_env_into_model_writes_the_parameter(cache_root: Path, tmp_path: Path) -> None:
    model = tmp_path / "add_sub"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    result = packenv.pack_env(packenv.PackOptions(python="3.8", model_dir=model))
    assert result.path == model / "env.tar.gz" and result.path.is_file()
    text = (model / "config.pbtxt").read_text()
    assert text.startswith(CONFIG)  # everything before is untouched, byte for byte
    assert 'string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz"' in text
    assert (model / "config.pbtxt.bak").read_text() == CONFIG
    # Packing again replaces the value, never duplicates it.
    packenv.pack_env(packenv.PackOptions(python="3.8", model_dir=model, directory=model / "env", force=True))
    again = (model / "config.pbtxt").read_text()
    assert again.count("EXECUTION_ENV_PATH") == 2  # the comment and one parameter
    assert 'string_value: "$$TRITON_MODEL_DIRECTORY/env"' in again


def test_env_outside_the_model_is_refused_before_packing(cache_root: Path, tmp_path: Path) -> None:
    model = tmp_path / "repo" / "m"  # tmp_path/elsewhere.tar.gz is outside its repository too
    model.mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stubforge",
            "pack-env",
            "--python",
            "3.8",
            "--model",
            str(model),
            "-o",
            str(tmp_path / "elsewhere.tar.gz"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, STUBFORGE_CACHE=str(cache_root)),
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "elsewhere.tar.gz").exists()
    assert (model / "config.pbtxt").read_text() == CONFIG


def test_param_prints_and_writes(tmp_path: Path, cache_root: Path) -> None:
    model = tmp_path / "m"
    env = model / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text("")
    (model / "config.pbtxt").write_text(CONFIG)
    run = [sys.executable, "-m", "stubforge", "param", str(model), str(env)]
    environ = dict(os.environ, STUBFORGE_CACHE=str(cache_root))
    printed = subprocess.run(run, capture_output=True, text=True, env=environ, timeout=120, check=True)
    assert 'key: "EXECUTION_ENV_PATH"' in printed.stdout and "$$TRITON_MODEL_DIRECTORY/env" in printed.stdout
    assert (model / "config.pbtxt").read_text() == CONFIG  # printing changes nothing
    subprocess.run([*run, "--write"], capture_output=True, text=True, env=environ, timeout=120, check=True)
    assert "$$TRITON_MODEL_DIRECTORY/env" in (model / "config.pbtxt").read_text()
    bad = subprocess.run(
        [*run[:-1], str(tmp_path / "x.tar.xz")], capture_output=True, text=True, env=environ, timeout=120
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_venv_is_made_self_contained(cache_root: Path, tmp_path: Path, py310: pythons.Interpreter) -> None:
    venv = tmp_path / "venv"
    subprocess.run([py310.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "numpy<2", "six"],
        check=True,
        timeout=900,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    out = tmp_path / "out" / "v.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(venv=venv, output=out))
    assert result.manifest["source"]["kind"] == "venv"
    assert "six" in result.manifest["packages"]
    extracted = tmp_path / "x"
    extracted.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(extracted)
    import shutil

    shutil.rmtree(venv)  # the env must not need the venv any more
    data = inspect.run_probe(extracted, ["numpy", "six"])
    _assert_self_contained(extracted, py310, data)


def test_not_a_venv(cache_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="is not a virtual environment"):
        packenv.pack_env(packenv.PackOptions(venv=tmp_path, output=tmp_path / "o" / "e.tar.gz"))


def test_old_libstdcxx_in_the_env_is_a_warning(tmp_path: Path, py38: pythons.Interpreter) -> None:
    env = tmp_path / "env"
    env.mkdir()
    create.copy_interpreter(py38, env)
    create.pip_install(env, py38, ["numpy<2"], [], [], tmp_path / "pip.log")
    system = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
    if not system.exists():
        system = next(Path("/usr/lib").rglob("libstdc++.so.6"))
    (env / "lib" / "libstdc++.so.6").write_bytes(
        system.read_bytes()
    )  # shadows the system's, as in conda envs
    provided = inspect._env_glibcxx(env)
    assert provided and provided.startswith("GLIBCXX_3.4.")
    needs = "GLIBCXX_3.4.999"  # a stub built by a newer compiler than this libstdc++
    report = inspect.validate(
        env, expected_python=py38.version, requirements=[], numpy2_ok=False, stub_glibcxx=needs
    )
    assert any("GLIBCXX" in w and "libstdcxx-ng" in w for w in report.warnings)
    ok = inspect.validate(
        env, expected_python=py38.version, requirements=[], numpy2_ok=False, stub_glibcxx=provided
    )
    assert ok.warnings == []


def test_python_comes_from_the_stub(
    cache_root: Path, imported: Path, tmp_path: Path, py310: pythons.Interpreter
) -> None:
    from stubforge.stubs import build as stub_mod

    built = stub_mod.build_one(py310, stub_mod.BuildOptions(pybind11="2.12.0"))
    result = packenv.pack_env(packenv.PackOptions(stub=built.stub, directory=tmp_path / "out" / "env"))
    assert result.manifest["python"] == py310.version
    # The stub's manifest says pybind11 2.12.0, so numpy 2 is allowed and the newest numpy is chosen.
    assert result.manifest["numpy"].split(".")[0] == "2"


def test_cli_requirements_file_into_model(
    cache_root: Path, tmp_path: Path, py38: pythons.Interpreter
) -> None:
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    req = tmp_path / "requirements.txt"
    req.write_text("# model deps\nsix==1.16.0\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stubforge",
            "pack-env",
            "--python",
            "3.8",
            "-r",
            str(req),
            "--model",
            str(model),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, STUBFORGE_CACHE=str(cache_root)),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["manifest"]["packages"]["six"] == "1.16.0"
    assert result["config"]["value"] == "$$TRITON_MODEL_DIRECTORY/env.tar.gz"
    extracted = tmp_path / "x"
    extracted.mkdir()
    with tarfile.open(model / "env.tar.gz") as tar:
        tar.extractall(extracted)
    data = inspect.run_probe(extracted, ["numpy", "six"], activate_with_bash=True)
    _assert_self_contained(extracted, py38, data)


def test_pip_envs_are_reproducible_and_scripts_relocate(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from a directory that looks like a package source tree and with a user site-packages present:
    # neither may leak into what is validated or recorded.
    workdir = tmp_path / "cwd"
    (workdir / "intruder-1.0.dist-info").mkdir(parents=True)
    (workdir / "intruder-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: intruder\nVersion: 1.0\n"
    )
    home = tmp_path / "home"
    (home / ".local" / "lib" / "python3.8" / "site-packages").mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(home))
    # Relative output paths, as users type them.
    first, second = Path("a") / "env.tar.gz", Path("b") / "env.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(python="3.8", output=first))
    packenv.pack_env(packenv.PackOptions(python="3.8", output=second))
    assert first.read_bytes() == second.read_bytes()
    assert "intruder" not in result.manifest["packages"]
    with tarfile.open(first) as tar:
        pycs = [m for m in tar.getmembers() if m.name.endswith(".pyc")]
        tar.extractall(tmp_path / "x")
    # The bytecode of what the validating launch imported, hash-checked (PEP 552 flags 0b11), nothing else.
    names = {m.name for m in pycs}
    assert "lib/python3.8/site-packages/numpy/__pycache__/__init__.cpython-38.pyc" in names
    assert "lib/python3.8/json/__pycache__/__init__.cpython-38.pyc" in names
    assert not [n for n in names if "/tests/" in n or "f2py" in n]  # never imported
    assert len(names) == result.manifest["bytecode_modules"]
    for member in pycs:
        assert member.mtime == pack.FIXED_MTIME and member.mode == 0o644
        assert (tmp_path / "x" / member.name).read_bytes()[4:8] == b"\x03\x00\x00\x00"
    # The extracted env imports numpy from that bytecode: no module of the env is compiled.
    verbose = subprocess.run(
        [str(tmp_path / "x" / "bin" / "python3"), "-v", "-c", "import numpy"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    ).stderr
    loaded = [line for line in verbose.splitlines() if line.startswith("# code object from")]
    assert loaded and not [line for line in loaded if not line.rstrip("'").endswith(".pyc")], loaded
    f2py = tmp_path / "x" / "bin" / "f2py"
    assert f2py.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    proc = subprocess.run(
        ["bash", "-c", f'source "{tmp_path}/x/bin/activate" && f2py -v'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip().startswith("1."), proc.stderr


def test_uncreatable_output_dir_is_a_clear_error(cache_root: Path) -> None:
    with pytest.raises(EnvError, match="cannot create the output directory"):
        packenv.pack_env(packenv.PackOptions(python="3.8", output=Path("/proc/sys/stubforge/env.tar.gz")))


def test_venv_with_editable_install_is_refused(
    cache_root: Path, tmp_path: Path, py310: pythons.Interpreter
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([py310.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    dist = venv / "lib" / "python3.10" / "site-packages" / "mypkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/mypkg", "dir_info": {"editable": True}})
    )
    with pytest.raises(EnvError) as info:
        packenv.pack_env(packenv.PackOptions(venv=venv, output=tmp_path / "o" / "e.tar.gz"))
    assert "editable installs (mypkg)" in info.value.message
    assert "pip install ." in info.value.hint


def test_full_version_with_a_spec(cache_root: Path, tmp_path: Path, py38: pythons.Interpreter) -> None:
    spec = Path(__file__).resolve().parents[2] / "envs" / "py38-numpy.toml"
    result = packenv.pack_env(packenv.PackOptions(spec=spec, python=py38.version, directory=tmp_path / "e"))
    assert result.manifest["python"] == py38.version


def test_installed_but_unimportable_package_is_an_error(cache_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "brokenpkg"
    (src / "brokenpkg").mkdir(parents=True)
    (src / "brokenpkg" / "__init__.py").write_text(
        "raise ImportError('libfoo.so.1: cannot open shared object file')\n"
    )
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=40.8"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "brokenpkg"\nversion = "0.1"\n'
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EnvError) as info:
        packenv.pack_env(
            packenv.PackOptions(
                python="3.10", requirements=[f"brokenpkg @ file://{src}"], output=out / "e.tar.gz"
            )
        )
    assert "do not import in the env: brokenpkg: ImportError: libfoo.so.1" in info.value.message
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("version", ["3.6", "3.7"])
def test_pythons_without_importlib_metadata_pack_too(cache_root: Path, tmp_path: Path, version: str) -> None:
    # Before 3.8 the validating launch reads the .dist-info directories itself: such envs have no
    # importlib.metadata, and pip no longer puts setuptools (pkg_resources) into a new env.
    if not [i for i in pythons.discover() if i.minor == version and i.buildable]:
        pytest.skip(f"no Python {version} with a shared libpython here (the suite itself needs 3.8 and 3.10)")
    out = tmp_path / "env.tar.gz"
    result = packenv.pack_env(packenv.PackOptions(python=version, output=out))
    assert result.manifest["python"].startswith(version + ".")
    assert list(result.manifest["packages"]) == ["numpy"] and result.manifest["numpy"].startswith("1.")
    # Hash-based .pyc exist from 3.7 on; 3.6 archives carry none.
    assert (result.manifest["bytecode_modules"] > 100) == (version == "3.7")
