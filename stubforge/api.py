"""The library behind every command: typed functions a program calls without click.

`stubforge/__init__.py` re-exports these (lazily); the CLI parses options, calls them and renders the result.
Each function imports its side only when called, so `import stubforge` stays cheap (no numpy, no posix_ipc).
Paths may be given as `str` or `os.PathLike`; results are the sides' own typed result classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from stubforge.core.releases import DEFAULT_TRITON
from stubforge.errors import StubforgeError
from stubforge.progress import QUIET, Progress

if TYPE_CHECKING:
    from stubforge.core.debian_sysroot import CreateResult as SysrootCreated
    from stubforge.core.leftovers import Leftover
    from stubforge.core.pythons import Interpreter
    from stubforge.core.sysroot import Sysroot
    from stubforge.core.targets import Target
    from stubforge.envs.packenv import PackResult
    from stubforge.server.check import CheckReport
    from stubforge.server.push import PushResult
    from stubforge.server.verify.session import VerifyReport
    from stubforge.server.verify.tritonserver import ServerInstall
    from stubforge.stubs.build import BuildResult
    from stubforge.triton.pbtxt import WriteResult

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "RunReport",
    "Verification",
    "build_stub",
    "build_stubs",
    "check",
    "clean",
    "create_sysroot",
    "describe_sysroot",
    "find_pythons",
    "pack_env",
    "plan_env_path",
    "push",
    "run_model",
    "server_install",
    "set_env_path",
    "verify",
]


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


# ------------------------------------------------------------------------------------------ build side


def find_pythons(extra: Sequence[PathLike] = ()) -> list[Interpreter]:
    """Every interpreter found on PATH and in pyenv, uv and conda, plus `extra` paths.

    An `extra` path that is not a usable interpreter raises `PythonNotFound`: a path the user named is never
    silently left out of the listing."""
    from stubforge.core import pythons

    for path in extra:
        pythons.describe(Path(path))
    return pythons.discover(extra=[str(p) for p in extra])


def build_stub(
    python: str | Interpreter,
    *,
    triton: str = DEFAULT_TRITON,
    gpu: bool = False,
    pybind11: str | None = None,
    source: PathLike | None = None,
    boost: PathLike | None = None,
    jobs: int = 0,
    mode: str = "auto",
    cmake_args: Sequence[str] = (),
    force: bool = False,
    arch: str | None = None,
    sysroot: PathLike | None = None,
    progress: Progress = QUIET,
    cuda: PathLike | None = None,
    cuda_arch: str | None = None,
) -> BuildResult:
    """Compile Triton's `triton_python_backend_stub` for one Python (a version such as "3.10", a tag such as
    "cp310", an interpreter path or an `Interpreter`), verify it and cache it; a cached stub is returned as is.

    triton: the release ("24.10", "r24.10" or "2.51.0") whose sources are in the source cache; pybind11: a
    cached pybind11 version instead of the release's pin; source/boost: a python_backend checkout or boost
    tree to build from; jobs: parallel compile jobs (0: all cores); mode: "auto", "unity" or "plain";
    cmake_args: extra -D options, applied last; force: rebuild even when cached. With gpu: cuda, the CUDA
    toolkit root (default: CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda); cuda_arch, the CUDA
    architectures of the backend's kernels (default: the release's list, less what the toolkit cannot compile).
    arch/sysroot: build for another machine (e.g. "aarch64") against its root filesystem with a cross compiler
    (docs/aarch64.md)."""
    return build_stubs(
        [python],
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
        progress=progress,
        cuda=cuda,
        cuda_arch=cuda_arch,
    )[0]


def build_stubs(
    pythons: Sequence[str | Interpreter],
    *,
    flavor: str = "upstream",
    triton: str = DEFAULT_TRITON,
    gpu: bool = False,
    pybind11: str | None = None,
    source: PathLike | None = None,
    boost: PathLike | None = None,
    jobs: int = 0,
    mode: str = "auto",
    cmake_args: Sequence[str] = (),
    force: bool = False,
    arch: str | None = None,
    sysroot: PathLike | None = None,
    progress: Progress = QUIET,
    cuda: PathLike | None = None,
    cuda_arch: str | None = None,
) -> list[BuildResult]:
    """`build_stub` for several Pythons, one after the other.

    Every interpreter is resolved before the first build: a typo in the third one must not cost two builds.
    flavor "runner" (or its old name "harness") builds stubforge's own stub for `load()`/`stubforge run`
    instead; it takes only `force`, `arch` and `sysroot` of the other options."""
    from stubforge.core import pythons as pythons_mod
    from stubforge.core.targets import Target
    from stubforge.stubs import build as stub_build
    from stubforge.stubs import cross

    target = Target.parse(arch, _path(sysroot))
    if cross.needed(target):
        # The target's Pythons are the sysroot's: checked by the build itself, before it compiles.
        interps: list[str | Interpreter] = [p if isinstance(p, str) else p.minor for p in pythons]
        for spec in interps:
            cross.plan(target, str(spec), "c" if flavor in ("runner", "harness") else "c++")
    else:
        interps = [
            p if isinstance(p, pythons_mod.Interpreter) else pythons_mod.resolve(p, require_buildable=True)
            for p in pythons
        ]
    if flavor in ("runner", "harness"):
        from stubforge.stubs import runner_stub

        return [runner_stub.build_runner_stub(interp, force=force, target=target) for interp in interps]
    if flavor != "upstream":
        raise StubforgeError(f"unknown stub flavor {flavor!r}", hint="use upstream or runner")
    options = stub_build.BuildOptions(
        triton=triton,
        gpu=gpu,
        pybind11=pybind11,
        source=_path(source),
        boost=_path(boost),
        jobs=jobs,
        force=force,
        mode=mode,
        cmake_args=tuple(cmake_args),
        cuda=_path(cuda),
        cuda_arch=cuda_arch,
        target=target,
    )
    return [stub_build.build_one(interp, options, progress) for interp in interps]


# ------------------------------------------------------------------------------------------ env side


def pack_env(
    python: str | None = None,
    requirements: Sequence[str] = (),
    *,
    spec: PathLike | None = None,
    prefix: PathLike | None = None,
    conda_name: str | None = None,
    venv: PathLike | None = None,
    requirement_files: Sequence[PathLike] = (),
    pip_args: Sequence[str] = (),
    output: PathLike | None = None,
    directory: PathLike | None = None,
    prune: bool = True,
    triton: str = DEFAULT_TRITON,
    stub: PathLike | None = None,
    model_dir: PathLike | None = None,
    allow_host_path: bool = False,
    backup: bool = True,
    force: bool = False,
    arch: str | None = None,
    sysroot: PathLike | None = None,
    progress: Progress = QUIET,
) -> PackResult:
    """Create an execution environment for EXECUTION_ENV_PATH and write it as an archive or a directory.

        The env comes from a shared-library CPython (`python` plus pip `requirements`), a `spec` file, an existing
        conda env (`prefix` or `conda_name`) or a `venv`; numpy is added when missing (`numpy<2` where the `stub`
        or the `triton` release needs it). Write `output` (NAME.tar.gz) or `directory`; with `model_dir`, pack into
        it (default MODEL/env.tar.gz) and point its config.pbtxt at the result (a backup is kept unless
        backup=False). The env is started the way Triton starts it before it is written. `arch` and `sysroot`: an env
    for another machine, its Python from the sysroot and its packages as wheels for that architecture (started
    under emulation when binfmt_misc can)."""
    from stubforge.core.targets import Target
    from stubforge.envs import packenv

    options = packenv.PackOptions(
        python=python,
        spec=_path(spec),
        prefix=_path(prefix),
        conda_name=conda_name,
        venv=_path(venv),
        requirements=list(requirements),
        requirement_files=[Path(p) for p in requirement_files],
        pip_args=list(pip_args),
        output=_path(output),
        directory=_path(directory),
        prune=prune,
        force=force,
        triton=triton,
        stub=_path(stub),
        model_dir=_path(model_dir),
        allow_host_path=allow_host_path,
        backup=backup,
        target=Target.parse(arch, _path(sysroot)) if arch is not None or sysroot is not None else None,
    )
    return packenv.pack_env(options, progress)


def plan_env_path(model_dir: PathLike, env: PathLike, *, allow_host_path: bool = False) -> str:
    """The EXECUTION_ENV_PATH value `set_env_path` would write for `env`, checked; nothing is written."""
    from stubforge.triton import envpath

    value = envpath.plan_env_path(Path(model_dir), Path(env), allow_host_path=allow_host_path)
    envpath.validate_env_path(Path(model_dir), value)
    return value


def set_env_path(
    model_dir: PathLike, env: PathLike, *, allow_host_path: bool = False, backup: bool = True
) -> WriteResult:
    """Point the model's config.pbtxt EXECUTION_ENV_PATH at an existing env (archive or directory).

    The value is `$$TRITON_MODEL_DIRECTORY/...` for an env inside the model directory; an env elsewhere needs
    allow_host_path=True (an absolute path). Only that parameter changes; config.pbtxt.bak keeps the old file."""
    from stubforge.triton import envpath

    return envpath.set_env_path(Path(model_dir), Path(env), allow_host_path=allow_host_path, backup=backup)


# ------------------------------------------------------------------------------------------ server side


def check(
    target: PathLike,
    *,
    triton: str = DEFAULT_TRITON,
    backends: PathLike | None = None,
    store: str = "local",
    arch: str | None = None,
    library_path: tuple[str, ...] = (),
) -> CheckReport:
    """Every known pitfall of a model repository (or one model directory), found from its files alone.

    backends: Triton's backend directory, to check backend stubs and their default envs too. store: where the
    server will read the repository ("local", "s3", "gcs", "azure"); object stores add their own rules. arch: the
    server's architecture (default: that of the backends' libtriton_python.so, else this machine's).
    library_path: directories on the server's LD_LIBRARY_PATH besides this process's (where a GPU stub's CUDA
    runtime may come from)."""
    from stubforge.core.targets import Target
    from stubforge.server.check import check as check_repository

    server = Target.parse(arch) if arch else None
    return check_repository(
        Path(target),
        triton=triton,
        backends=_path(backends),
        target=server,
        store=store,
        library_path=tuple(library_path),
    )


def push(
    repository: PathLike,
    destination: str,
    *,
    endpoint_url: str | None = None,
    dry_run: bool = False,
    allow_directory_env: bool = False,
    jobs: int = 8,
    progress: Progress = QUIET,
) -> PushResult:
    """Upload a model repository to `destination` (s3://BUCKET/PREFIX, or Triton's s3://HOST:PORT/BUCKET/PREFIX),
    only the files whose content differs from the objects there, `jobs` at a time. Backups, stubforge's sidecars
    and __pycache__ never travel; a directory env is refused unless allow_directory_env. Needs boto3
    (`pip install 'stubforge[s3]'`); credentials come from the standard AWS chain."""
    from stubforge.server import push as push_mod

    return push_mod.push(
        Path(repository),
        destination,
        endpoint_url=endpoint_url,
        dry_run=dry_run,
        allow_directory_env=allow_directory_env,
        jobs=jobs,
        progress=progress,
    )


def server_install(
    tritonserver: PathLike | None = None, *, pytriton: bool = False, arch: str | None = None
) -> ServerInstall:
    """The tritonserver to verify with: a binary (or the install root holding bin/tritonserver), or with
    pytriton=True the one inside an installed nvidia-pytriton. Exactly one of the two must be given. With
    pytriton=True and `arch` another architecture than this machine's, the nvidia-pytriton wheel for `arch` is
    downloaded once from PyPI into the cache."""
    from stubforge.core.targets import Target
    from stubforge.server.verify import pytriton_wheel
    from stubforge.server.verify import tritonserver as server

    if (tritonserver is not None) == pytriton:
        raise StubforgeError(
            "which server? pass exactly one of --tritonserver PATH and --pytriton",
            hint="e.g. --tritonserver /opt/tritonserver/bin/tritonserver",
        )
    if tritonserver is not None:
        return server.from_binary(Path(tritonserver))
    machine = Target.parse(arch)
    return server.find_pytriton() if machine.is_host else pytriton_wheel.server_for(machine.arch)


def _verify_target(install: ServerInstall, arch: str | None, sysroot: PathLike | None) -> Target:
    """The machine the server is built for: --arch, else the binary's own architecture; they must agree."""
    from stubforge.core import elf
    from stubforge.core.targets import Target
    from stubforge.envs.sysroot_python import elf_machine
    from stubforge.server.verify.tritonserver import ServerError

    machine_name = elf_machine(install.binary)  # None for a wrapper script: then it runs as this machine's
    built_for = (elf.arch_of_machine(machine_name) or machine_name) if machine_name else None
    machine = Target.parse(arch or built_for, _path(sysroot))
    if built_for is not None and built_for != machine.arch:
        raise ServerError(
            f"{install.binary} is built for {built_for}, but --arch says {machine.arch}",
            hint=f"drop --arch, or pass a tritonserver built for {machine.arch} (or --pytriton --arch {machine.arch})",
        )
    return machine


def _sysroot_environment(machine: Target) -> dict[str, str]:
    """With a sysroot, the server's stubs find its libraries, and its python3 comes first on PATH: a model
    without an env runs in the first python3 on the server's PATH, which must be the target's."""
    from stubforge.envs import sysroot_python

    if machine.sysroot is None:
        return {}
    dirs = [str(d) for d in sysroot_python.lib_dirs(machine.sysroot, machine.arch)]
    current = os.environ.get("LD_LIBRARY_PATH")
    bins = [str(machine.sysroot / "usr" / "bin"), os.environ.get("PATH", "/usr/bin:/bin")]
    return {
        "LD_LIBRARY_PATH": os.pathsep.join(dirs + ([current] if current else [])),
        "PATH": os.pathsep.join(bins),
    }


@dataclass
class Verification:
    """What `verify` found: the static check (run first) and what the real server did."""

    report: VerifyReport
    check: CheckReport | None  # None when the static check was skipped

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_dict(self) -> dict[str, Any]:
        data = self.report.to_dict()
        data["check"] = self.check.to_dict() if self.check is not None else None
        return data


def verify(
    repository: PathLike,
    *,
    tritonserver: PathLike | None = None,
    pytriton: bool = False,
    backends: PathLike | None = None,
    models: Sequence[str] = (),
    load_timeout: float = 120.0,
    request_timeout: float = 60.0,
    log_path: PathLike | None = None,
    precheck: bool = True,
    arch: str | None = None,
    sysroot: PathLike | None = None,
    progress: Progress = QUIET,
) -> Verification:
    """Load every model of `repository` (or only `models`) in a real tritonserver and send each one request.

    `repository` is a directory or an s3:// URL (Triton's `s3://HOST:PORT/BUCKET/PREFIX`, or `s3://BUCKET/PREFIX`
    on AWS) that the server reads directly with the AWS credentials this process finds.

    The server is a `tritonserver` binary or, with pytriton=True, nvidia-pytriton's. With precheck (default),
    the static `check` runs first, so a known pitfall is named even when the server cannot load the model.
    The server is always stopped and its shared-memory regions removed. `arch`: the server's architecture (a
    binary's own by default); another one than this machine's runs under emulation (qemu-user through
    binfmt_misc), checked before anything is downloaded. `sysroot`: the target's root filesystem, whose
    libraries and python3 the server's stubs get (models without an env need it)."""
    from stubforge.core import emulation
    from stubforge.core.cache import STUB_NAME
    from stubforge.core.targets import Target
    from stubforge.server.verify import session
    from stubforge.triton import stores

    if pytriton and arch is not None:
        wanted = Target.parse(arch)
        emulation.require(wanted, f"the {wanted.arch} tritonserver of nvidia-pytriton")
    install = server_install(tritonserver, pytriton=pytriton, arch=arch)
    machine = _verify_target(install, arch, sysroot)
    served: Path | stores.S3Location
    found = None
    if isinstance(repository, str) and stores.is_s3(repository):
        # The server reads the store itself; the static check needs the files (check --for s3 before push).
        served = stores.parse_s3(repository)
    else:
        served = Path(repository)
        if precheck and served.is_dir():
            progress.step("check", str(served))
            # Without --backends the server serves its own backends/: check against that one too.
            own = install.backends if install.backends.is_dir() else None
            if (
                own is not None
                and install.prebuilt_stubs is not None
                and not (own / "python" / STUB_NAME).is_file()
            ):
                own = None  # nvidia-pytriton's python/ has no stub: verify gives it the wheel's, as pytriton does
            # The check sees the server's library path: nvidia-pytriton's stubs need the wheel's renamed CUDA
            # runtime, which verify puts on the server's LD_LIBRARY_PATH as pytriton does.
            found = check(
                served,
                backends=backends if backends is not None else own,
                library_path=tuple(install.library_path),
            )
    report = session.verify(
        served,
        install,
        backends=_path(backends),
        models=tuple(models),
        load_timeout=load_timeout,
        request_timeout=request_timeout,
        log_path=_path(log_path),
        extra_env=_sysroot_environment(machine),
        target=machine,
        progress=progress,
    )
    return Verification(report, found)


# ------------------------------------------------------------------------------------------ runner side


@dataclass
class RunReport:
    """One `run_model` call: what ran (Python, numpy, process), its outputs and timings, as `to_dict()` gives
    them; `triton` is the last answer as tritonserver's HTTP endpoint would write it (a decoupled model's
    stream: the list of its responses), and `triton_json()` the text of `stubforge run --json`."""

    data: dict[str, Any]
    triton: Any = None
    error: StubforgeError | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def triton_json(self) -> bytes:
        """Triton's response body (or `{"error": ...}`), with run's own facts under the key "stubforge" last:
        `jq 'del(.stubforge)'` of it equals the same of `curl .../infer`; the text before the key is the body."""
        from stubforge.runner import kserve

        facts = {k: v for k, v in self.data.items() if k != "outputs"}
        if self.error is not None:
            facts["error"] = self.error.to_dict()
        body = self.triton if isinstance(self.triton, dict) else {"responses": self.triton}
        return kserve.dumps({**body, "stubforge": kserve.Raw(json.dumps(facts, default=str).encode())})


def _triton_answer(model: Any, result: Any) -> Any:
    from stubforge.runner import kserve

    if isinstance(result, list):  # a decoupled stream: each response, the final flag as Triton's parameter
        return [
            {
                **(
                    kserve.error(item.error)
                    if item.error is not None
                    else kserve.response(model.deployment.name, model.deployment.version, item.outputs)
                ),
                "parameters": {"triton_final_response": item.final},
            }
            for item in result
        ]
    return kserve.response(model.deployment.name, model.deployment.version, result)


def run_model(
    model_dir: PathLike,
    inputs: Sequence[str] = (),
    *,
    requests: int = 1,
    python: str | None = None,
    triton: str = DEFAULT_TRITON,
    backends: PathLike | None = None,
    backend_config: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
    execute_timeout: float | None = None,
    output_dir: PathLike | None = None,
    auto_complete: bool = True,
    max_env_size: int | str | None = None,
    runner_stub: PathLike | None = None,
    keep_errors: bool = False,
) -> RunReport:
    """Run a model.py as Triton's Python backend would, without a server: load it, send `requests` identical
    requests built from `inputs` ("NAME=FILE.npy" or "NAME=JSON", typed by the config) and report the last
    answer (a decoupled model's responses as NAME[i]); with output_dir, each output is saved as NAME.npy.
    `runner_stub`: the runner's stub built for the env's architecture (an aarch64 env runs under emulation).

    keep_errors: a failed request (or a failed initialize) does not raise; the report carries the error and
    Triton's answer for it (`{"error": ...}`)."""
    if requests < 1:
        raise StubforgeError(f"--requests {requests} must be at least 1", hint="e.g. --requests 10")
    from stubforge.envs import archive
    from stubforge.runner import api as runner_api
    from stubforge.runner import inputs as run_inputs
    from stubforge.runner import kserve
    from stubforge.runner.launcher import envmanager

    if max_env_size is not None:
        # One manager per process, as Triton's per backend: the limit applies to every archive it extracts.
        envmanager.shared().max_env_bytes = (
            archive.parse_size(max_env_size) if isinstance(max_env_size, str) else int(max_env_size)
        )

    try:
        model = runner_api.load(
            Path(model_dir),
            python=python,
            triton=triton,
            backends=_path(backends),
            backend_config=dict(backend_config or {}),
            startup_timeout=startup_timeout,
            execute_timeout=execute_timeout,
            auto_complete=auto_complete,
            runner_stub=_path(runner_stub),
        )
    except StubforgeError as exc:
        status = getattr(exc, "status", None)
        if not keep_errors or status is None:
            raise
        return RunReport({"model": Path(model_dir).name}, kserve.error(status), exc)
    with model:
        tensors = run_inputs.parse(tuple(inputs), model.deployment.config)
        outputs: dict[str, Any] = {}
        answer: Any = None
        failure: StubforgeError | None = None
        for _ in range(requests):
            try:
                if model.decoupled:
                    stream = list(model.stream(tensors))
                    answer = _triton_answer(model, stream)
                    outputs = run_inputs.flatten_stream([item.outputs for item in stream if item.outputs])
                    errors = [item.error for item in stream if item.error is not None]
                    if errors:
                        raise outcomes_error(model, errors[0])
                else:
                    outputs = model.infer(tensors)
                    answer = _triton_answer(model, outputs)
            except StubforgeError as exc:
                status = getattr(exc, "status", None)
                if not keep_errors or status is None:
                    raise
                failure = exc
                if not model.decoupled:
                    answer = kserve.error(status)
                outputs = {}
        written = run_inputs.save(outputs, Path(output_dir)) if output_dir is not None else {}
        return RunReport(run_inputs.report(model, outputs, written), answer, failure)


def outcomes_error(model: Any, status: Any) -> StubforgeError:
    from stubforge.runner import outcomes

    return outcomes.model_error(
        model.deployment.name, status, hint="the model sent InferenceResponse(error=...)"
    )


def clean(*, dry_run: bool = False, triton: bool = True) -> list[Leftover]:
    """Remove what runs left on disk: the runner's env extractions whose process is gone, and (triton=True)
    Triton's /tmp/python_env_* and /tmp/folderXXXXXX copies that no running process uses. dry_run lists only."""
    from stubforge.core import leftovers

    return leftovers.clean(dry_run=dry_run, triton=triton)


def create_sysroot(
    directory: PathLike,
    *,
    arch: str = "aarch64",
    python: str = "3.11",
    numpy: bool = False,
    packages: Sequence[str] = (),
    force: bool = False,
    progress: Progress = QUIET,
) -> SysrootCreated:
    """Make `directory` a root filesystem for `arch` from Debian's packages: python<python>, its libpython and
    headers, zlib and libarchive (what a stub links), `numpy` adds python3-numpy, `packages` any others. The debs
    are cached, so the same request is offline the second time; only the host Debian release's Pythons exist
    (3.11 on bookworm). Returns what was made, with `sysroot` as `describe_sysroot` reads it."""
    from stubforge.core import debian_sysroot

    return debian_sysroot.create(
        Path(directory), arch, python, numpy, tuple(packages), force=force, progress=progress
    )


def describe_sysroot(directory: PathLike, *, arch: str | None = None) -> Sysroot:
    """A target root filesystem (made by `create_sysroot`, or a Jetson/Armbian rootfs copied from the board):
    its architecture and glibc from its libc, and the Pythons a stub can embed (libpython + headers)."""
    from stubforge.core import sysroot

    return sysroot.describe(Path(directory), arch)
