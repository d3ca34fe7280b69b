"""The tritonserver of the nvidia-pytriton wheel for another architecture, downloaded once from PyPI and
unpacked into the cache (docs/triton-behaviour.md: "aarch64: emulation and cross-compilation").

`verify --pytriton --arch aarch64` runs it under emulation: the wheel holds a real aarch64 tritonserver, the
Python backend and prebuilt stubs for 3.8-3.13, and the libraries it needs (nvidia_pytriton.libs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from stubforge.core import cache
from stubforge.server.verify import tritonserver as server_mod

PYTRITON_VERSION = "0.7.0"  # Triton 2.51 (r24.10), as the x86_64 wheel the tests use
# The platform tag of its wheel per architecture, and a Python the wheel is tagged for (py3-none: any).
_PLATFORMS = {"aarch64": "manylinux_2_35_aarch64", "x86_64": "manylinux_2_35_x86_64"}
DOWNLOAD_TIMEOUT_S = 1800.0


def server_for(arch: str, version: str = PYTRITON_VERSION) -> server_mod.ServerInstall:
    """The unpacked wheel's tritonserver for `arch`, fetched with pip the first time."""
    platform_tag = _PLATFORMS.get(arch)
    if platform_tag is None:
        raise server_mod.ServerError(
            f"nvidia-pytriton has no wheel for {arch}", hint=f"use one of {', '.join(sorted(_PLATFORMS))}"
        )
    key = f"nvidia-pytriton-{version}-{arch}"
    final = cache.root() / "servers" / key
    binary = final / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    with cache.locked(key):
        if not binary.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            with cache.staging_dir(final) as staging:
                wheel = _download(version, platform_tag, staging / ".download")
                _unpack(wheel, staging)
                wheel.unlink()
    return server_mod.from_binary(binary)


def _download(version: str, platform_tag: str, into: Path) -> Path:
    into.mkdir(parents=True)
    log = cache.logs_dir() / f"pytriton-download-{os.getpid()}-{int(time.time())}.log"
    args = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    args += ["--platform", platform_tag, "--python-version", "3.11", "-d", str(into)]
    args.append(f"nvidia-pytriton=={version}")
    with open(log, "w") as out:
        try:
            proc = subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, timeout=DOWNLOAD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise server_mod.ServerError(
                f"downloading nvidia-pytriton {version} ({platform_tag}) took over {DOWNLOAD_TIMEOUT_S:.0f} s",
                hint=f"check the network or PIP_INDEX_URL; log {log}",
            ) from exc
    wheels = sorted(into.glob("nvidia_pytriton-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise server_mod.ServerError(
            f"pip could not download nvidia-pytriton=={version} for {platform_tag}",
            hint=f"it needs PyPI (or an index with that wheel, PIP_INDEX_URL); full log {log}",
            details=tail,
        )
    return wheels[0]


def _unpack(wheel: Path, dest: Path) -> None:
    """The server part of the wheel with its files' modes (a zip keeps them in external_attr; extractall drops
    them, and tritonserver and its stubs must stay executable)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
                continue
            target = (dest / name).resolve()
            if not target.is_relative_to(dest.resolve()):
                continue  # never write outside the cache entry
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)
