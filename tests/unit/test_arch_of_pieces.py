"""The architecture of a deployment's pieces, read from ELF headers: stubs, envs (directories and archives,
through bin/python3 links) and the server's libtriton_python.so."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

from stubforge.core import elf
from stubforge.core.targets import Target, host_target
from stubforge.triton import arch
from stubforge.triton.envinfo import EnvContents

AARCH64_ELF = Path("/usr/aarch64-linux-gnu/lib/libc.so.6")


def _aarch64_header() -> bytes:
    if not AARCH64_ELF.exists():
        pytest.skip("no aarch64 ELF file: apt-get install g++-aarch64-linux-gnu (.ci/run does)")
    return AARCH64_ELF.resolve().read_bytes()[:64]


def test_header_arch() -> None:
    assert elf.arch_of_header(Path(sys.executable).resolve().read_bytes()[:64]) == host_target().arch
    assert elf.arch_of_header(_aarch64_header()) == "aarch64"
    assert elf.arch_of_header(b"#!/bin/sh\n" + b"\0" * 20) is None
    assert elf.arch_of_header(b"\x7fELF") is None


def test_directory_env_and_archive_env_through_links(tmp_path: Path) -> None:
    header = _aarch64_header()
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python3.11").write_bytes(header)
    (env / "bin" / "python3").symlink_to("python3.11")
    assert arch.env_arch(EnvContents(env)) == "aarch64"

    archive = tmp_path / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("bin/python3")
        link.type = tarfile.SYMTYPE
        link.linkname = "python3.11"
        tar.addfile(link)
        member = tarfile.TarInfo("bin/python3.11")
        member.size = len(header)
        tar.addfile(member, io.BytesIO(header))
    assert arch.env_arch_of(archive) == "aarch64"
    assert arch.env_arch_of(tmp_path / "missing.tar.gz") is None


def test_deployment_arch_sources(tmp_path: Path) -> None:
    assert arch.deployment_arch(Target("aarch64"), None) == ("aarch64", "--arch")
    assert arch.deployment_arch(None, None) == (host_target().arch, "this machine")
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    (backends / "python" / arch.LIBRARY).write_bytes(_aarch64_header())
    assert arch.deployment_arch(None, backends) == ("aarch64", str(backends / "python" / arch.LIBRARY))
