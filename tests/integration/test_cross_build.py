"""Cross builds for aarch64 on this machine: a sysroot made by `sysroot create` from Debian's arm64 packages,
the fixture project's stub and the runner's stub built with the cross compiler, verified and probed under qemu;
install and check refuse a stub of another architecture than the server's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stubforge.core import cache, debian_sysroot, elf, emulation, targets
from stubforge.core.targets import Target
from stubforge.errors import BuildError
from stubforge.server import install
from stubforge.server.check import check
from stubforge.stubs import build as stub
from stubforge.stubs import probe, runner_stub
from tests.unit.test_sysroot import make_rootfs

pytestmark = pytest.mark.slow

NINE_ARGS = [str(i) for i in range(1, 10)]
CONFIG = """name: "{name}"
backend: "python"
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
"""


def _stubforge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stubforge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _run_emulated(stub_path: Path, sysroot: Path, *args: str) -> subprocess.CompletedProcess[str]:
    how = emulation.emulation_for("aarch64")
    assert how is not None, emulation.unavailable_reason("aarch64")
    env = how.environment(dict(os.environ), sysroot)
    return subprocess.run(
        how.command([str(stub_path), *args]), capture_output=True, text=True, env=env, timeout=120
    )


def _model(repo: Path, name: str) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
    )
    (model / "config.pbtxt").write_text(CONFIG.format(name=name))
    return model


def test_sysroot_create_is_offline_the_second_time(aarch64_sysroot: Path, tmp_path: Path) -> None:
    record = json.loads((aarch64_sysroot / debian_sysroot.RECORD_NAME).read_text())
    assert record["arch"] == "aarch64" and record["python"] == "3.11"
    # The session's debs are reused: a second sysroot of the same request needs neither apt nor the network.
    session_cache = aarch64_sysroot.parent / "cache"
    env = {**os.environ, "STUBFORGE_CACHE": str(session_cache), "http_proxy": "http://127.0.0.1:9"}
    proc = _stubforge("sysroot", "create", str(tmp_path / "again"), "--python", "3.11", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert made["downloaded"] is False and made["debs"] == record["debs"]
    shown = json.loads(_stubforge("sysroot", "show", str(tmp_path / "again"), "--json").stdout)
    assert shown["arch"] == "aarch64" and shown["libc"]
    (py,) = shown["pythons"]
    assert py["minor"] == "3.11" and py["buildable"] and py["libpython"].endswith("libpython3.11.so.1.0")
    # No absolute link points out of the tree (at the host's /usr/lib).
    for link in (tmp_path / "again").rglob("*"):
        if link.is_symlink():
            assert not os.readlink(link).startswith("/"), link


def test_sysroot_create_offers_only_the_debian_release_pythons(tmp_path: Path, cache_root: Path) -> None:
    proc = _stubforge("sysroot", "create", str(tmp_path / "sr"), "--python", "3.12")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "python3.12" in proc.stderr and "it offers Python 3.11" in proc.stderr
    assert "copy a board's rootfs" in proc.stderr
    assert not (tmp_path / "sr").exists()


def test_fixture_stub_cross_builds_and_answers_under_emulation(imported: Path, aarch64_sysroot: Path) -> None:
    target = Target.parse("aarch64", aarch64_sysroot)
    result = stub.build_one("3.11", stub.BuildOptions(triton="24.10", target=target))
    info = elf.read(result.stub)
    assert info.machine == "EM_AARCH64" and "libpython3.11.so.1.0" in info.needed
    assert info.runpath == [] and info.rpath == []  # nothing points into the build machine's sysroot
    manifest = json.loads((result.stub.parent / cache.MANIFEST_NAME).read_text())
    assert manifest["arch"] == "aarch64" and manifest["build_host"] == targets.host_target().arch
    assert manifest["target"] == {"arch": "aarch64", "sysroot": str(aarch64_sysroot), "libc": target.libc}
    assert manifest["python"]["version"].startswith("3.11.")
    assert manifest["probe"]["exit"] == 1 and manifest["probe"]["emulation"] in ("binfmt", "qemu")
    assert set(manifest["cross"]["floors_checked"]) >= {"GLIBC"}
    assert manifest["cross"]["cxx"].endswith("aarch64-linux-gnu-g++")
    assert "aarch64" in result.key and "sysroot_" in result.key
    # The stub really embeds the sysroot's Python 3.11 when started as Triton starts it (nine arguments).
    proc = _run_emulated(result.stub, aarch64_sysroot, *NINE_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert f"python={manifest['python']['version']}" in proc.stdout and "boost=1_79" in proc.stdout
    assert stub.build_one("3.11", stub.BuildOptions(triton="24.10", target=target)).cache_hit


def test_runner_stub_cross_builds_and_probes(cache_root: Path, aarch64_sysroot: Path) -> None:
    target = Target.parse("aarch64", aarch64_sysroot)
    result = runner_stub.build_runner_stub("3.11", target=target)
    assert elf.read(result.stub).machine == "EM_AARCH64"
    assert result.manifest["target"]["arch"] == "aarch64" and result.manifest["probe"]["exit"] == 1
    assert sorted(p.name for p in result.stub.parent.iterdir()) == [cache.MANIFEST_NAME, cache.STUB_NAME]
    assert "sysroot_" in result.key


def test_without_emulation_the_probe_is_skipped_and_said(
    cache_root: Path, aarch64_sysroot: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(probe, "emulation_for", lambda arch: None)
    monkeypatch.setenv("STUBFORGE_BINFMT_DIR", str(tmp_path / "no-binfmt"))  # and say why: nothing mounted
    result = runner_stub.build_runner_stub("3.11", target=Target.parse("aarch64", aarch64_sysroot))
    skipped = result.manifest["probe"]["skipped"]
    assert "qemu-user-static binfmt-support" in skipped and "aarch64" in skipped
    assert elf.read(result.stub).machine == "EM_AARCH64"  # the static checks still ran


def test_no_cross_compiler_names_the_package(imported: Path, aarch64_sysroot: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**os.environ, "PATH": str(bare)}
    proc = _stubforge(
        "build", "--python", "3.11", "--triton", "24.10", "--arch", "aarch64", "--sysroot", str(aarch64_sysroot),
        env=env,
    )  # fmt: skip
    assert proc.returncode == BuildError.exit_code and "Traceback" not in proc.stderr
    assert "aarch64-linux-gnu-g++ is not on PATH" in proc.stderr
    assert "apt-get install g++-aarch64-linux-gnu" in proc.stderr
    assert not list((Path(os.environ["STUBFORGE_CACHE"]) / "stubs").glob("*aarch64*"))


def test_sysroot_without_libpython_names_dir_and_what_was_looked_for(imported: Path, tmp_path: Path) -> None:
    board = make_rootfs(tmp_path / "board", "3.10")
    proc = _stubforge("build", "--python", "3.11", "--arch", "aarch64", "--sysroot", str(board))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(board) in proc.stderr and "libpython3.11.so*" in proc.stderr
    assert "usr/lib/aarch64-linux-gnu" in proc.stderr and "Pythons it can embed: 3.10" in proc.stderr


def test_install_refuses_and_check_flags_a_stub_of_another_arch(
    cache_root: Path, aarch64_sysroot: Path, py310: object, tmp_path: Path
) -> None:
    arm = runner_stub.build_runner_stub("3.11", target=Target.parse("aarch64", aarch64_sysroot)).stub
    host = runner_stub.build_runner_stub(py310).stub  # type: ignore[arg-type]
    host_arch = targets.host_target().arch
    repo = tmp_path / "repo"
    model = _model(repo, "m")

    # An aarch64 stub in this machine's server: refused, naming both.
    with pytest.raises(install.InstallError) as info:
        install.install_model_stub(model, python=None, stub=arm)
    assert "aarch64" in info.value.message and host_arch in info.value.message
    assert not (model / cache.STUB_NAME).exists()
    # The reverse: this machine's stub for an aarch64 server.
    with pytest.raises(install.InstallError) as info:
        install.install_model_stub(model, python=None, stub=host, target=Target("aarch64"))
    assert "aarch64" in info.value.message and host_arch in info.value.message

    # Put there by hand, check flags both, against this machine and against --arch aarch64.
    shutil.copyfile(arm, model / cache.STUB_NAME)
    os.chmod(model / cache.STUB_NAME, 0o755)
    found = [f for f in check(repo).models[0].findings if f.check == "arch"]
    assert len(found) == 1 and "is for aarch64" in found[0].message and host_arch in found[0].message
    assert not [f for f in check(repo, target=Target("aarch64")).models[0].findings if f.check == "arch"]
    shutil.copyfile(host, model / cache.STUB_NAME)
    proc = _stubforge("check", str(repo), "--arch", "aarch64")
    assert (
        proc.returncode == 1
        and f"ERROR arch: the stub {model / cache.STUB_NAME} is for {host_arch}" in proc.stdout
    )


def test_install_backend_takes_the_servers_arch_from_its_library(
    cache_root: Path, aarch64_sysroot: Path, py310: object, tmp_path: Path
) -> None:
    """An aarch64 server's backends dir (its libtriton_python.so is aarch64): this machine's stub is refused
    without any --arch; the aarch64 stub is installed."""
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    (backends / "python" / "triton_python_backend_utils.py").write_text("")
    source = tmp_path / "lib.c"
    source.write_text("int triton_fixture(void) { return 1; }\n")
    cc = shutil.which("aarch64-linux-gnu-gcc")
    assert cc, "apt-get install gcc-aarch64-linux-gnu (.ci/run installs g++-aarch64-linux-gnu)"
    subprocess.run(
        [cc, "-shared", "-fPIC", str(source), "-o", str(backends / "python" / "libtriton_python.so")],
        check=True,
    )
    host = runner_stub.build_runner_stub(py310).stub  # type: ignore[arg-type]
    with pytest.raises(install.InstallError) as info:
        install.install_backend(backends, python=None, stub=host)
    assert "libtriton_python.so" in info.value.message or "libtriton_python.so" in str(info.value.message)
    assert "aarch64" in info.value.message
    assert not (backends / "python_3_10").exists()
    arm = runner_stub.build_runner_stub("3.11", target=Target.parse("aarch64", aarch64_sysroot)).stub
    result = install.install_backend(backends, python=None, stub=arm)
    assert result.changed and (backends / "python_3_11" / cache.STUB_NAME).is_file()
    sidecar = json.loads((backends / "python_3_11" / install.BACKEND_SIDECAR).read_text())
    assert sidecar["target"]["arch"] == "aarch64"
