"""`stubforge build`: one verified, cached stub per (release, Python, arch, GPU, pybind11, boost)."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stubforge import __version__
from stubforge.core import cache, pythons, releases
from stubforge.core.targets import Target, as_target
from stubforge.errors import BuildError
from stubforge.progress import QUIET, Progress
from stubforge.stubs import cross, cuda, reproducible, upstream
from stubforge.stubs import probe as verify
from stubforge.stubs import sources as sources_mod
from stubforge.triton import stubinfo

MANIFEST_SCHEMA = 1
MODES = ("auto", "unity", "plain")


@dataclass
class BuildOptions:
    triton: releases.Release | str = releases.DEFAULT_TRITON
    gpu: bool = False
    pybind11: str | None = None
    source: Path | None = None
    boost: Path | None = None
    jobs: int = 0  # 0: all cores
    force: bool = False
    mode: str = "auto"
    cmake_args: tuple[str, ...] = ()  # extra -D options, appended last (they win)
    target: Target | None = (
        None  # None: this machine; a target with a sysroot is a cross build (stubs/cross.py)
    )
    cuda: Path | None = None  # --cuda: the toolkit root for a GPU build (None: found, stubs/cuda.py)
    cuda_arch: str | None = None  # --cuda-arch: CUDA_ARCHITECTURES for kernel_library_new (None: intersected)


@dataclass
class BuildResult:
    key: str
    stub: Path
    manifest: dict[str, Any]
    cache_hit: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stub": str(self.stub),
            "cache_hit": self.cache_hit,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "manifest": self.manifest,
        }


def artifact_key(
    branch: str,
    interp: pythons.Interpreter,
    gpu: bool,
    pybind11: str,
    boost: str,
    arch: str | None = None,
    cmake_args: tuple[str, ...] = (),
    gpu_plan: cuda.GpuPlan | None = None,
) -> str:
    major, minor, _ = interp.version_tuple
    arch = arch or platform.machine()
    kind = _gpu_kind(gpu, gpu_plan)
    key = f"{branch}-cp{major}{minor}-{arch}-{kind}-pybind11_{pybind11}-boost_{boost}"
    if cmake_args:
        # Extra CMake options make another binary: give it its own key.
        key += "-x" + hashlib.sha256("\0".join(cmake_args).encode()).hexdigest()[:10]
    return key


def _gpu_kind(gpu: bool, gpu_plan: cuda.GpuPlan | None) -> str:
    """'cpu', or 'gpu-cuda13-<digest of the architectures>': stubs of two CUDA majors need different runtimes,
    and two architecture lists are different binaries."""
    if not gpu:
        return "cpu"
    if gpu_plan is None:
        return "gpu"
    archs = ";".join(gpu_plan.architectures) or "default"
    return f"gpu-cuda{gpu_plan.toolkit.major}-" + hashlib.sha256(archs.encode()).hexdigest()[:8]


def numpy2_warning(interp: pythons.Interpreter, pybind11: str) -> str | None:
    """pybind11 < 2.12 stubs return wrong shapes with numpy 2 (docs/triton-behaviour.md: "Building the stub
    offline, and pins")."""
    pyb = tuple(int(p) for p in pybind11.split(".")[:2])
    needs_numpy2 = interp.version_tuple[:2] >= (3, 13)
    has_numpy2 = (
        interp.numpy is not None and interp.numpy.split(".")[0].isdigit() and int(interp.numpy[0]) >= 2
    )
    if needs_numpy2 and pyb < (2, 13):
        return (
            f"Python {interp.minor} only has numpy 2, and pybind11 {pybind11} stubs answer every request with "
            "'output tensor shape does not match size of output': build with --pybind11 2.13.6"
        )
    if has_numpy2 and pyb < (2, 12):
        return (
            f"{interp.executable} has numpy {interp.numpy}; stubs built with pybind11 {pybind11} return wrong "
            "shapes with numpy 2: pin numpy<2 in the model's environment or build with --pybind11 2.12.0"
        )
    return None


def _unity_first(mode: str, release: releases.Release) -> bool:
    if mode == "unity":
        return True
    if mode == "plain":
        return False
    return release.unity_proven


def build_one(
    python: str | pythons.Interpreter,
    options: BuildOptions,
    progress: Progress = QUIET,
) -> BuildResult:
    started = time.monotonic()
    if options.mode not in MODES:
        raise BuildError(f"unknown build mode {options.mode!r}", hint=f"use one of {', '.join(MODES)}")
    target = as_target(options.target)
    crossing = cross.needed(target)
    if crossing:
        if isinstance(python, pythons.Interpreter):
            raise BuildError(
                "a cross build takes the target's Python version, not an interpreter of this machine",
                hint="pass the version, e.g. '3.11'",
            )
        cross_plan: cross.CrossBuild | None = cross.plan(target, python)
        assert cross_plan is not None
        interp = cross_plan.interpreter
    else:
        cross_plan = None
        interp = (
            python
            if isinstance(python, pythons.Interpreter)
            else pythons.resolve(python, require_buildable=True)
        )
        pythons.check_buildable(interp)
    report = progress.task(f"py{interp.minor}")  # timed from here: one Python's build
    srcs = sources_mod.resolve(
        options.triton, pybind11=options.pybind11, source=options.source, boost=options.boost
    )
    gpu_plan = _gpu_plan(options, srcs)
    if gpu_plan is not None:
        report.step("cuda", _describe_gpu(gpu_plan))
    key = artifact_key(
        srcs.release.branch,
        interp,
        options.gpu,
        srcs.pybind11.version,
        srcs.boost.version,
        arch=target.arch,
        cmake_args=options.cmake_args,
        gpu_plan=gpu_plan,
    )
    if cross_plan is not None:
        # Another sysroot (another glibc or Python patch level) makes another binary.
        key += f"-sysroot_{cross_plan.identity()}"
    final_dir = cache.stubs_dir() / key
    warnings = list(srcs.warnings)
    if gpu_plan is not None and gpu_plan.dropped:
        warnings.append(
            f"CUDA {gpu_plan.toolkit.version} cannot compile {';'.join(gpu_plan.dropped)} from the release's "
            f"list: the stub's kernels are built for {';'.join(gpu_plan.architectures)} "
            "(docs/build.md, GPU stubs)"
        )
    warning = numpy2_warning(interp, srcs.pybind11.version)
    if warning:
        warnings.append(warning)

    with cache.locked(
        key, on_wait=lambda: report.step("wait", f"another stubforge process is building {key}")
    ):
        _remove_stale_build_dirs(key)
        fingerprint = srcs.fingerprint()
        cached = _cached_manifest(final_dir)
        if not options.force and cached is not None:
            if cached.get("sources_fingerprint") == fingerprint:
                return BuildResult(
                    key, final_dir / cache.STUB_NAME, cached, True, time.monotonic() - started, warnings
                )
            report.step("rebuild", "the cached stub was built from other sources (re-import or --source)")
        manifest = _build_and_store(
            interp, options, srcs, key, final_dir, report, fingerprint, gpu_plan, cross_plan
        )
    skipped = (manifest.get("probe") or {}).get("skipped")
    if skipped:
        warnings.append(f"the stub's probe was not run: {skipped}")
    for use in manifest["inputs"]["date_time_macros"]:
        warnings.append(
            f"{use} is compiled in; SOURCE_DATE_EPOCH pins it (docs/build.md, Reproducible builds)"
        )
    return BuildResult(
        key, final_dir / cache.STUB_NAME, manifest, False, time.monotonic() - started, warnings
    )


def _gpu_plan(options: BuildOptions, srcs: sources_mod.SourceSet) -> cuda.GpuPlan | None:
    if not options.gpu:
        if options.cuda is not None or options.cuda_arch is not None:
            raise cuda.CudaOptionError(
                "--cuda and --cuda-arch are for GPU stubs", hint="add --gpu, or drop them"
            )
        return None
    target_arch = as_target(options.target).arch
    if target_arch != platform.machine():
        # A Jetson GPU stub needs the board's CUDA in the sysroot and a cross nvcc (docs/build.md, GPU stubs).
        raise cuda.CudaOptionError(
            f"a GPU stub for {target_arch} cannot be built on {platform.machine()} yet",
            hint="build it on the board itself (JetPack ships nvcc), or build a CPU stub for it",
        )
    return cuda.plan(Path(srcs.backend.path), options.cuda, options.cuda_arch)


def _describe_gpu(gpu_plan: cuda.GpuPlan) -> str:
    archs = ";".join(gpu_plan.architectures) or "the release's own"
    return f"CUDA {gpu_plan.toolkit.version} at {gpu_plan.toolkit.root}, architectures {archs}"


def _build_dir(key: str) -> Path:
    """The key's build tree: one fixed path per artifact (not a random one), so that no build differs from the
    next by where it ran. The key's lock makes it exclusive."""
    return cache.builds_dir() / key


def _remove_stale_build_dirs(key: str) -> None:
    """Build trees of this key left by a killed process (we hold the key's lock, so none is in use); `key.*`
    are the random names of earlier stubforge versions."""
    for stale in [_build_dir(key), *cache.builds_dir().glob(f"{key}.*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _cached_manifest(artifact: Path) -> dict[str, Any] | None:
    """The manifest of a complete artifact (stub and manifest both there), else None."""
    stub = artifact / cache.STUB_NAME
    return stubinfo.read_manifest(stub) if stub.is_file() else None


def _build_and_store(
    interp: pythons.Interpreter,
    options: BuildOptions,
    srcs: sources_mod.SourceSet,
    key: str,
    final_dir: Path,
    report: Progress,
    fingerprint: str,
    gpu_plan: cuda.GpuPlan | None = None,
    cross_plan: cross.CrossBuild | None = None,
) -> dict[str, Any]:
    started = time.monotonic()
    cmake_tool = upstream.find_cmake(srcs.pins.cmake_minimum)
    ninja = upstream.find_ninja()
    jobs = options.jobs or os.cpu_count() or 2
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    log_path = cache.logs_dir() / f"{key}-{stamp}-{os.getpid()}.log"
    attempts: list[dict[str, Any]] = []
    modes = ["unity", "plain"] if _unity_first(options.mode, srcs.release) else ["plain"]
    result: upstream.CompileResult | None = None
    for mode in modes:
        build_dir = _build_dir(key)
        shutil.rmtree(build_dir, ignore_errors=True)  # a failed unity attempt's tree
        build_dir.mkdir(parents=True)
        try:
            plan = upstream.Plan(
                sources=srcs,
                interpreter=interp,
                build_dir=build_dir,
                gpu=options.gpu,
                unity=mode == "unity",
                jobs=jobs,
                cmake=cmake_tool,
                ninja=ninja,
                log_path=log_path,
                extra_args=list(options.cmake_args),
                gpu_plan=gpu_plan,
                cross=cross_plan,
            )
            report.step("mode", mode)
            try:
                result = upstream.configure_and_build(plan, report)
            except upstream.CompileFailed as exc:
                attempts.append({"mode": mode, "ok": False, "error": exc.message})
                if mode == "unity" and options.mode == "auto":
                    report.step("fallback", "unity build failed to compile; building plain")
                    continue
                raise
            attempts.append({"mode": mode, "ok": True})
            built = build_dir / upstream.STUB_OUTPUT
            if not built.is_file():
                raise BuildError(
                    f"the build finished but {built} does not exist", hint=f"see the log {log_path}"
                )
            report.step("verify")
            verify_started = time.monotonic()
            label = f"the stub built for Python {interp.version}"
            try:
                if cross_plan is not None:
                    verified = verify.verify_for_target(
                        built, interp, cross_plan.target, cross_plan.lib_dirs(), label=label
                    )
                    skipped = verified["probe"].get("skipped")  # type: ignore[attr-defined]
                    if skipped:
                        report.step("probe", f"skipped: {skipped}")
                else:
                    verified = verify.verify(
                        built,
                        interp,
                        label=label,
                        # A GPU stub NEEDs the toolkit's libcudart, which need not be in the library cache.
                        library_path=gpu_plan.toolkit.library_dirs() if gpu_plan is not None else (),
                    )
            except BuildError as exc:
                exc.hint = f"{exc.hint} (build log: {log_path})"
                raise
            verify_s = time.monotonic() - verify_started
            manifest = _manifest(
                interp, options, srcs, key, plan, result, verified, mode, attempts, log_path, jobs
            )
            manifest["sources_fingerprint"] = fingerprint
            manifest["cuda"] = _cuda_record(gpu_plan, manifest["elf"]["needed"])
            manifest["probe"] = verified["probe"]
            if cross_plan is not None:
                manifest["cross"] = {**cross_plan.to_dict(), "floors_checked": verified["floors_checked"]}
            manifest["inputs"] = _recorded_inputs(interp, srcs, plan, result, fingerprint)
            manifest["timings"] = {
                "configure_s": round(result.configure_s, 2),
                "build_s": round(result.build_s, 2),
                "verify_s": round(verify_s, 2),
                "total_s": round(time.monotonic() - started, 2),
            }
            with cache.staging_dir(final_dir) as staging:
                shutil.copy2(built, staging / cache.STUB_NAME)
                os.chmod(staging / cache.STUB_NAME, 0o755)
                manifest["sha256"] = cache.sha256_of(staging / cache.STUB_NAME)
                shutil.copyfile(log_path, staging / "build.log")
                cache.write_json_atomic(staging / cache.MANIFEST_NAME, manifest)
            report.step("done", f"{manifest['timings']['total_s']:.1f}s")
            return manifest
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    raise BuildError("no build mode succeeded", hint=f"see the log {log_path}")  # pragma: no cover


def _manifest(
    interp: pythons.Interpreter,
    options: BuildOptions,
    srcs: sources_mod.SourceSet,
    key: str,
    plan: upstream.Plan,
    result: upstream.CompileResult,
    verified: dict[str, Any],
    mode: str,
    attempts: list[dict[str, Any]],
    log_path: Path,
    jobs: int,
) -> dict[str, Any]:
    elf_info = verified["elf"]
    return {
        "schema": MANIFEST_SCHEMA,
        "key": key,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stubforge": __version__,
        "triton": {"release": srcs.release.branch, "server_version": srcs.release.triton_version},
        "python": {
            "version": interp.version,
            "minor": interp.minor,
            "executable": interp.executable,
            "libpython": interp.libpython,
            "numpy": interp.numpy,
        },
        "arch": as_target(options.target).arch,  # the stub's own architecture
        "build_host": platform.machine(),
        "target": as_target(options.target).to_dict(),
        "gpu": options.gpu,
        "pybind11": srcs.pybind11.version,
        "boost": {"version": srcs.boost.version, "form": srcs.boost.form, "origin": srcs.boost.origin},
        "sources": {
            i.kind: {"version": i.version, "commit": i.commit, "origin": i.origin} for i in srcs.inputs()
        },
        "build": {
            "mode": mode,
            "attempts": attempts,
            "cmake": {"path": plan.cmake.path, "version": plan.cmake.version},
            "generator": "Ninja" if plan.ninja else "Unix Makefiles",
            "jobs": jobs,
            "args": plan.configure_args()[1:],
            "compiler": result.compiler,
        },
        "elf": {"needed": elf_info["needed"], "runpath": elf_info["runpath"], "machine": elf_info["machine"]},
        "glibc_floor": elf_info["floors"],
        "log": str(log_path),
    }


def _cuda_record(gpu_plan: cuda.GpuPlan | None, needed: list[str]) -> dict[str, Any] | None:
    """The manifest's `cuda`: toolkit version, architectures and the runtime the stub really NEEDs."""
    if gpu_plan is None:
        return None
    record = gpu_plan.to_manifest()
    record["cudart"] = stubinfo.cudart_of(needed) or gpu_plan.toolkit.cudart
    return record


def _recorded_inputs(
    interp: pythons.Interpreter,
    srcs: sources_mod.SourceSet,
    plan: upstream.Plan,
    result: upstream.CompileResult,
    fingerprint: str,
) -> dict[str, Any]:
    """Everything that decides the stub's bytes, by digest and without cache paths: equal records from two
    builds mean equal stubs, and a diff of two records names what changed (docs/build.md, Reproducible builds)."""
    args = reproducible.normalized(plan.configure_args()[1:], plan.path_names())
    return {
        "sources": {
            i.kind: {"version": i.version, "form": i.form, "sha256": sources_mod.input_digest(i)}
            for i in srcs.inputs()
        },
        "sources_fingerprint": fingerprint,
        "python": {
            "version": interp.version,
            "executable": interp.executable,
            "headers_sha256": sources_mod.tree_digest(Path(interp.include_dir)),
        },
        "compiler": result.compiler_identity,
        "cmake": plan.cmake.version,
        "cmake_args": args,
        "cmake_args_sha256": reproducible.digest_of(args),
        "source_date_epoch": reproducible.build_environment(os.environ)["SOURCE_DATE_EPOCH"],
        "date_time_macros": result.date_time_macros,
    }


def list_stubs() -> list[dict[str, Any]]:
    return cache.stub_artifacts()
