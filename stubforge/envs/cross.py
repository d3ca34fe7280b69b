"""Packages for an env of another architecture: wheels for the target's platform, installed by this machine's pip
without running anything of the target, and what can be checked of such an env when it cannot be started.

pip chooses wheels by tags (`--platform manylinux_2_X_aarch64 --python-version 3.11 --abi cp311`) and accepts
only wheels (`--only-binary=:all:`): an sdist would be built for this machine. pip still evaluates environment
markers (`platform_machine == ...`) for the machine it runs on; docs/aarch64.md says so.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from stubforge.envs import create, inspect
from stubforge.envs.sysroot_python import SysrootPython
from stubforge.errors import EnvError
from stubforge.progress import QUIET, Progress

# manylinux2014 is glibc 2.17, the oldest tag with aarch64 wheels.
_OLDEST_GLIBC_MINOR = 17


def wheel_platforms(arch: str, glibc: str | None) -> list[str]:
    """Every manylinux tag a machine with this glibc runs, newest first (pip does not expand manylinux_2_X)."""
    newest = _OLDEST_GLIBC_MINOR
    if glibc and glibc.startswith("2.") and glibc.split(".")[1].isdigit():
        newest = max(newest, int(glibc.split(".")[1]))
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, _OLDEST_GLIBC_MINOR - 1, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def pip_install(
    env_dir: Path,
    found: SysrootPython,
    requirements: Sequence[str],
    requirement_files: Sequence[Path],
    pip_args: Sequence[str],
    log: Path,
    progress: Progress = QUIET,
) -> None:
    """Install the target's wheels into the env's site dir with the pip of the Python running stubforge."""
    if not requirements and not requirement_files:
        return
    site = env_dir / found.site_dir
    args = [sys.executable, "-m", "pip", "install", "--no-warn-script-location", "--no-compile"]
    args += ["--target", str(site), "--only-binary=:all:", "--implementation", "cp"]
    args += ["--python-version", found.minor, "--abi", "cp" + found.minor.replace(".", "")]
    for tag in wheel_platforms(found.target.arch, found.glibc):
        args += ["--platform", tag]
    for req_file in requirement_files:
        args += ["-r", str(req_file)]
    args += [*pip_args, *requirements]
    shown = " ".join([*(str(r) for r in requirement_files), *pip_args, *requirements])
    progress.step("pip install", f"{shown} (wheels for {found.target.arch}, Python {found.minor})")
    create.run_logged(
        args,
        log,
        f"pip could not install {shown} as {found.target.arch} wheels for Python {found.minor}",
        hint="every package needs a wheel for the target (manylinux ..._"
        f"{found.target.arch}, cp{found.minor.replace('.', '')} or py3-none-any): pip cannot build an sdist for "
        f"another machine; pin a version that has one, or build the wheel on the board (full log: {log})",
        env=create._pip_environment(),
    )
    _move_scripts(site, env_dir / "bin")


def _move_scripts(site: Path, bin_dir: Path) -> None:
    """pip --target puts console scripts in <target>/bin with this machine's interpreter in the shebang: they
    belong in the env's bin/, started by whichever python3 the launcher puts first on PATH (the env's)."""
    scripts = site / "bin"
    if not scripts.is_dir():
        return
    for script in sorted(scripts.iterdir()):
        destination = bin_dir / script.name
        if destination.exists() or destination.is_symlink():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            data = b"#!/usr/bin/env python3\n" + (data.split(b"\n", 1)[1] if b"\n" in data else b"")
        destination.write_bytes(data)
        os.chmod(destination, 0o755)
    shutil.rmtree(scripts)


def static_report(
    env_dir: Path,
    found: SysrootPython,
    *,
    requirements: list[str],
    numpy2_ok: bool,
    numpy2_reason: str,
    why_not_started: str,
) -> inspect.EnvReport:
    """What can be proven without starting the env: its files, the installed distributions, the architecture of
    every binary. EnvError for what would certainly fail on the target."""
    minor_libs = sorted((env_dir / "lib").glob("libpython3*.so.1.0"))
    if not minor_libs or not (env_dir / "bin" / "activate").is_file():
        raise EnvError(f"{env_dir}: incomplete env (libpython or bin/activate missing)", hint="pack it again")
    site = env_dir / found.site_dir
    dists: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        dists[inspect._canonical(name)] = version
    missing = [n for n in inspect.requirement_names(requirements) if n not in dists]
    if missing:
        raise EnvError(
            f"requested packages are not installed in the env: {', '.join(missing)}",
            hint="check the pip output in the log",
        )
    numpy_version = dists.get("numpy")
    if numpy_version is None:
        raise EnvError("numpy is not installed in the env", hint="triton_python_backend_utils imports numpy")
    if numpy_version.split(".")[0].isdigit() and int(numpy_version.split(".")[0]) >= 2 and not numpy2_ok:
        raise EnvError(
            f"the env has numpy {numpy_version}, but {numpy2_reason}",
            hint="pin numpy<2 in the requirements, or build the stub with --pybind11 2.12.0 and pass --stub",
        )
    return inspect.EnvReport(
        version=found.version,
        prefix=str(env_dir),
        packages=dists,
        numpy=numpy_version,
        libpython=str(minor_libs[0].relative_to(env_dir)),
        glibcxx_in_env=None,
        warnings=[
            f"the env was not started ({why_not_started}): its files and architecture were checked only"
        ],
    )
