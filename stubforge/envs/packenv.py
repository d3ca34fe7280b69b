"""`stubforge pack-env`: create, validate and write an execution environment (archive or directory)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import errno
import json
import os
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stubforge import __version__
from stubforge.core import cache, elf, emulation, fsutil, pythons, releases
from stubforge.core.targets import Target, as_target
from stubforge.envs import condapack, create, cross, inspect, numpy2, pack, sysroot_python
from stubforge.envs import spec as spec_mod
from stubforge.envs.create import EnvError
from stubforge.progress import QUIET, Progress
from stubforge.triton import envpath, member_index, pbtxt, stubinfo

MANIFEST_SUFFIX = ".stubforge.json"  # beside an archive; inside a directory env as stubforge-env.json
DIR_MANIFEST = "stubforge-env.json"


@dataclass
class PackOptions:
    python: str | None = None  # from the spec when not given
    spec: Path | None = None
    prefix: Path | None = None  # an existing conda environment
    conda_name: str | None = None
    venv: Path | None = None  # a virtualenv/venv, made self-contained with its base interpreter
    conda_packages: list[str] = field(
        default_factory=list
    )  # from a spec: created with micromamba/mamba/conda
    requirements: list[str] = field(default_factory=list)  # pip requirement strings
    requirement_files: list[Path] = field(default_factory=list)
    pip_args: list[str] = field(default_factory=list)
    output: Path | None = None  # NAME.tar.gz
    directory: Path | None = None  # a directory env
    # Drop what a stub never loads (tests, static libraries, Windows executables, headers unless a package
    # compiles at run time); False keeps every file.
    prune: bool = True
    force: bool = False
    triton: releases.Release | str = releases.DEFAULT_TRITON
    target: Target | None = None  # the machine the env is for; None: this one. With a sysroot: its Python
    stub: Path | None = None  # the stub the env will run with: its pybind11 decides numpy 2
    model_dir: Path | None = (
        None  # write EXECUTION_ENV_PATH into its config.pbtxt (output defaults inside it)
    )
    allow_host_path: bool = False
    backup: bool = True


@dataclass
class PackResult:
    path: Path
    kind: str  # archive | directory
    manifest: dict[str, Any]
    config: pbtxt.WriteResult | None = None  # the config.pbtxt edit, with --model

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "manifest": self.manifest,
            "config": self.config.to_dict() if self.config else None,
        }


def _numpy2_rule(options: PackOptions) -> numpy2.Numpy2Rule:
    """Whether numpy 2 may be in the env: decided by the stub it will run with (--stub, else the stub installed
    in the --model directory), else by the release."""
    stub = options.stub
    if stub is None and options.model_dir is not None and (options.model_dir / cache.STUB_NAME).is_file():
        stub = options.model_dir / cache.STUB_NAME
    return numpy2.rule(stub, options.triton)


def _refuse_numpy2_early(
    rule: numpy2.Numpy2Rule, requirements: list[str], present: str | None = None
) -> None:
    """Refuse before copying Python or running pip when the env would certainly get numpy 2 and the stub
    cannot take it: a requirement that admits no numpy 1, or (`present`) a numpy 2 already in what is packed."""
    if rule.allowed:
        return
    demanded = numpy2.first_demanding_numpy2(requirements)
    if demanded is not None:
        what = f"the requirement {demanded!r} asks for numpy 2"
    elif present is not None and present.split(".")[0].isdigit() and int(present.split(".")[0]) >= 2:
        what = f"the environment has numpy {present}"
    else:
        return
    raise EnvError(
        f"{what}, but {rule.reason}: every request would fail with "
        "'output tensor shape does not match size of output' (refused before anything was copied or installed)",
        hint="ask for numpy<2 (or leave numpy out: numpy<2 is then added), or use a stub built with "
        "pybind11 >= 2.12 (stubforge build --pybind11 2.12.0, then install it in the model or pass --stub)",
    )


def _check_output(options: PackOptions) -> Path:
    if (options.output is None) == (options.directory is None):
        raise EnvError(
            "give exactly one of -o NAME.tar.gz and --dir DIR",
            hint="-o for an archive, --dir for a directory",
        )
    target = options.output or options.directory
    assert target is not None
    if options.output is not None:
        pack.check_archive_name(options.output)
    if target.exists() and not options.force:
        raise EnvError(f"{target} already exists", hint="pass --force to replace it")
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvError(
            f"cannot create the output directory {parent} ({exc.strerror})",
            hint="choose another output location",
        ) from exc
    if not os.access(parent, os.W_OK):
        raise EnvError(f"{parent} is not writable", hint="choose another output location")
    for req_file in options.requirement_files:
        if not req_file.is_file():
            raise EnvError(f"{req_file}: no such requirements file", hint="pass an existing file to -r")
    return target


def _apply_spec(options: PackOptions) -> PackOptions:
    if options.spec is None:
        if not options.python and options.stub is not None:
            return dataclasses.replace(options, python=_stub_python(options.stub))
        if not options.python:
            raise EnvError(
                "which Python? pass --python 3.X, --spec FILE or --stub FILE", hint="e.g. --python 3.8"
            )
        return options
    loaded = spec_mod.load(options.spec)
    if options.python and not _same_python(options.python, loaded.python):
        raise EnvError(
            f"--python {options.python} contradicts {options.spec} (python = {loaded.python!r})",
            hint="drop --python or change the spec",
        )
    return dataclasses.replace(
        options,
        python=options.python or loaded.python,
        requirements=[*loaded.pip, *options.requirements],
        conda_packages=list(loaded.conda),
    )


def _same_python(given: str, wanted: str) -> bool:
    """'3.8.18' satisfies a spec's '3.8' (and the other way round)."""
    return given == wanted or given.startswith(wanted + ".") or wanted.startswith(given + ".")


def pack_env(options: PackOptions, progress: Progress = QUIET) -> PackResult:
    """Create or pack the env; with model_dir, also point its config.pbtxt at the result."""
    # Absolute from here on: paths end up in scripts, manifests and config.pbtxt values.
    options = dataclasses.replace(
        options,
        output=options.output.absolute() if options.output else None,
        directory=options.directory.absolute() if options.directory else None,
        model_dir=options.model_dir.absolute() if options.model_dir else None,
    )
    model_dir = options.model_dir
    if model_dir is not None:
        if options.output is None and options.directory is None:
            options = dataclasses.replace(options, output=model_dir / "env.tar.gz")
        # Fail before a long pack: env outside the model dir, bad archive name, broken or duplicate config.
        target = options.output or options.directory
        assert target is not None
        envpath.plan_env_path(model_dir, target, allow_host_path=options.allow_host_path)
    result = _pack(options, progress)
    if options.model_dir is not None:
        result.config = envpath.set_env_path(
            options.model_dir, result.path, allow_host_path=options.allow_host_path, backup=options.backup
        )
    return result


def _pack(options: PackOptions, progress: Progress) -> PackResult:
    started = time.monotonic()
    machine = as_target(options.target)
    if not machine.is_host:
        _refuse_for_cross(options, machine)
    target = _check_output(options)
    if not machine.is_host:
        return _pack_cross(options, machine, target, started, progress)
    if options.prefix is not None or options.conda_name is not None:
        return _pack_conda(options, target, started, progress)
    venv_site: Path | None = None
    if options.venv is not None:
        interp, venv_site = _venv_base(options)
    else:
        options = _apply_spec(options)
        assert options.python is not None
        if options.conda_packages:
            return _pack_conda_spec(options, target, started, progress)
        interp = pythons.resolve(options.python, require_shared=True)
    if options.stub is not None:
        _check_stub_matches(options.stub, interp.libpython_soname, interp.version)
    rule = _numpy2_rule(options)
    requirements = list(options.requirements)
    names = inspect.requirement_names(requirements + _file_requirements(options.requirement_files))
    venv_numpy = _dist_version(venv_site, "numpy") if venv_site is not None else None
    _refuse_numpy2_early(rule, requirements + _file_requirements(options.requirement_files), venv_numpy)
    if "numpy" not in names and venv_numpy is None:
        # The backend utils import numpy; old stubs need numpy<2 (docs/triton-behaviour.md: "numpy 2 and
        # pybind11").
        requirements.append("numpy" if rule.allowed else "numpy<2")

    log = cache.logs_dir() / f"pack-env-{interp.minor}-{os.getpid()}-{int(time.time())}.log"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        env_dir = Path(tmp) / "env"
        env_dir.mkdir()
        progress.step("copy", f"Python {interp.version} from {interp.base_prefix}")
        # An archive is written from the scratch env and the scratch env removed: links will do, and
        # bytecode is not packed, so none is copied or compiled.
        archive = options.output is not None
        create.copy_interpreter(interp, env_dir, transient=archive)
        if venv_site is not None:
            progress.step("copy", f"site-packages of {options.venv}")
            create.copy_site_packages(venv_site, env_dir, interp)
        create.pip_install(
            env_dir,
            interp,
            requirements,
            options.requirement_files,
            options.pip_args,
            log,
            progress,
            compile_bytecode=not archive,
        )
        source = {"kind": "interpreter", "executable": interp.executable, "prefix": interp.base_prefix}
        if options.venv is not None:
            source = {"kind": "venv", "venv": str(options.venv.resolve()), "base_prefix": interp.base_prefix}
        return _finish(
            options,
            env_dir,
            source=source,
            expected_python=interp.version,
            requirements=requirements + _file_requirements(options.requirement_files),
            numpy_rule=rule,
            log=log,
            started=started,
            progress=progress,
        )


def _refuse_for_cross(options: PackOptions, machine: Target) -> None:
    """What an env for another machine cannot be made from (before any work)."""
    if options.prefix is not None or options.conda_name is not None or options.venv is not None:
        raise EnvError(
            f"--arch {machine.arch}/--sysroot make a new env from the sysroot's Python; "
            "--prefix, --name and --venv pack an environment of this machine",
            hint="drop --prefix/--name/--venv and give --python 3.X with PACKAGES or -r",
        )
    if machine.sysroot is None:
        raise EnvError(
            f"--arch {machine.arch} needs --sysroot DIR: the env's Python comes from the target's root filesystem",
            hint=sysroot_python.SYSROOT_HINT,
        )


def _pack_cross(
    options: PackOptions, machine: Target, target: Path, started: float, progress: Progress
) -> PackResult:
    """An env for another machine (or this one's sysroot): the sysroot's Python, the target's wheels; started
    under emulation to validate it when binfmt_misc runs the target's binaries."""
    options = _apply_spec(options)
    if options.conda_packages:
        raise EnvError(
            f"{options.spec} lists conda packages; an env for --arch {machine.arch} is made with pip wheels only",
            hint="move the packages to the spec's pip list",
        )
    assert options.python is not None
    found = sysroot_python.find(machine, options.python)
    if options.stub is not None:
        _check_stub_matches(options.stub, found.libpython.name, found.version)
        _check_stub_arch(options.stub, machine)
    rule = _numpy2_rule(options)
    requirements = list(options.requirements)
    all_requirements = requirements + _file_requirements(options.requirement_files)
    _refuse_numpy2_early(rule, all_requirements)
    if "numpy" not in inspect.requirement_names(all_requirements):
        requirements.append("numpy" if rule.allowed else "numpy<2")
    log = cache.logs_dir() / f"pack-env-{machine.arch}-{found.minor}-{os.getpid()}-{int(time.time())}.log"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        env_dir = Path(tmp) / "env"
        env_dir.mkdir()
        progress.step("copy", f"Python {found.version} ({machine.arch}) from {found.sysroot}")
        sysroot_python.copy_interpreter(found, env_dir)
        bundled = sysroot_python.bundle_libraries(found, env_dir)
        progress.step("bundle", f"{len(bundled)} libraries from the sysroot")
        cross.pip_install(
            env_dir, found, requirements, options.requirement_files, options.pip_args, log, progress
        )
        foreign = sysroot_python.foreign_binaries(env_dir, machine.arch)
        if foreign:
            raise EnvError(
                f"the env for {machine.arch} holds binaries of another architecture: {', '.join(foreign)}",
                hint="a wheel for the wrong platform was installed; check --pip-arg options and the log "
                f"({log})",
            )
        source: dict[str, Any] = {**found.to_dict(), "bundled_libraries": bundled}
        return _finish(
            options,
            env_dir,
            source=source,
            expected_python=found.version,
            requirements=requirements + _file_requirements(options.requirement_files),
            numpy_rule=rule,
            log=log,
            started=started,
            progress=progress,
            sysroot_python=found,
        )


def _check_stub_arch(stub: Path, machine: Target) -> None:
    arch = elf.read(stub).arch
    if arch != machine.arch:
        raise EnvError(
            f"--stub {stub} is built for {arch}, but the env is for {machine.arch}",
            hint=f"pass the stub built for {machine.arch} (stubforge build --arch {machine.arch} --sysroot DIR)",
        )


def _venv_base(options: PackOptions) -> tuple[pythons.Interpreter, Path]:
    """The venv's base interpreter (whose stdlib and libpython the env gets) and the venv's site-packages."""
    assert options.venv is not None
    if options.spec is not None:
        raise EnvError("--venv packs an existing venv; --spec creates a new env", hint="use one of them")
    venv = options.venv
    if not (venv / "pyvenv.cfg").is_file():
        raise EnvError(
            f"--venv {venv} is not a virtual environment (no pyvenv.cfg)",
            hint="pass the venv's directory; for a conda env use --prefix, for a plain Python use --python",
        )
    inside = pythons.describe(venv / "bin" / "python3", "explicit")
    if options.python and not (
        inside.version == options.python or inside.version.startswith(options.python + ".")
    ):
        raise EnvError(
            f"{venv} has Python {inside.version}, not {options.python}",
            hint="pick the venv of the stub's Python",
        )
    base = pythons.describe(Path(inside.base_prefix) / "bin" / f"python{inside.minor}", "explicit")
    site = venv / "lib" / f"python{inside.minor}" / "site-packages"
    if not site.is_dir():
        raise EnvError(f"{site}: no site-packages in the venv", hint="recreate the venv")
    editable = _editable_installs(site)
    if editable:
        raise EnvError(
            f"{venv} has editable installs ({', '.join(editable)}): their code stays outside the venv and "
            "would be missing from the env",
            hint="install them normally (`pip install .` instead of `pip install -e .`) and pack again",
        )
    return base, site


def _editable_installs(site: Path) -> list[str]:
    found = []
    for direct_url in sorted(site.glob("*.dist-info/direct_url.json")):
        try:
            data = json.loads(direct_url.read_text())
        except ValueError:
            continue
        if data.get("dir_info", {}).get("editable"):
            found.append(direct_url.parent.name.split("-")[0])
    found += [p.stem for p in sorted(site.glob("*.egg-link"))]
    return found


def _pack_conda_spec(options: PackOptions, target: Path, started: float, progress: Progress) -> PackResult:
    """A spec with conda packages: create the env with the conda-like tool, pip on top, then pack it."""
    assert options.python is not None
    tool = spec_mod.conda_tool()
    rule = _numpy2_rule(options)
    _refuse_numpy2_early(rule, [*options.requirements, *_file_requirements(options.requirement_files)])
    log = cache.logs_dir() / f"pack-env-conda-spec-{os.getpid()}-{int(time.time())}.log"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.create.", dir=target.parent) as tmp:
        prefix = Path(tmp) / "prefix"
        args = [tool, "create", "-y", "-p", str(prefix), f"python={options.python}", *options.conda_packages]
        progress.step(os.path.basename(tool), " ".join(args[1:]))
        create.run_logged(args, log, f"{os.path.basename(tool)} could not create the environment")
        pip_reqs = [*options.requirements, *_file_requirements(options.requirement_files)]
        if "numpy" not in inspect.requirement_names(pip_reqs + options.conda_packages):
            pip_reqs.append("numpy" if rule.allowed else "numpy<2")
        if pip_reqs:
            progress.step("pip install", " ".join(pip_reqs))
            create.run_logged(
                [str(prefix / "bin" / "python"), "-m", "pip", "install", *options.pip_args, *pip_reqs],
                log,
                "pip could not install into the conda environment",
                env=dict(os.environ, PYTHONNOUSERSITE="1"),
            )
        conda_options = dataclasses.replace(
            options, prefix=prefix, requirements=[], requirement_files=[], spec=None, conda_packages=[]
        )
        source = {"kind": "conda-spec", "spec": str(options.spec), "tool": tool}
        return _pack_conda(conda_options, target, started, progress, source=source)


def _pack_conda(
    options: PackOptions,
    target: Path,
    started: float,
    progress: Progress,
    source: dict[str, str] | None = None,
) -> PackResult:
    if options.requirements or options.requirement_files or options.spec:
        raise EnvError(
            "--prefix/--name pack an existing conda environment as it is",
            hint="install packages into it with conda or pip first, then pack it without -r/--spec/PACKAGES",
        )
    prefix = options.prefix or condapack.prefix_for_name(str(options.conda_name))
    condapack.check_prefix(prefix)
    version = condapack.python_version(prefix)
    if options.python and not (version == options.python or version.startswith(options.python + ".")):
        raise EnvError(
            f"{prefix} has Python {version}, not {options.python}",
            hint="pick the environment that matches the stub's Python, or drop --python",
        )
    if options.stub is not None:
        soname = f"libpython{'.'.join(version.split('.')[:2])}.so.1.0"
        _check_stub_matches(options.stub, soname, version)
    rule = _numpy2_rule(options)
    site_packages = sorted(prefix.glob("lib/python*/site-packages"))
    _refuse_numpy2_early(rule, [], _dist_version(site_packages[0], "numpy") if site_packages else None)
    log = cache.logs_dir() / f"pack-env-conda-{os.getpid()}-{int(time.time())}.log"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        env_dir = Path(tmp) / "env"
        progress.step("conda-pack", str(prefix))
        condapack.pack_to_directory(prefix, env_dir, log, bytecode=options.output is None)
        if not any(env_dir.glob("lib/python*/site-packages/numpy-*.dist-info")):
            # Into the packed copy, never into the user's environment.
            requirement = "numpy" if rule.allowed else "numpy<2"
            progress.step("pip install", f"{requirement} (the environment has no numpy)")
            create.run_logged(
                [str(env_dir / "bin" / "python"), "-m", "pip", "install", requirement],
                log,
                f"{prefix} has no numpy, and pip could not add it",
                env=create.launcher_env(env_dir, dict(os.environ, PYTHONNOUSERSITE="1")),
            )
            create.relocate_scripts(env_dir)
        return _finish(
            options,
            env_dir,
            source=source or {"kind": "conda", "prefix": str(prefix.resolve())},
            expected_python=version,
            requirements=[],
            numpy_rule=rule,
            log=log,
            started=started,
            progress=progress,
        )


def _finish(
    options: PackOptions,
    env_dir: Path,
    *,
    source: dict[str, str],
    expected_python: str,
    requirements: list[str],
    numpy_rule: numpy2.Numpy2Rule,
    log: Path,
    started: float,
    progress: Progress,
    sysroot_python: sysroot_python.SysrootPython | None = None,
) -> PackResult:
    """Prune, validate, write the archive or directory and its manifest. With `sysroot_python` (an env for
    another machine), the validating launch runs under emulation, or is replaced by static checks without it.
    An archive also gets the bytecode of what the validating launch imported."""
    with tempfile.TemporaryDirectory(prefix="stubforge-bytecode-") as scratch:
        bytecode_file = Path(scratch) / "bytecode"
        freed = 0
        if options.prune:
            compilers = pack.keeps_headers(env_dir)
            freed = pack.prune(env_dir, headers=not compilers)
            kept = f" (headers kept for {', '.join(compilers)})" if compilers else ""
            progress.step("pruned", f"{freed / 1e6:.1f} MB{kept}")
        machine = as_target(options.target)
        runs = emulation.probe(machine)
        progress.step("validate", "" if runs.native else runs.describe())
        # The archive is written while the env is validated: the validating launch writes nothing into the env
        # (its bytecode goes to a file of its own, packed last), and an env that fails validation loses only the
        # temporary archive.
        writer = _ArchiveWriter(env_dir, options.output) if options.output is not None else None
        try:
            report = _validate(
                options,
                env_dir,
                runs,
                expected_python,
                requirements,
                numpy_rule,
                sysroot_python,
                bytecode_file if writer is not None else None,
            )
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        if writer is not None:
            try:
                writer.add_bytecode(inspect.read_bytecode(bytecode_file))
            except BaseException:
                writer.discard()
                raise
        manifest: dict[str, Any] = {
            "schema": 1,
            "stubforge": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": report.version,
            "source": source,
            "packages": report.packages,
            "numpy": report.numpy,
            "requirements": requirements,
            "requirement_files": [str(p) for p in options.requirement_files],
            "triton": releases.normalize(options.triton),
            "target": machine.to_dict(),
            "validated": "started"
            if runs.native
            else ("started under emulation" if runs.available else "static"),
            "pruned_bytes": freed,
            "bytecode_modules": len(report.bytecode),
            "warnings": report.warnings,
            "log": str(log),
        }
        if options.output is not None:
            assert writer is not None
            progress.step("write", str(options.output))
            try:
                tmp = writer.result()
            except BaseException:  # Ctrl-C while waiting for the writer: it stops and removes its file
                writer.discard()
                raise
            try:
                pack.publish_archive(tmp, options.output, replace=options.force)
            except FileExistsError:
                raise _taken(options.output) from None
            finally:
                tmp.unlink(missing_ok=True)
            manifest["size"] = options.output.stat().st_size
            manifest["sha256"] = cache.sha256_of(options.output)
            member_index.keep(manifest["sha256"], writer.members)  # check, install, verify need not list it
            manifest["seconds"] = round(time.monotonic() - started, 2)
            cache.write_json_atomic(options.output.with_name(options.output.name + MANIFEST_SUFFIX), manifest)
            return PackResult(options.output, "archive", manifest)
        assert options.directory is not None
        manifest["size"] = pack.tree_size(env_dir)
        manifest["seconds"] = round(time.monotonic() - started, 2)
        cache.write_json_atomic(env_dir / DIR_MANIFEST, manifest)
        try:
            fsutil.publish(env_dir, options.directory, replace=options.force)
        except FileExistsError:
            raise _taken(options.directory) from None
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise _taken(options.directory) from None
            raise
        return PackResult(options.directory, "directory", manifest)


def _validate(
    options: PackOptions,
    env_dir: Path,
    runs: emulation.Emulation,
    expected_python: str,
    requirements: list[str],
    numpy_rule: numpy2.Numpy2Rule,
    sysroot_python: sysroot_python.SysrootPython | None,
    bytecode_file: Path | None,
) -> inspect.EnvReport:
    """The env started as Triton starts it (under emulation for another machine), or static checks when it
    cannot be started here. With `bytecode_file`, the launch leaves the .pyc of what it imported there."""
    if runs.available:
        return inspect.validate(
            env_dir,
            expected_python=expected_python,
            requirements=requirements,
            numpy2_ok=numpy_rule.allowed,
            numpy2_reason=numpy_rule.reason,
            stub_glibcxx=_stub_glibcxx(options.stub),
            timeout_factor=runs.timeout_factor,
            bytecode_file=bytecode_file,
        )
    else:
        assert sysroot_python is not None  # the host always runs its own binaries
        return cross.static_report(
            env_dir,
            sysroot_python,
            requirements=requirements,
            numpy2_ok=numpy_rule.allowed,
            numpy2_reason=numpy_rule.reason,
            why_not_started=f"{runs.reason}; {runs.hint}",
        )


class _ArchiveWriter:
    """pack.write_unpublished in a thread of its own; after the env's files it waits for add_bytecode."""

    def __init__(self, env_dir: Path, output: Path) -> None:
        self._cancel = threading.Event()
        self._bytecode_known = threading.Event()
        self._bytecode: dict[str, bytes] = {}
        self.members: list[tarfile.TarInfo] = []  # what was written, with offsets (once result() returned)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="stubforge-archive")
        self._future = pool.submit(
            pack.write_unpublished,
            env_dir,
            output,
            cancel=self._cancel,
            bytecode=self._wait_for_bytecode,
            written=self.members,
        )
        pool.shutdown(wait=False)

    def _wait_for_bytecode(self) -> dict[str, bytes]:
        self._bytecode_known.wait()
        if self._cancel.is_set():
            raise pack.Cancelled
        return self._bytecode

    def add_bytecode(self, files: dict[str, bytes]) -> None:
        """The .pyc files (path relative to the env -> bytes) that end the archive."""
        self._bytecode = files
        self._bytecode_known.set()

    def result(self) -> Path:
        return self._future.result()

    def discard(self) -> None:
        """Stop writing and remove what was written (waits for the thread: nothing is left behind)."""
        self._cancel.set()
        self._bytecode_known.set()
        try:
            tmp = self._future.result()
        except BaseException:  # cancelled or failed: write_unpublished removed its file
            return
        tmp.unlink(missing_ok=True)


def _taken(target: Path) -> EnvError:
    return EnvError(
        f"{target} already exists: it appeared while this env was being packed (another pack-env?)",
        hint="nothing was overwritten; pass --force to replace it, or choose another output",
    )


def _dist_version(site_packages: Path, name: str) -> str | None:
    """The version of an installed distribution, from its .dist-info directory name; None when absent."""
    for info in sorted(site_packages.glob(f"{name}-*.dist-info")):
        return info.name[len(name) + 1 : -len(".dist-info")]
    return None


def _file_requirements(files: list[Path]) -> list[str]:
    lines: list[str] = []
    for path in files:
        lines += [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def _check_stub_matches(stub: Path, soname: str | None, version: str) -> None:
    info = elf.read(stub)
    linked = [n for n in info.needed if n.startswith("libpython")]
    if soname not in info.needed:
        raise EnvError(
            f"--stub {stub} links {', '.join(linked) or 'no libpython'}, but the env would be Python {version}",
            hint="use an env of the stub's Python version",
        )


def _stub_python(stub: Path) -> str:
    """The X.Y the stub embeds: the Python of the env to make."""
    minor = stubinfo.python_of(stub)
    if minor:
        return minor
    raise EnvError(f"--stub {stub} links no libpython", hint="pass a triton_python_backend_stub")


def _stub_glibcxx(stub: Path | None) -> str | None:
    if stub is None:
        return None
    return elf.read(stub).floors.get("GLIBCXX")
