"""Server side commands: install model|backend, list, check, verify, push, clean."""

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
from stubforge.core.targets import Target

if TYPE_CHECKING:  # imported for annotations only: the server side (numpy, tritonclient) loads on use
    from stubforge.server.check import CheckReport
    from stubforge.server.verify.session import VerifyReport

CACHED_STUB_RELEASE_HELP = "Release of the cached stub to use."


ARCH_OPTION = click.option(
    "--arch",
    help="The server's architecture (default: --backends' libtriton_python.so, else this machine's).",
)
SYSROOT_OPTION = click.option(
    "--sysroot",
    type=click.Path(path_type=Path),
    help="The server machine's root filesystem, to build a missing stub for it (see stubforge sysroot).",
)


@cli.group("install")
def install_group() -> None:
    """Install stubs where Triton finds them."""


@install_group.command("model")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--python", "python_spec", help="Python of the stub (taken from the cache, built if needed).")
@click.option("--stub", type=click.Path(path_type=Path), help="Install this stub file instead.")
@triton_option(CACHED_STUB_RELEASE_HELP)
@click.option("--force", is_flag=True, help="Replace a different stub already there.")
@ARCH_OPTION
@SYSROOT_OPTION
@json_option
@handle_errors
def install_model_cmd(
    model_dir: Path,
    python_spec: str | None,
    stub: Path | None,
    triton: str,
    force: bool,
    arch: str | None,
    sysroot: Path | None,
    as_json: bool,
) -> None:
    """Put a per-model stub at MODEL_DIR/triton_python_backend_stub."""
    from stubforge.server import install

    target = Target.parse(arch, sysroot) if arch or sysroot else None
    result = install.install_model_stub(
        model_dir, python=python_spec, stub=stub, triton=triton, force=force, target=target
    )
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
@ARCH_OPTION
@SYSROOT_OPTION
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
    arch: str | None,
    sysroot: Path | None,
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
        target=Target.parse(arch, sysroot) if arch or sysroot else None,
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
        if b.gpu is not None or b.library_gpu is not None:
            click.echo(f"    stub {b.gpu or '?'}; libtriton_python.so {b.library_gpu or 'missing'}")
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
@click.option(
    "--for",
    "store",
    type=click.Choice(["local", "s3", "gcs", "azure"]),
    default="local",
    show_default=True,
    help="Where the server will read the repository from (object stores add their rules).",
)
@click.option(
    "--arch",
    help="The server's architecture (default: that of --backends' libtriton_python.so, else this machine's).",
)
@json_option
@handle_errors
def check_cmd(
    target: Path, triton: str, backends: Path | None, store: str, arch: str | None, as_json: bool
) -> None:
    """Find the known pitfalls of a model repository (or one model) from its files, without a server."""
    report = api.check(target, triton=triton, backends=backends, store=store, arch=arch)
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
        f"{len(report.models)} model(s) checked for {report.triton}"
        + (f" read from {report.store}" if report.store != "local" else "")
        + f": {report.errors} error(s), "
        f"{report.warnings} warning(s)"
    )


@cli.command("verify")
@click.argument("repository")
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
    repository: str,
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
    """Load every model of REPOSITORY (a directory, or s3://HOST:PORT/BUCKET/PREFIX) in a real tritonserver and
    send each one request."""
    result = api.verify(
        repository if repository.startswith("s3://") else Path(repository),
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


@cli.command("push")
@click.argument("repository", type=click.Path(path_type=Path))
@click.argument("destination")
@click.option(
    "--endpoint-url", help="The S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS, or AWS_ENDPOINT_URL)."
)
@click.option("--dry-run", is_flag=True, help="List what would be uploaded; upload nothing.")
@click.option(
    "--allow-directory-env", is_flag=True, help="Push a model whose EXECUTION_ENV_PATH is a directory anyway."
)
@click.option("-j", "--jobs", default=8, show_default=True, help="Uploads at a time.")
@quiet_option
@json_option
@handle_errors
def push_cmd(
    repository: Path,
    destination: str,
    endpoint_url: str | None,
    dry_run: bool,
    allow_directory_env: bool,
    jobs: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Upload REPOSITORY to DESTINATION (s3://BUCKET/PREFIX or s3://HOST:PORT/BUCKET/PREFIX): changed files only."""
    result = api.push(
        repository,
        destination,
        endpoint_url=endpoint_url,
        dry_run=dry_run,
        allow_directory_env=allow_directory_env,
        jobs=jobs,
        progress=progress_for(quiet, as_json, "push"),
    )
    if as_json:
        emit_json(result.to_dict())
        return
    warn(result.warnings)
    verb = "would upload" if result.dry_run else "uploaded"
    if result.dry_run:
        for relative in result.uploaded:
            click.echo(f"{verb} {relative}")
    for key in result.stale:
        click.echo(f"not in the repository (left in place): {key}")
    click.echo(
        f"{result.destination}: {verb} {len(result.uploaded)} file(s), {result.bytes_uploaded / 1e6:.1f} MB; "
        f"{result.unchanged} unchanged; {len(result.skipped)} left out (backups, sidecars, __pycache__) "
        f"in {result.seconds:.1f}s"
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
