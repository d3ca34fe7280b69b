"""Command line: parse options, call the library, render text or JSON. No logic lives here."""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stubforge import __version__
from stubforge.core import cache, pythons
from stubforge.errors import StubforgeError
from stubforge.stubs import build as stub_mod
from stubforge.stubs import sources as sources_mod

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def handle_errors(func: F) -> F:
    """Expected failures print `error:` and `hint:` and exit non-zero; -v adds the traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        verbose = bool(ctx.find_root().params.get("verbose"))
        as_json = bool(ctx.params.get("as_json"))
        try:
            return func(*args, **kwargs)
        except StubforgeError as exc:
            if as_json:
                _emit_json(exc.to_dict())
            else:
                click.echo(f"error: {exc.message}", err=True)
                if exc.details:
                    click.echo(exc.details, err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
            if verbose:
                traceback.print_exc()
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; nothing was cached", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and commands run.")
@click.version_option(__version__, prog_name="stubforge")
def cli(verbose: bool) -> None:
    """Build, install and test Triton python_backend stubs for any CPython."""


# ------------------------------------------------------------------------------------------ pythons


@cli.command("pythons")
@click.option("--python", "extra", multiple=True, help="Also describe this interpreter (path).")
@json_option
@handle_errors
def pythons_cmd(extra: tuple[str, ...], as_json: bool) -> None:
    """List every interpreter found (PATH, pyenv, uv, conda) and what a stub build needs of it."""
    for path in extra:
        pythons.describe(Path(path))  # a bad explicit path is an error, not a silent omission
    found = pythons.discover(extra=extra)
    if as_json:
        _emit_json([i.to_dict() for i in found])
        return
    if not found:
        click.echo("no Python interpreters found")
        return
    click.echo(f"{'version':<9} {'shared libpython':<56} {'headers':<7} {'numpy':<8} {'source':<8} path")
    for i in found:
        lib = i.libpython or ("no" if not i.shared else "missing")
        click.echo(
            f"{i.version:<9} {lib:<56} {'yes' if i.has_headers else 'no':<7} {i.numpy or '-':<8} "
            f"{i.source:<8} {i.executable}"
        )


# ------------------------------------------------------------------------------------------ sources


@cli.group("sources")
def sources_group() -> None:
    """Fetch, import and list the upstream inputs of a Triton release."""


def _progress_printer(quiet: bool) -> Callable[[str], None]:
    def show(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    return show


@sources_group.command("fetch")
@click.option("--triton", required=True, help="Release: 24.10, r24.10 or 2.51.0.")
@click.option(
    "--org-url", default=sources_mod.TRITON_ORG, show_default=True, help="Base URL of Triton's repos."
)
@click.option("--mirror", help="Boost archive mirror: base URL, or a template with {version} and {file}.")
@click.option("--archive", type=click.Path(path_type=Path), help="Use this local boost tarball.")
@click.option("--no-boost", is_flag=True, help="Skip boost (build with a local header tree instead).")
@click.option("--pybind11", "extra_pybind11", multiple=True, help="Also fetch this pybind11 version.")
@click.option("-q", "--quiet", is_flag=True)
@json_option
@handle_errors
def sources_fetch(
    triton: str,
    org_url: str,
    mirror: str | None,
    archive: Path | None,
    no_boost: bool,
    extra_pybind11: tuple[str, ...],
    quiet: bool,
    as_json: bool,
) -> None:
    """Clone python_backend, common, core, backend and the pinned libraries; download boost."""
    stored = sources_mod.fetch_sources(
        triton,
        org_url=org_url,
        mirror=mirror,
        archive=archive,
        skip_boost=no_boost,
        extra_pybind11=extra_pybind11,
        progress=_progress_printer(quiet or as_json),
    )
    _show_inputs(stored, as_json)


@sources_group.command("import")
@click.option("--triton", required=True, help="Release: 24.10, r24.10 or 2.51.0.")
@click.option(
    "--from", "from_dir", required=True, type=click.Path(path_type=Path), help="Directory of checkouts."
)
@click.option("-q", "--quiet", is_flag=True)
@json_option
@handle_errors
def sources_import(triton: str, from_dir: Path, quiet: bool, as_json: bool) -> None:
    """Store checkouts obtained elsewhere (air-gapped machines)."""
    stored = sources_mod.import_sources(triton, from_dir, progress=_progress_printer(quiet or as_json))
    _show_inputs(stored, as_json)


def _show_inputs(stored: list[sources_mod.Input], as_json: bool) -> None:
    if as_json:
        _emit_json([i.to_dict() for i in stored])
        return
    for i in stored:
        commit = f" {i.commit[:12]}" if i.commit else ""
        click.echo(f"{i.kind:<15} {i.version:<16} {i.form:<8}{commit}  {i.path}")


@sources_group.command("list")
@json_option
@handle_errors
def sources_list(as_json: bool) -> None:
    """Show what is cached per release and whether a build can start from it."""
    rows = sources_mod.list_sources()
    libs = sources_mod.cached_libraries()
    if as_json:
        _emit_json({"releases": rows, "libraries": libs, "root": str(cache.sources_dir())})
        return
    click.echo(f"source cache: {cache.sources_dir()}")
    if not rows:
        click.echo("no releases cached; run `stubforge sources fetch --triton 24.10` or `sources import`")
    for row in rows:
        state = "complete" if row["complete"] else f"incomplete: {row['missing']}"
        click.echo(f"{row['release']}: {state}")
        inputs = row["inputs"]
        assert isinstance(inputs, dict)
        for kind, data in inputs.items():
            if data is None:
                click.echo(f"  {kind:<15} missing")
            else:
                click.echo(f"  {kind:<15} {data['version']:<16} {data['form']:<8} {data['path']}")
    for kind, versions in libs.items():
        click.echo(f"{kind}: {', '.join(versions) if versions else '-'}")


# ------------------------------------------------------------------------------------------ build


class _BuildReporter:
    """Prints one line per step with the time since the build of this Python started."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.started = time.monotonic()
        self.last_compile = ""

    def __call__(self, step: str, detail: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        if step == "build":
            if detail == self.last_compile:
                return
            self.last_compile = detail
        click.echo(f"[{self.label} {elapsed:6.1f}s] {step} {detail}".rstrip(), err=True)


@cli.command("build")
@click.option(
    "--python", "python_specs", multiple=True, required=True, help="3.10, 3.10.13, cp310 or a path."
)
@click.option("--triton", default="24.10", show_default=True, help="Release: 24.10, r24.10 or 2.51.0.")
@click.option("--source", type=click.Path(path_type=Path), help="Build from this python_backend checkout.")
@click.option("--gpu/--no-gpu", default=False, show_default=True, help="TRITON_ENABLE_GPU (needs CUDA).")
@click.option("--pybind11", help="Use this cached pybind11 version instead of the release's pin.")
@click.option("--boost", type=click.Path(path_type=Path), help="Boost header tree or tarball to use.")
@click.option("--jobs", "-j", type=int, default=0, help="Parallel compile jobs (default: all cores).")
@click.option("--mode", type=click.Choice(stub_mod.MODES), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even when the artifact is cached.")
@click.option(
    "--cmake-arg", "cmake_args", multiple=True, help="Extra CMake option, e.g. -DCMAKE_CXX_COMPILER=g++-12."
)
@click.option(
    "--flavor",
    type=click.Choice(["upstream", "harness"]),
    default="upstream",
    show_default=True,
    help="upstream: Triton's stub from python_backend; harness: stubforge's own stub for `stubforge run`.",
)
@click.option("-q", "--quiet", is_flag=True)
@json_option
@handle_errors
def build_cmd(
    python_specs: tuple[str, ...],
    triton: str,
    source: Path | None,
    gpu: bool,
    pybind11: str | None,
    boost: Path | None,
    jobs: int,
    mode: str,
    force: bool,
    cmake_args: tuple[str, ...],
    flavor: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Compile triton_python_backend_stub for each --python, verify it and cache it."""
    if flavor == "harness":
        _build_harness(python_specs, force, as_json)
        return
    options = stub_mod.BuildOptions(
        triton=triton,
        gpu=gpu,
        pybind11=pybind11,
        source=source,
        boost=boost,
        jobs=jobs,
        force=force,
        mode=mode,
        cmake_args=cmake_args,
    )
    # Resolve every interpreter first: a typo in the third --python must not cost two builds.
    interps = [pythons.resolve(spec, require_buildable=True) for spec in python_specs]
    results = []
    for interp in interps:
        reporter = _BuildReporter(f"py{interp.minor}", quiet or as_json)
        result = stub_mod.build_one(interp, options, reporter)
        results.append(result)
        if not as_json:
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
            how = "cached" if result.cache_hit else f"built ({result.manifest['build']['mode']})"
            click.echo(f"{result.stub}  {how} in {result.seconds:.2f}s  [{result.key}]")
    if as_json:
        _emit_json([r.to_dict() for r in results])


def _build_harness(python_specs: tuple[str, ...], force: bool, as_json: bool) -> None:
    from stubforge.stubs import runner_stub as harness_build

    interps = [pythons.resolve(spec, require_buildable=True) for spec in python_specs]
    results = [harness_build.build_harness(interp, force=force) for interp in interps]
    if as_json:
        _emit_json([r.to_dict() for r in results])
        return
    for result in results:
        how = "cached" if result.cache_hit else "built (harness)"
        click.echo(f"{result.stub}  {how} in {result.seconds:.2f}s  [{result.key}]")


def _show_config_write(written: Any) -> None:
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
        value = envpath.plan_env_path(model_dir, env, allow_host_path=allow_host_path)
        envpath.validate_env_path(model_dir, value)
        if as_json:
            _emit_json({"key": envpath.EXECUTION_ENV_PATH, "value": value})
        else:
            click.echo(envpath.param_block(value), nl=False)
        return
    written = envpath.set_env_path(model_dir, env, allow_host_path=allow_host_path, backup=not no_backup)
    if as_json:
        _emit_json(written.to_dict())
        return
    _show_config_write(written)


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
@click.option("--prune", is_flag=True, help="Drop __pycache__, tests, headers and static libraries.")
@click.option(
    "--triton", default="24.10", show_default=True, help="Release the env runs under (numpy 2 rule)."
)
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
@click.option("-q", "--quiet", is_flag=True)
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
    quiet: bool,
    as_json: bool,
    packages: tuple[str, ...],
) -> None:
    """Create an execution environment for EXECUTION_ENV_PATH from a shared-library CPython.

    PACKAGES are pip requirements (numpy is added when missing)."""
    from stubforge.envs import packenv

    options = packenv.PackOptions(
        python=python_spec,
        spec=spec,
        prefix=prefix,
        conda_name=conda_name,
        venv=venv,
        requirements=list(packages),
        requirement_files=list(requirement_files),
        pip_args=list(pip_args),
        output=output,
        directory=directory,
        prune=prune,
        force=force,
        triton=triton,
        stub=stub,
        model_dir=model_dir,
        allow_host_path=allow_host_path,
        backup=not no_backup,
    )
    result = packenv.pack_env(options, progress=_progress_printer(quiet or as_json))
    if as_json:
        _emit_json(result.to_dict())
        return
    for warning in result.manifest.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    if result.config is not None:
        _show_config_write(result.config)
    m = result.manifest
    size = f"{m['size'] / 1e6:.1f} MB"
    click.echo(
        f"{result.path}  {result.kind}, Python {m['python']}, numpy {m['numpy']}, {size}, {m['seconds']}s"
    )


@cli.group("stubs", invoke_without_command=True)
@json_option
@click.pass_context
@handle_errors
def stubs_cmd(ctx: click.Context, as_json: bool) -> None:
    """List cached stub artifacts (or import one: `stubs import FILE`)."""
    if ctx.invoked_subcommand is not None:
        return
    artifacts = stub_mod.list_stubs()
    if as_json:
        _emit_json(artifacts)
        return
    if not artifacts:
        click.echo(f"no stubs cached in {cache.stubs_dir()}; run `stubforge build --python 3.10`")
        return
    for a in artifacts:
        floors = " ".join(a.get("glibc_floor", {}).values())
        click.echo(
            f"{a['key']}  python {a['python']['version']}  {a['build']['mode']}  {floors}\n    {a['path']}"
        )


@stubs_cmd.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--triton", required=True, help="The release the stub belongs to: 24.10, r24.10 or 2.51.0.")
@click.option("--python", "python_spec", help="Interpreter whose libpython probes the stub (default: found).")
@click.option("--pybind11", help="The pybind11 version it was built with, if known (decides numpy 2).")
@click.option("--library-path", multiple=True, help="Extra library dir for the probe (e.g. a CUDA runtime).")
@click.option("--force", is_flag=True, help="Import again even when cached.")
@json_option
@handle_errors
def stubs_import_cmd(
    file: Path,
    triton: str,
    python_spec: str | None,
    pybind11: str | None,
    library_path: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Verify a stub built elsewhere (e.g. nvidia-pytriton's) and add it to the artifact cache."""
    from stubforge.server import install

    result = install.import_stub(
        file, triton, python=python_spec, pybind11=pybind11, library_path=library_path, force=force
    )
    if as_json:
        _emit_json(result.to_dict())
        return
    how = "already cached" if result.cache_hit else "imported"
    click.echo(f"{result.stub}  {how}  [{result.key}]")


@cli.group("install")
def install_group() -> None:
    """Install stubs where Triton finds them."""


@install_group.command("model")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--python", "python_spec", help="Python of the stub (taken from the cache, built if needed).")
@click.option("--stub", type=click.Path(path_type=Path), help="Install this stub file instead.")
@click.option("--triton", default="24.10", show_default=True, help="Release of the cached stub to use.")
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
        _emit_json(result.to_dict())
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
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
@click.option("--triton", default="24.10", show_default=True, help="Release of the cached stub to use.")
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
        _emit_json(result.to_dict())
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
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
        _emit_json([b.to_dict() for b in found])
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
@click.option("--triton", default="24.10", show_default=True, help="The release the repository will run on.")
@click.option(
    "--backends",
    type=click.Path(path_type=Path),
    help="Triton's backend directory (checks backend stubs and envs).",
)
@json_option
@handle_errors
def check_cmd(target: Path, triton: str, backends: Path | None, as_json: bool) -> None:
    """Find the known pitfalls of a model repository (or one model) from its files, without a server."""
    from stubforge.server.check import checks as doctor

    report = doctor.check(target, triton=triton, backends=backends)
    if as_json:
        _emit_json(report.to_dict())
    else:
        _print_check(report)
    if report.errors:
        sys.exit(1)


def _print_check(report: Any) -> None:
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
    as_json: bool,
) -> None:
    """Load every model of REPOSITORY in a real tritonserver and send each one request."""
    from stubforge.server.verify import session as run
    from stubforge.server.verify import tritonserver as server

    if bool(server_path) == pytriton:
        raise StubforgeError(
            "which server? pass exactly one of --tritonserver PATH and --pytriton",
            hint="e.g. --tritonserver /opt/tritonserver/bin/tritonserver",
        )
    install = server.from_binary(server_path) if server_path else server.find_pytriton()
    from stubforge.server.check import checks as doctor

    # Static checks first: a known pitfall is named before the server is even started.
    found = doctor.check(repository, backends=backends) if repository.is_dir() else None
    if found is not None and (found.errors or found.warnings) and not as_json:
        _print_check(found)
    report = run.verify(
        repository,
        install,
        backends=backends,
        models=models,
        load_timeout=load_timeout,
        request_timeout=request_timeout,
        log_path=log_path,
    )
    if as_json:
        data = report.to_dict()
        data["check"] = found.to_dict() if found is not None else None
        _emit_json(data)
    else:
        _print_verify(report)
    if not report.ok:
        sys.exit(1)


def _print_verify(report: Any) -> None:
    click.echo(f"tritonserver {report.server_version or '?'}  {report.server}")
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


@cli.command("run")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=FILE.npy|JSON",
    help="An input tensor: a .npy file, or a JSON value typed by the config (e.g. INPUT0=[1,2,3]).",
)
@click.option("--requests", default=1, show_default=True, help="Send the request this many times.")
@click.option("--python", "python_spec", help="Python to run (default: from the model's stub or env).")
@click.option("--triton", default="24.10", show_default=True, help="Release whose launcher to imitate.")
@click.option("--backends", type=click.Path(path_type=Path), help="Backend dir (python_3_X backends, envs).")
@click.option(
    "--backend-config",
    "backend_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Python backend setting, e.g. shm-default-byte-size=4194304.",
)
@click.option(
    "--startup-timeout", default=30.0, show_default=True, help="Seconds for the stub and initialize."
)
@click.option("--execute-timeout", type=float, help="Seconds one execute may take (default: no limit).")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Write each output as NAME.npy here.")
@click.option(
    "--disable-auto-complete-config",
    "no_auto_complete",
    is_flag=True,
    help="As tritonserver's flag: auto_complete_config() is not called.",
)
@json_option
@handle_errors
def run_cmd(
    model_dir: Path,
    inputs: tuple[str, ...],
    requests: int,
    python_spec: str | None,
    triton: str,
    backends: Path | None,
    backend_config: tuple[str, ...],
    startup_timeout: float,
    execute_timeout: float | None,
    output_dir: Path | None,
    no_auto_complete: bool,
    as_json: bool,
) -> None:
    """Run MODEL_DIR's model.py as Triton's Python backend would, without a server."""
    from stubforge.runner import api as harness
    from stubforge.runner import inputs as runinputs

    config: dict[str, str] = {}
    for item in backend_config:
        key, sep, value = item.partition("=")
        if not sep:
            raise StubforgeError(
                f"--backend-config {item!r} is not KEY=VALUE", hint="e.g. shm-growth-byte-size=1048576"
            )
        config[key] = value
    if requests < 1:
        raise StubforgeError(f"--requests {requests} must be at least 1", hint="e.g. --requests 10")
    with harness.load(
        model_dir,
        python=python_spec,
        triton=triton,
        backends=backends,
        backend_config=config,
        startup_timeout=startup_timeout,
        execute_timeout=execute_timeout,
        auto_complete=not no_auto_complete,
    ) as model:
        tensors = runinputs.parse(inputs, model.deployment.config)
        outputs: dict[str, Any] = {}
        for _ in range(requests):
            result = model.infer(tensors)
            # A decoupled model answers with a stream: its responses' outputs are shown as NAME[i].
            outputs = (
                {
                    f"{name}[{i}]": array
                    for i, response in enumerate(result)
                    for name, array in response.items()
                }
                if isinstance(result, list)
                else result
            )
        written = runinputs.save(outputs, output_dir) if output_dir else {}
        report = runinputs.report(model, outputs, written)
    if as_json:
        _emit_json(report)
        return
    for line in report["stub_output"].splitlines():
        click.echo(f"[model output] {line}", err=True)
    for record in report["logs"]:
        click.echo(f"[model {record['level'].lower()}] {record['message']}", err=True)
    click.echo(
        f"{report['model']}: Python {report['python']} numpy {report['numpy']} "
        f"(pid {report['pid']}), loaded in {report['load_s']:.2f}s"
    )
    for name, out in report["outputs"].items():
        where = f"  -> {out['file']}" if out.get("file") else ""
        click.echo(f"  {name} {out['datatype']} {out['shape']}: {out['preview']}{where}")
    times = report["request_s"]
    if times:
        ordered = sorted(times)
        click.echo(
            f"{len(times)} request(s): median {ordered[len(ordered) // 2] * 1000:.2f} ms, "
            f"min {ordered[0] * 1000:.2f} ms"
        )


def _terminated(_signum: int, _frame: object) -> None:
    # SIGTERM (docker stop, kill) unwinds like Ctrl-C, so build trees and staging dirs are removed.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    cli(prog_name="stubforge")


if __name__ == "__main__":
    main()
