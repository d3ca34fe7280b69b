"""Target commands: `sysroot create` (a target rootfs from Debian's packages) and `sysroot show`."""

from __future__ import annotations

from pathlib import Path

import click

from stubforge import api
from stubforge.cli import cli, emit_json, handle_errors, json_option, progress_for, quiet_option


@cli.group("sysroot")
def sysroot_group() -> None:
    """Root filesystems of other machines (aarch64 boards) for cross builds and envs."""


@sysroot_group.command("create")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--arch", default="aarch64", show_default=True, help="Target architecture (aarch64, x86_64).")
@click.option(
    "--python", "python", default="3.11", show_default=True, help="Python minor version (Debian's)."
)
@click.option("--numpy", is_flag=True, help="Also unpack Debian's python3-numpy for the target.")
@click.option("--package", "packages", multiple=True, help="Another Debian package to add (repeatable).")
@click.option("--force", is_flag=True, help="Replace DIRECTORY if it exists.")
@quiet_option
@json_option
@handle_errors
def sysroot_create(
    directory: Path,
    arch: str,
    python: str,
    numpy: bool,
    packages: tuple[str, ...],
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Make DIRECTORY a sysroot from Debian's packages for ARCH: pythonX.Y, libpythonX.Y(-dev), zlib and
    libarchive with their dependencies, downloaded once into the cache and unpacked (never installed)."""
    result = api.create_sysroot(
        directory,
        arch=arch,
        python=python,
        numpy=numpy,
        packages=packages,
        force=force,
        progress=progress_for(quiet, as_json, "sysroot"),
    )
    if as_json:
        emit_json(result.to_dict())
        return
    where = "downloaded" if result.downloaded else "from the cache"
    click.echo(f"sysroot {result.sysroot.root}: {len(result.debs)} Debian packages ({where})")
    _show(result.sysroot)


@sysroot_group.command("show")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--arch", default=None, help="Expected architecture (default: the sysroot's libc says).")
@json_option
@handle_errors
def sysroot_show(directory: Path, arch: str | None, as_json: bool) -> None:
    """What a sysroot holds: its architecture, glibc and the Pythons a stub can embed."""
    described = api.describe_sysroot(directory, arch=arch)
    if as_json:
        emit_json(described.to_dict())
        return
    _show(described)


def _show(described: api.Sysroot) -> None:
    click.echo(f"arch:   {described.arch or 'unknown (no libc.so.6 found)'}")
    click.echo(f"glibc:  {described.libc or 'unknown'}")
    if not described.pythons:
        click.echo("pythons: none (no libpython3.X.so* and no python3.X headers found)")
    for py in described.pythons:
        state = "can embed" if py.buildable else ("no libpython" if py.libpython is None else "no Python.h")
        click.echo(f"python {py.version:<8} {state:<12} numpy {py.numpy or '-':<8} {py.libpython or '-'}")
