"""Build side commands: pythons, sources fetch|import|list, build, stubs (and stubs import)."""

from __future__ import annotations

from pathlib import Path

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
from stubforge.core import cache
from stubforge.core.releases import DEFAULT_TRITON
from stubforge.stubs import build as stub_build
from stubforge.stubs import sources
from stubforge.triton import stubinfo

RELEASE_HELP = "Release: 24.10, r24.10 or 2.51.0."


@cli.command("pythons")
@click.option("--python", "extra", multiple=True, help="Also describe this interpreter (path).")
@json_option
@handle_errors
def pythons_cmd(extra: tuple[str, ...], as_json: bool) -> None:
    """List every interpreter found (PATH, pyenv, uv, conda) and what a stub build needs of it."""
    found = api.find_pythons(extra)
    if as_json:
        emit_json([i.to_dict() for i in found])
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


@sources_group.command("fetch")
@triton_option(RELEASE_HELP, required=True)
@click.option("--org-url", default=sources.TRITON_ORG, show_default=True, help="Base URL of Triton's repos.")
@click.option("--mirror", help="Boost archive mirror: base URL, or a template with {version} and {file}.")
@click.option("--archive", type=click.Path(path_type=Path), help="Use this local boost tarball.")
@click.option("--no-boost", is_flag=True, help="Skip boost (build with a local header tree instead).")
@click.option("--pybind11", "extra_pybind11", multiple=True, help="Also fetch this pybind11 version.")
@quiet_option
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
    stored = sources.fetch_sources(
        triton,
        org_url=org_url,
        mirror=mirror,
        archive=archive,
        skip_boost=no_boost,
        extra_pybind11=extra_pybind11,
        progress=progress_for(quiet, as_json, "sources"),
    )
    _show_inputs(stored, as_json)


@sources_group.command("import")
@triton_option(RELEASE_HELP, required=True)
@click.option(
    "--from", "from_dir", required=True, type=click.Path(path_type=Path), help="Directory of checkouts."
)
@quiet_option
@json_option
@handle_errors
def sources_import(triton: str, from_dir: Path, quiet: bool, as_json: bool) -> None:
    """Store checkouts obtained elsewhere (air-gapped machines)."""
    stored = sources.import_sources(triton, from_dir, progress=progress_for(quiet, as_json, "sources"))
    _show_inputs(stored, as_json)


def _show_inputs(stored: list[sources.Input], as_json: bool) -> None:
    if as_json:
        emit_json([i.to_dict() for i in stored])
        return
    for i in stored:
        commit = f" {i.commit[:12]}" if i.commit else ""
        click.echo(f"{i.kind:<15} {i.version:<16} {i.form:<8}{commit}  {i.path}")


@sources_group.command("list")
@json_option
@handle_errors
def sources_list(as_json: bool) -> None:
    """Show what is cached per release and whether a build can start from it."""
    rows = sources.list_sources()
    libs = sources.cached_libraries()
    if as_json:
        emit_json({"releases": rows, "libraries": libs, "root": str(cache.sources_dir())})
        return
    click.echo(f"source cache: {cache.sources_dir()}")
    if not rows:
        click.echo(
            f"no releases cached; run `stubforge sources fetch --triton {DEFAULT_TRITON}` or `sources import`"
        )
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


@cli.command("build")
@click.option(
    "--python", "python_specs", multiple=True, required=True, help="3.10, 3.10.13, cp310 or a path."
)
@triton_option(RELEASE_HELP)
@click.option("--source", type=click.Path(path_type=Path), help="Build from this python_backend checkout.")
@click.option("--gpu/--no-gpu", default=False, show_default=True, help="TRITON_ENABLE_GPU (needs CUDA).")
@click.option(
    "--cuda",
    type=click.Path(path_type=Path),
    help="CUDA toolkit root for --gpu (default: CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda).",
)
@click.option(
    "--cuda-arch",
    help="CUDA architectures for --gpu, e.g. '75-real;80-real;90' (default: the release's, less unsupported).",
)
@click.option("--pybind11", help="Use this cached pybind11 version instead of the release's pin.")
@click.option("--boost", type=click.Path(path_type=Path), help="Boost header tree or tarball to use.")
@click.option("--jobs", "-j", type=int, default=0, help="Parallel compile jobs (default: all cores).")
@click.option("--mode", type=click.Choice(stub_build.MODES), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even when the artifact is cached.")
@click.option(
    "--cmake-arg", "cmake_args", multiple=True, help="Extra CMake option, e.g. -DCMAKE_CXX_COMPILER=g++-12."
)
@click.option(
    "--flavor",
    type=click.Choice(["upstream", "runner", "harness"]),
    default="upstream",
    show_default=True,
    help="upstream: Triton's stub from python_backend; runner: stubforge's own stub for `stubforge run` "
    "(harness: its old name).",
)
@click.option("--arch", help="Target architecture (aarch64, x86_64; default: this machine's).")
@click.option(
    "--sysroot",
    type=click.Path(path_type=Path),
    help="The target's root filesystem (cross build; see `stubforge sysroot create`).",
)
@quiet_option
@json_option
@handle_errors
def build_cmd(
    python_specs: tuple[str, ...],
    triton: str,
    source: Path | None,
    gpu: bool,
    cuda: Path | None,
    cuda_arch: str | None,
    pybind11: str | None,
    boost: Path | None,
    jobs: int,
    mode: str,
    force: bool,
    cmake_args: tuple[str, ...],
    flavor: str,
    arch: str | None,
    sysroot: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Compile triton_python_backend_stub for each --python, verify it and cache it (for another machine with
    --arch and --sysroot)."""
    results = api.build_stubs(
        python_specs,
        flavor=flavor,
        triton=triton,
        gpu=gpu,
        pybind11=pybind11,
        source=source,
        boost=boost,
        jobs=jobs,
        mode=mode,
        cmake_args=cmake_args,
        force=force,
        arch=arch,
        sysroot=sysroot,
        progress=progress_for(quiet, as_json),
        cuda=cuda,
        cuda_arch=cuda_arch,
    )
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    for result in results:
        warn(result.warnings)
        built = f"built ({result.manifest['build']['mode']})" if flavor == "upstream" else "built (runner)"
        how = "cached" if result.cache_hit else built
        click.echo(f"{result.stub}  {how} in {result.seconds:.2f}s  [{result.key}]")


# ------------------------------------------------------------------------------------------ stubs


@cli.group("stubs", invoke_without_command=True)
@json_option
@click.pass_context
@handle_errors
def stubs_cmd(ctx: click.Context, as_json: bool) -> None:
    """List cached stub artifacts (or import one: `stubs import FILE`)."""
    if ctx.invoked_subcommand is not None:
        return
    artifacts = stub_build.list_stubs()
    if as_json:
        emit_json(artifacts)
        return
    if not artifacts:
        click.echo(f"no stubs cached in {cache.stubs_dir()}; run `stubforge build --python 3.10`")
        return
    for a in artifacts:
        floors = " ".join(a.get("glibc_floor", {}).values())
        click.echo(
            f"{a['key']}  python {a['python']['version']}  {a['build']['mode']}  {floors}  "
            f"{stubinfo.gpu_summary(a)}\n    {a['path']}"
        )


@stubs_cmd.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@triton_option("The release the stub belongs to: 24.10, r24.10 or 2.51.0.", required=True)
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
        emit_json(result.to_dict())
        return
    how = "already cached" if result.cache_hit else "imported"
    click.echo(f"{result.stub}  {how}  [{result.key}]")
