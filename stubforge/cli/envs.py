"""Env side commands: pack-env and param (EXECUTION_ENV_PATH in config.pbtxt)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stubforge import api
from stubforge.cli import (
    cli,
    emit_json,
    handle_errors,
    json_option,
    progress_for,
    quiet_option,
    triton_option,
    warn,
)

if TYPE_CHECKING:
    from stubforge.triton.pbtxt import WriteResult


def show_config_write(written: WriteResult) -> None:
    if not written.changed:
        click.echo(f"{written.path}: {written.key} already {written.value!r}", err=True)
        return
    was = f" (was {written.old_value!r})" if written.old_value is not None else ""
    kept = f"; backup {written.backup}" if written.backup else ""
    click.echo(f"{written.path}: {written.key} = {written.value!r}{was}{kept}", err=True)


@cli.command("param")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("env", type=click.Path(path_type=Path))
@click.option("--write", is_flag=True, help="Insert (or replace) the parameter in MODEL_DIR/config.pbtxt.")
@click.option("--allow-host-path", is_flag=True, help="Allow an env outside the model dir (absolute path).")
@click.option("--no-backup", is_flag=True, help="With --write: keep no config.pbtxt.bak.")
@json_option
@handle_errors
def param_cmd(
    model_dir: Path, env: Path, write: bool, allow_host_path: bool, no_backup: bool, as_json: bool
) -> None:
    """Print the EXECUTION_ENV_PATH block for ENV (an archive or directory env), or --write it."""
    from stubforge.triton import envpath

    if not write:
        value = api.plan_env_path(model_dir, env, allow_host_path=allow_host_path)
        if as_json:
            emit_json({"key": envpath.EXECUTION_ENV_PATH, "value": value})
        else:
            click.echo(envpath.param_block(value), nl=False)
        return
    written = api.set_env_path(model_dir, env, allow_host_path=allow_host_path, backup=not no_backup)
    if as_json:
        emit_json(written.to_dict())
        return
    show_config_write(written)


@cli.command("pack-env")
@click.option("--python", "python_spec", help="3.8, 3.8.18, cp38 or an interpreter path.")
@click.option("--spec", type=click.Path(path_type=Path), help="A spec file such as envs/py38-numpy.toml.")
@click.option("--prefix", type=click.Path(path_type=Path), help="Pack this existing conda environment.")
@click.option("--name", "conda_name", help="Pack the conda environment of this name (needs conda on PATH).")
@click.option(
    "--venv", type=click.Path(path_type=Path), help="Pack this venv/virtualenv, made self-contained."
)
@click.option("-r", "--requirement", "requirement_files", multiple=True, type=click.Path(path_type=Path))
@click.option("--pip-arg", "pip_args", multiple=True, help="Extra pip install argument (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write NAME.tar.gz.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Write a directory env.")
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Drop tests, static libraries, Windows .exe files and headers (kept when a package compiles at run "
    "time); --no-prune keeps every file.",
)
@triton_option("Release the env runs under (numpy 2 rule).")
@click.option(
    "--stub", type=click.Path(path_type=Path, exists=True, dir_okay=False), help="The stub it runs with."
)
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Model directory: pack into it (default MODEL/env.tar.gz) and set EXECUTION_ENV_PATH in its config.pbtxt.",
)
@click.option(
    "--allow-host-path", is_flag=True, help="With --model: allow an env outside it (writes an absolute path)."
)
@click.option("--no-backup", is_flag=True, help="With --model: keep no config.pbtxt.bak.")
@click.option("--arch", help="The machine the env is for: aarch64 (arm64) or x86_64; default this one's.")
@click.option(
    "--sysroot",
    type=click.Path(path_type=Path),
    help="The target's root filesystem: the env's Python, libpython and stdlib come from it.",
)
@quiet_option
@json_option
@click.argument("packages", nargs=-1)
@handle_errors
def pack_env_cmd(
    python_spec: str | None,
    spec: Path | None,
    prefix: Path | None,
    conda_name: str | None,
    venv: Path | None,
    requirement_files: tuple[Path, ...],
    pip_args: tuple[str, ...],
    output: Path | None,
    directory: Path | None,
    prune: bool,
    triton: str,
    stub: Path | None,
    force: bool,
    model_dir: Path | None,
    allow_host_path: bool,
    no_backup: bool,
    arch: str | None,
    sysroot: Path | None,
    quiet: bool,
    as_json: bool,
    packages: tuple[str, ...],
) -> None:
    """Create an execution environment for EXECUTION_ENV_PATH from a shared-library CPython.

    PACKAGES are pip requirements (numpy is added when missing)."""
    result = api.pack_env(
        python_spec,
        packages,
        spec=spec,
        prefix=prefix,
        conda_name=conda_name,
        venv=venv,
        requirement_files=requirement_files,
        pip_args=pip_args,
        output=output,
        directory=directory,
        prune=prune,
        triton=triton,
        stub=stub,
        model_dir=model_dir,
        allow_host_path=allow_host_path,
        backup=not no_backup,
        force=force,
        arch=arch,
        sysroot=sysroot,
        progress=progress_for(quiet, as_json, "pack-env"),
    )
    if as_json:
        emit_json(result.to_dict())
        return
    warn(result.manifest.get("warnings", []))
    if result.config is not None:
        show_config_write(result.config)
    m = result.manifest
    size = f"{m['size'] / 1e6:.1f} MB"
    arch = m.get("target", {}).get("arch")
    where = f" for {arch} ({m['validated']})" if m.get("validated") not in (None, "started") else ""
    click.echo(
        f"{result.path}  {result.kind}{where}, Python {m['python']}, numpy {m['numpy']}, {size}, {m['seconds']}s"
    )
