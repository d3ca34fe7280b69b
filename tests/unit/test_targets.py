from __future__ import annotations

import platform
from pathlib import Path

import pytest

from stubforge.core import elf, targets
from stubforge.core.targets import Target, TargetError
from stubforge.errors import StubforgeError


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("x86_64", "x86_64"),
        ("amd64", "x86_64"),
        ("AMD64", "x86_64"),
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
    ],
)
def test_arch_aliases_are_normalised(name: str, arch: str) -> None:
    assert Target.parse(name).arch == arch
    assert Target.parse(name).sysroot is None


@pytest.mark.parametrize("name", ["ppc64le", "i386", "armv7l", ""])
def test_unknown_arch_is_a_clear_error(name: str) -> None:
    with pytest.raises(TargetError) as info:
        Target.parse(name)
    assert isinstance(info.value, StubforgeError)
    assert repr(name) in info.value.message
    assert "aarch64" in info.value.hint and "x86_64" in info.value.hint


def test_sysroot_must_be_a_directory_with_a_libc(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as info:
        Target.parse("aarch64", tmp_path / "missing")
    assert "no such directory" in info.value.message
    with pytest.raises(TargetError) as info:
        Target.parse("aarch64", tmp_path)
    assert "no libc.so.6" in info.value.message and str(tmp_path.resolve()) in info.value.message
    assert Target.parse("aarch64", "").sysroot is None


def test_host_target_is_this_machine() -> None:
    host = targets.host_target()
    assert host.arch == (targets.normalize_arch(platform.machine()) or platform.machine())
    assert host.sysroot is None and host.is_host
    assert Target.parse() == host
    assert targets.as_target(None) == host
    other = Target("aarch64" if host.arch == "x86_64" else "x86_64")
    assert targets.as_target(other) is other and not other.is_host


def test_elf_machine_mapping_both_ways() -> None:
    assert Target("x86_64").elf_machine == "EM_X86_64"
    assert Target("aarch64").elf_machine == "EM_AARCH64"
    for machine, arch in elf.MACHINE_TO_ARCH.items():
        assert elf.arch_of_machine(machine) == arch and elf.machine_of_arch(arch) == machine
    assert set(elf.ARCH_TO_MACHINE) == set(targets.ARCHES)
    assert elf.arch_of_machine("EM_PPC64") is None


def test_a_binary_reports_its_arch() -> None:
    import sys

    info = elf.read(Path(sys.executable).resolve())
    assert info.arch == targets.host_target().arch


def test_manifest_round_trip(tmp_path: Path) -> None:
    target = Target("aarch64", tmp_path, "2.36")
    assert target.to_dict() == {"arch": "aarch64", "sysroot": str(tmp_path), "libc": "2.36"}
    assert Target.from_dict(target.to_dict()) == target
    assert Target.from_dict(targets.host_target().to_dict()) == targets.host_target()
    assert Target.from_dict(None) is None and Target.from_dict({"sysroot": "/x"}) is None
