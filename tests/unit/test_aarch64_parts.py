"""The parts behind aarch64 envs and emulated runs that need no emulator: binfmt_misc states, wheel tags, an env's
architecture, the sysroot's Python, and which runner stub a model gets."""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from stubforge.core import emulation
from stubforge.core.targets import Target
from stubforge.envs import cross, envarch, sysroot_python
from stubforge.errors import EnvError, RunnerError
from stubforge.runner import foreign

# The first 20 bytes of an ELF header: class 64, little-endian, e_machine at offset 18.
ELF_AARCH64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (183).to_bytes(2, "little")
ELF_X86_64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (62).to_bytes(2, "little")


def _binfmt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, status: str | None, entry: str | None
) -> Path:
    directory = tmp_path / "binfmt_misc"
    directory.mkdir()
    if status is not None:
        (directory / "status").write_text(status + "\n")
    if entry is not None:
        (directory / "qemu-aarch64").write_text(entry)
    monkeypatch.setenv("STUBFORGE_BINFMT_DIR", str(directory))
    return directory


def test_the_host_architecture_is_native(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _binfmt(tmp_path, monkeypatch, status=None, entry=None)  # nothing registered: irrelevant for the host
    found = emulation.probe("x86_64")
    assert found.native and found.available and found.timeout_factor == 1.0


@pytest.mark.parametrize(
    ("status", "entry", "reason", "hint"),
    [
        (None, None, "binfmt_misc is not mounted", "mount -t binfmt_misc binfmt_misc"),
        ("disabled", None, "binfmt_misc is disabled", "echo 1 >"),
        ("enabled", None, "no qemu-aarch64 is registered", "apt-get install qemu-user-static binfmt-support"),
        (
            "enabled",
            "disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n",
            "registered but disabled",
            "update-binfmts --enable qemu-aarch64",
        ),
        (
            "enabled",
            "enabled\ninterpreter /nonexistent/qemu-aarch64-static\nflags: PF\n",
            "/nonexistent/qemu-aarch64-static, which does not exist",
            "qemu-user-static",
        ),
    ],
)
def test_each_missing_piece_of_emulation_is_named(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    status: str | None,
    entry: str | None,
    reason: str,
    hint: str,
) -> None:
    if sys.platform != "linux" or Target.parse().arch != "x86_64":
        pytest.skip("emulating aarch64 is what an x86_64 host does")
    _binfmt(tmp_path, monkeypatch, status=status, entry=entry)
    found = emulation.probe("aarch64")
    assert not found.available
    assert reason in found.reason and hint in found.hint
    with pytest.raises(emulation.EmulationError) as caught:
        found.require("the aarch64 tritonserver")
    assert "cannot run the aarch64 tritonserver on this x86_64 machine" in str(caught.value)


def test_a_registered_interpreter_that_exists_means_emulation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if Target.parse().arch != "x86_64":
        pytest.skip("emulating aarch64 is what an x86_64 host does")
    qemu = tmp_path / "qemu-aarch64-static"
    qemu.write_text("")
    _binfmt(tmp_path, monkeypatch, status="enabled", entry=f"enabled\ninterpreter {qemu}\nflags: PF\n")
    found = emulation.probe("aarch64")
    assert found.available and not found.native
    assert found.timeout_factor == emulation.TIMEOUT_FACTOR
    assert found.describe() == f"emulated by {qemu}"


def test_wheel_tags_cover_every_glibc_up_to_the_sysroots() -> None:
    tags = cross.wheel_platforms("aarch64", "2.36")
    assert tags[0] == "manylinux_2_36_aarch64"
    assert "manylinux_2_17_aarch64" in tags and tags[-1] == "manylinux2014_aarch64"
    assert cross.wheel_platforms("aarch64", None) == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


def test_the_arch_of_a_directory_env_comes_from_its_libpython(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libpython3.11.so.1.0").write_bytes(ELF_AARCH64 + b"\x00" * 100)
    assert envarch.env_arch(tmp_path) == "aarch64"
    (tmp_path / "lib" / "libpython3.11.so.1.0").write_bytes(ELF_X86_64 + b"\x00" * 100)
    assert envarch.env_arch(tmp_path) == "x86_64"


def test_the_arch_of_an_archive_env_without_manifest_is_read_from_the_stream(tmp_path: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("bin/activate", b"# activate\n"), ("lib/libpython3.11.so.1.0", ELF_AARCH64 * 5)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert envarch.env_arch(archive) == "aarch64"
    # The manifest pack-env writes beside it wins (no need to read the archive).
    (tmp_path / "env.tar.gz.stubforge.json").write_text('{"target": {"arch": "x86_64", "sysroot": null}}')
    assert envarch.env_arch(archive) == "x86_64"


def test_an_env_without_libpython_has_no_known_arch(tmp_path: Path) -> None:
    assert envarch.env_arch(tmp_path) is None
    assert envarch.env_arch(tmp_path / "missing.tar.gz") is None


def _fake_sysroot(root: Path, python: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    shutil.copy2(python, root / "usr" / "bin" / "python3.11")
    return root


def test_a_sysroot_is_required_for_another_arch() -> None:
    with pytest.raises(EnvError) as caught:
        sysroot_python.find(Target("aarch64"), "3.11")
    assert "--arch aarch64 needs --sysroot DIR" in str(caught.value)
    assert "stubforge sysroot create" in (caught.value.hint or "")


def test_a_sysroot_without_the_python_lists_what_it_has(tmp_path: Path) -> None:
    root = _fake_sysroot(tmp_path / "root", Path(sys.executable).resolve())
    with pytest.raises(EnvError) as caught:
        sysroot_python.find(Target("aarch64", root), "3.12")
    assert "has no python3.12" in str(caught.value)
    assert "python3.11" in (caught.value.hint or "")


def test_a_python_of_the_wrong_arch_in_the_sysroot_is_refused(tmp_path: Path) -> None:
    root = _fake_sysroot(tmp_path / "root", Path(sys.executable).resolve())
    with pytest.raises(EnvError) as caught:
        sysroot_python.find(Target("aarch64", root), "3.11")
    assert "is built for x86_64, not aarch64" in str(caught.value)


def test_debian_pythons_get_their_packages_in_dist_packages(tmp_path: Path) -> None:
    debian = tmp_path / "debian" / "python3.11"
    debian.mkdir(parents=True)
    (debian / "site.py").write_text(
        'sitepackages.append(os.path.join(prefix, "lib", "python3", "dist-packages"))\n'
    )
    assert sysroot_python._site_dir(debian, "3.11") == "lib/python3/dist-packages"
    plain = tmp_path / "plain" / "python3.11"
    plain.mkdir(parents=True)
    (plain / "site.py").write_text("# CPython's own site.py\n")
    assert sysroot_python._site_dir(plain, "3.11") == "lib/python3.11/site-packages"


def test_the_runner_keeps_its_own_stub_for_an_env_of_this_machine(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libpython3.11.so.1.0").write_bytes(ELF_X86_64 + b"\x00" * 100)
    if Target.parse().arch != "x86_64":
        pytest.skip("the fixture env is an x86_64 one")
    assert foreign.plan("m", tmp_path, tmp_path, None) is None
    assert foreign.plan("m", None, None, None) is None


def test_an_aarch64_env_needs_an_aarch64_runner_stub(tmp_path: Path) -> None:
    if Target.parse().arch != "x86_64":
        pytest.skip("an aarch64 env is foreign on x86_64 only")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libpython3.11.so.1.0").write_bytes(ELF_AARCH64 + b"\x00" * 100)
    with pytest.raises(RunnerError) as caught:
        foreign.plan("m", tmp_path, tmp_path / "env.tar.gz", None)
    assert "is built for aarch64; this machine is x86_64" in str(caught.value)
    assert "build --flavor runner --arch aarch64" in (caught.value.hint or "")
    host_stub = Path(sys.executable).resolve()
    with pytest.raises(RunnerError) as caught:
        foreign.plan("m", tmp_path, tmp_path / "env.tar.gz", host_stub)
    assert "is built for x86_64, but the env" in str(caught.value)


def test_pack_env_for_another_arch_needs_a_sysroot_and_refuses_host_envs(
    tmp_path: Path, aarch64_sysroot: Path
) -> None:
    import stubforge

    with pytest.raises(EnvError) as caught:
        stubforge.pack_env("3.11", arch="aarch64", output=tmp_path / "env.tar.gz")
    assert "--arch aarch64 needs --sysroot DIR" in str(caught.value)
    with pytest.raises(EnvError) as caught:
        stubforge.pack_env(
            arch="arm64", sysroot=aarch64_sysroot, venv=tmp_path, output=tmp_path / "env.tar.gz"
        )
    assert "--prefix, --name and --venv pack an environment of this machine" in str(caught.value)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_without_binfmt_a_single_program_can_still_run_behind_qemu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if Target.parse().arch != "x86_64":
        pytest.skip("emulating aarch64 is what an x86_64 host does")
    _binfmt(tmp_path, monkeypatch, status=None, entry=None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-aarch64-static"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = emulation.emulation_for("aarch64")
    assert found is not None and found.how == "qemu" and not found.available
    assert found.command(["stub"]) == [str(qemu), "stub"]
    assert found.environment({}, tmp_path)["QEMU_LD_PREFIX"] == str(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert emulation.emulation_for("aarch64") is None
    assert "binfmt_misc is not mounted" in emulation.unavailable_reason("aarch64")
    native = emulation.emulation_for("x86_64")
    assert native is not None and native.how == "native" and native.command(["x"]) == ["x"]


@pytest.mark.parametrize("absolute", [True, False])
def test_stdlib_links_out_of_the_stdlib_become_the_sysroots_files(tmp_path: Path, absolute: bool) -> None:
    """Debian's sitecustomize.py links to /etc/python3.X/ (made relative by `sysroot create`): in the env it must
    be the sysroot's file, not a link out of the env (archives refuse those) or into the board's /etc."""
    sysroot = tmp_path / "root"
    stdlib = sysroot / "usr" / "lib" / "python3.11"
    (stdlib / "json").mkdir(parents=True)
    (sysroot / "etc" / "python3.11").mkdir(parents=True)
    (sysroot / "etc" / "python3.11" / "sitecustomize.py").write_text("# the sysroot's\n")
    (stdlib / "sitecustomize.py").symlink_to(
        "/etc/python3.11/sitecustomize.py" if absolute else "../../../etc/python3.11/sitecustomize.py"
    )
    (stdlib / "gone.py").symlink_to("/etc/python3.11/missing.py" if absolute else "../../../nowhere.py")
    (stdlib / "json" / "decoder.py").write_text("pass\n")
    (stdlib / "alias.py").symlink_to("json/decoder.py")  # inside the stdlib: stays a link
    copy = tmp_path / "env" / "lib" / "python3.11"
    shutil.copytree(stdlib, copy, symlinks=True)

    sysroot_python._resolve_outside_links(copy, stdlib, sysroot)

    assert not (copy / "sitecustomize.py").is_symlink()
    assert (copy / "sitecustomize.py").read_text() == "# the sysroot's\n"
    assert not (copy / "gone.py").exists() and not (copy / "gone.py").is_symlink()
    assert (copy / "alias.py").is_symlink() and (copy / "alias.py").read_text() == "pass\n"
