"""Server side commands: install model|backend, list, check, verify, clean."""

from __future__ import annotations

import sys
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

if TYPE_CHECKING:  # imported for annotations only: the server side (numpy, tritonclient) loads on use
    from stubforge.server.check import CheckReport
    from stubforge.server.verify.session import VerifyReport

CACHED_STUB_RELEASE_HELP = "Release of the cached stub to use."


@cli.group("install")
def install_group() -> None:
    """Install stubs where Triton finds them."""


@install_group.command("model")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--python", "python_spec", help="Python of the stub (taken from the cache, built if needed).")
@click.option("--stub", type=click.Path(path_type=Path), help="Install this stub file instead.")
@triton_option(CACHED_STUB_RELEASE_HELP)
@click.option("--force", is_flag=True, help="Replace a different stub already there.")
@json_option
@handle_errors
def install_model_cmd(
    model_dir: Path, python_spec: str | None, stub: Path | None, triton: str, force: bool, as_json: bool
) -> None:
    """Put a per-model stub at MODEL_DIR/triton_python_backend_stub."""
    from stubforge.server import install

    result = install.install_model_stub(model_dir, python=python_spec, stub=stub, triton=triton, force=force)
    if as_json:
        emit_json(result.to_dict())
        return
    warn(result.warnings)
    click.echo(f"{result.path}  {'installed' if result.changed else 'unchanged'}  (from {result.source})")


@install_group.command("backend")
@click.option(
    "--backends",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Triton's backend directory (holding the stock python/).",
)
@click.option("--python", "python_spec", help="Python of the stub (taken from the cache, built if needed).")
@click.option("--stub", type=click.Path(path_type=Path), help="Use this stub file instead.")
@click.option("--env", type=click.Path(path_type=Path), help="Default env for its models (.tar.gz).")
@click.option("--name", help="Backend directory name (default python_3_X).")
@triton_option(CACHED_STUB_RELEASE_HELP)
@click.option("--copy-library", is_flag=True, help="Also copy python/libtriton_python.so (not required).")
@click.option("--force", is_flag=True, help="Replace an existing backend directory with other content.")
@json_option
@handle_errors
def install_backend_cmd(
    backends: Path,
    python_spec: str | None,
    stub: Path | None,
    env: Path | None,
    name: str | None,
    triton: str,
    copy_library: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Create a python_3_X backend directory: stub, utils, a dispatcher model.py, optional default env."""
    from stubforge.server import install

    result = install.install_backend(
        backends,
        python=python_spec,
        stub=stub,
        env=env,
        name=name,
        triton=triton,
        copy_library=copy_library,
        force=force,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    warn(result.warnings)
    click.echo(
        f"{result.path}  {'installed' if result.changed else 'unchanged'}  (stub from {result.source})"
    )


@cli.command("list")
@click.option(
    "--backends",
    required=True,
    type=click.Path(path_type=Path),
    help="Triton's backend directory, e.g. /opt/tritonserver/backends.",
)
@json_option
@handle_errors
def list_cmd(backends: Path, as_json: bool) -> None:
    """List the python-family backends of a backend directory: Python, release, default env."""
    from stubforge.triton import backends as backend_dirs

    found = backend_dirs.list_backends(backends)
    if as_json:
        emit_json([b.to_dict() for b in found])
        return
    if not found:
        click.echo(f"no python-family backend in {backends}")
        return
    width = max(len(b.name) for b in found)
    for b in found:
        env = "-"
        if b.default_env is not None:
            env = f"{b.default_env.name} (Python {b.default_env_python or 'unknown'})"
        click.echo(
            f"{b.name:<{width}}  {b.kind:<12} Python {b.python or '?':<5} "
            f"release {b.triton or 'unknown':<8} default env {env}"
        )
        for problem in b.problems:
            click.echo(f"    problem: {problem}")


@cli.command("check")
@click.argument("target", type=click.Path(path_type=Path))
@triton_option("The release the repository will run on.")
@click.option(
    "--backends",
    type=click.Path(path_type=Path),
    help="Triton's backend directory (checks backend stubs and envs).",
)
@json_option
@handle_errors
def check_cmd(target: Path, triton: str, backends: Path | None, as_json: bool) -> None:
    """Find the known pitfalls of a model repository (or one model) from its files, without a server."""
    report = api.check(target, triton=triton, backends=backends)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_check(report)
    if report.errors:
        sys.exit(1)


def print_check(report: CheckReport) -> None:
    width = max([len(m.name) for m in report.models] + [5])
    for model in report.models:
        facts = []
        if model.stub_python:
            facts.append(f"stub Python {model.stub_python}")
        if model.env_python:
            facts.append(f"env Python {model.env_python}")
        click.echo(f"{model.status:<6} {model.name:<{width}}  {', '.join(facts)}".rstrip())
        for finding in model.findings:
            click.echo(f"  {finding.level} {finding.check}: {finding.message}")
            click.echo(f"        fix: {finding.fix}")
    for finding in report.repository:
        click.echo(f"{finding.level:<6} (repository)  {finding.check}: {finding.message}")
        click.echo(f"        fix: {finding.fix}")
    click.echo(
        f"{len(report.models)} model(s) checked for {report.triton}: {report.errors} error(s), "
        f"{report.warnings} warning(s)"
    )


@cli.command("verify")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option(
    "--tritonserver",
    "server_path",
    type=click.Path(path_type=Path),
    help="The tritonserver binary (or the install root holding bin/tritonserver).",
)
@click.option("--pytriton", is_flag=True, help="Use the tritonserver inside an installed nvidia-pytriton.")
@click.option(
    "--backends",
    type=click.Path(path_type=Path),
    help="Backend directory to serve from (default: the server's own).",
)
@click.option("--model", "models", multiple=True, help="Verify only this model (repeatable).")
@click.option("--load-timeout", default=120.0, show_default=True, help="Seconds one model may take to load.")
@click.option("--request-timeout", default=60.0, show_default=True, help="Seconds one request may take.")
@click.option("--log", "log_path", type=click.Path(path_type=Path), help="Write the server log here.")
@click.option(
    "--arch",
    help="The server's architecture (default: the binary's). With --pytriton and another architecture than "
    "this machine's, that nvidia-pytriton wheel is downloaded and run under emulation (timeouts x8).",
)
@click.option(
    "--sysroot",
    type=click.Path(path_type=Path),
    help="The target's root filesystem: its libraries and python3 for the server's stubs.",
)
@quiet_option
@json_option
@handle_errors
def verify_cmd(
    repository: Path,
    server_path: Path | None,
    pytriton: bool,
    backends: Path | None,
    models: tuple[str, ...],
    load_timeout: float,
    request_timeout: float,
    log_path: Path | None,
    arch: str | None,
    sysroot: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Load every model of REPOSITORY in a real tritonserver and send each one request."""
    result = api.verify(
        repository,
        tritonserver=server_path,
        pytriton=pytriton,
        backends=backends,
        models=models,
        load_timeout=load_timeout,
        request_timeout=request_timeout,
        log_path=log_path,
        arch=arch,
        sysroot=sysroot,
        progress=progress_for(quiet, as_json, "verify"),
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        # The static findings first: a known pitfall often explains the failure below it.
        if result.check is not None and (result.check.errors or result.check.warnings):
            print_check(result.check)
        print_verify(result.report)
    if not result.ok:
        sys.exit(1)


def print_verify(report: VerifyReport) -> None:
    where = f" ({report.arch}, {report.emulation})" if report.emulation not in (None, "native") else ""
    click.echo(f"tritonserver {report.server_version or '?'}{where}  {report.server}")
    click.echo(f"backends {report.backends}; first python3 on PATH: {report.path_python or 'none'}")
    for m in report.models:
        status = "ok" if m.ok else "FAILED"
        load = f"loaded in {m.load_seconds:.1f}s" if m.loaded else "not loaded"
        answer = {True: "answered", False: "request failed", None: "no request"}[m.response_ok]
        python = f"Python {m.python}" if m.python else "Python ?"
        numpy = f"numpy {m.numpy}" if m.numpy else ""
        click.echo(f"{status:<7} {m.name:<24} {load:<16} {answer:<15} {python} {numpy}".rstrip())
        for warning in m.warnings:
            click.echo(f"        warning: {warning}")
        if m.error:
            click.echo(f"        error: {m.error}")
            if m.hint:
                click.echo(f"        hint: {m.hint}")
            if m.log_excerpt:
                click.echo("        server log:")
                for line in m.log_excerpt.splitlines()[-12:]:
                    click.echo(f"          {line}")
    passed = sum(m.ok for m in report.models)
    click.echo(
        f"{passed}/{len(report.models)} models verified in {report.seconds:.1f}s "
        f"({report.server_starts} server start{'s' if report.server_starts != 1 else ''}); log {report.log}"
    )


@cli.command("clean")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--no-triton", is_flag=True, help="Only stubforge's own leftovers, not Triton's /tmp dirs.")
@json_option
@handle_errors
def clean_cmd(dry_run: bool, no_triton: bool, as_json: bool) -> None:
    """Remove env extractions of killed runs, and Triton's /tmp/python_env_* and /tmp/folderXXXXXX copies
    that no running process uses."""
    found = api.clean(dry_run=dry_run, triton=not no_triton)
    if as_json:
        emit_json({"dry_run": dry_run, "removed": [f.to_dict() for f in found]})
        return
    verb = "would remove" if dry_run else "removed"
    for leftover in found:
        click.echo(
            f"{verb} {leftover.path}  ({leftover.kind}, {leftover.size / 1e6:.1f} MB): {leftover.reason}"
        )
    total = sum(f.size for f in found)
    click.echo(f"{verb} {len(found)} director{'y' if len(found) == 1 else 'ies'}, {total / 1e6:.1f} MB")
