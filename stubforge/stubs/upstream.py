"""Drive CMake on python_backend: configure fully offline for one interpreter, build only the stub target.

Nothing upstream is edited: every input is a FETCHCONTENT_SOURCE_DIR_* override, boost comes in through the
project's own include hook or its URL variable, and unity builds are switched on from the command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stubforge.core.pythons import Interpreter
from stubforge.errors import BuildError
from stubforge.progress import QUIET, Progress
from stubforge.stubs import cuda, reproducible
from stubforge.stubs.cross import CROSS_CXX_FLAGS, CrossBuild
from stubforge.stubs.sources import SourceSet

STUB_TARGET = "triton-python-backend-stub"
STUB_OUTPUT = "triton_python_backend_stub"
CONFIGURE_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 2 * 3600.0
# CMake 4 refuses cmake_minimum_required() below 3.5, which pybind11 2.10 and dlpack 0.8 still declare.
POLICY_VERSION_MINIMUM = "3.5"
# Two translation units per batch keeps both cores busy on 2-core machines; a single batch (size 0)
# serialises the whole stub on one core (docs/triton-behaviour.md: "Building the stub offline, and pins": 16
# and 0 measured alike on 2 cores).
UNITY_BATCH_SIZE = 16


@dataclass(frozen=True)
class Tool:
    path: str
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", self.version)[:3])


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _cmake_version(path: str) -> str | None:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"cmake version (\d+\.\d+\.\d+)", proc.stdout)
    return match.group(1) if match else None


def cmake_candidates() -> list[str]:
    found: list[str] = []
    on_path = shutil.which("cmake")
    if on_path:
        found.append(on_path)
    try:
        import cmake as pypi_cmake  # the PyPI wheel, a dependency of stubforge

        found.append(str(Path(pypi_cmake.CMAKE_BIN_DIR) / "cmake"))
    except ImportError:
        pass
    found.append("/usr/bin/cmake")
    unique: list[str] = []
    for path in found:
        if os.path.exists(path) and os.path.realpath(path) not in {os.path.realpath(p) for p in unique}:
            unique.append(path)
    return unique


def find_cmake(minimum: str) -> Tool:
    """The first CMake that meets the release's minimum: PATH first, then the PyPI wheel."""
    seen: list[str] = []
    for path in cmake_candidates():
        version = _cmake_version(path)
        if version is None:
            continue
        seen.append(f"{path} ({version})")
        if _version_tuple(version) >= _version_tuple(minimum):
            return Tool(path, version)
    raise BuildError(
        f"no CMake >= {minimum} found" + (f"; found {', '.join(seen)}" if seen else ""),
        hint=f"pip install 'cmake>={minimum}' (the PyPI wheel works on Debian 12 and aarch64)",
    )


def find_ninja() -> str | None:
    try:
        import ninja as pypi_ninja

        candidate = Path(pypi_ninja.BIN_DIR) / "ninja"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("ninja")


@dataclass
class Plan:
    """One configure + build of the stub, fully described before anything runs."""

    sources: SourceSet
    interpreter: Interpreter
    build_dir: Path
    gpu: bool
    unity: bool
    jobs: int
    cmake: Tool
    ninja: str | None
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    gpu_plan: cuda.GpuPlan | None = None  # toolkit and architectures of a GPU build (stubs/cuda.py)
    # The user's CFLAGS/CXXFLAGS, which CMake would read itself if stubforge did not set CMAKE_<LANG>_FLAGS.
    env_cflags: str = field(default_factory=lambda: os.environ.get("CFLAGS", ""))
    env_cxxflags: str = field(default_factory=lambda: os.environ.get("CXXFLAGS", ""))
    cross: CrossBuild | None = None  # None: a native build with the host's compiler

    def source_dirs(self) -> dict[str, str]:
        """The source trees the compiler reads, by input kind. A boost header tree is reached through the
        build directory (<build>/boost), a tarball is unpacked there: both are covered by the build's map."""
        return {i.kind: i.path for i in self.sources.inputs() if i.form == "tree"}

    def prefix_maps(self) -> list[reproducible.PrefixMap]:
        """The build directory becomes `.` and each source tree its kind in everything the compiler records."""
        return reproducible.prefix_maps({**self.source_dirs(), ".": self.build_dir})

    def path_names(self) -> dict[str, str | Path]:
        """Every path in the configure line by what it stands for, to record that line without them."""
        names: dict[str, str | Path] = {
            **self.source_dirs(),
            "build": self.build_dir,
            "boost": self.sources.boost.path,
        }
        if self.gpu_plan is not None:
            names["cuda"] = self.gpu_plan.toolkit.root
        if self.cross is not None:
            names["sysroot"] = self.cross.sysroot.root
            rapidjson = self.cross.rapidjson_config_dir()
            if rapidjson is not None:
                names["rapidjson"] = rapidjson
        return names

    def toolchain_path(self) -> Path:
        return self.build_dir / "stubforge-toolchain.cmake"

    def link_dir(self) -> Path:
        return self.build_dir / "stubforge-sysroot-libs"

    def hook_path(self) -> Path:
        return self.build_dir / "stubforge-project-hook.cmake"

    def cuda_hook_path(self) -> Path:
        return self.build_dir / "stubforge-backend-cuda.cmake"

    def hook_text(self) -> str | None:
        """CMake run inside python_backend's project() call: only a boost header tree needs one."""
        if self.sources.boost.form != "headers":
            return None
        return "include_guard(GLOBAL)\n" + _boost_hook(self.sources.boost.path)

    def configure_args(self) -> list[str]:
        s = self.sources
        exe = self.interpreter.executable
        args = [
            self.cmake.path,
            "-S",
            s.python_backend.path,
            "-B",
            str(self.build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DTRITON_ENABLE_GPU={'ON' if self.gpu else 'OFF'}",
            f"-DTRITON_COMMON_REPO_TAG={s.release.branch}",
            f"-DTRITON_CORE_REPO_TAG={s.release.branch}",
            f"-DTRITON_BACKEND_REPO_TAG={s.release.branch}",
            "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
            f"-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON={s.common.path}",
            f"-DFETCHCONTENT_SOURCE_DIR_REPO-CORE={s.core.path}",
            f"-DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND={s.backend.path}",
            f"-DFETCHCONTENT_SOURCE_DIR_PYBIND11={s.pybind11.path}",
            f"-DFETCHCONTENT_SOURCE_DIR_DLPACK={s.dlpack.path}",
            f"-DFETCHCONTENT_SOURCE_DIR_GOOGLETEST={s.googletest.path}",
        ]
        if self.cross is None:
            # pybind11's classic mode reads PYTHON_EXECUTABLE; the other two cover FindPython modes. Without
            # them CMake picks whatever python3 comes first on PATH (a shim, or another version).
            args += [
                f"-DPYTHON_EXECUTABLE={exe}",
                f"-DPython_EXECUTABLE={exe}",
                f"-DPython3_EXECUTABLE={exe}",
            ]
        else:
            args += [f"-DCMAKE_TOOLCHAIN_FILE={self.toolchain_path()}", *self.cross.python_cache_args()]
            rapidjson = self.cross.rapidjson_config_dir()
            if rapidjson is not None:
                args.append(f"-DRapidJSON_DIR={rapidjson}")
        if self.ninja:
            args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={self.ninja}"]
        else:
            args += ["-G", "Unix Makefiles"]
        if self.cmake.version_tuple >= (4,):
            args.append(f"-DCMAKE_POLICY_VERSION_MINIMUM={POLICY_VERSION_MINIMUM}")
        maps = self.prefix_maps()
        cflags = reproducible.compile_flags(maps, self.env_cflags)
        cxxflags = reproducible.compile_flags(maps, self.env_cxxflags)
        if self.cross is not None:
            extra = " ".join(self.cross.compile_flags())
            cflags = f"{cflags} {extra}".strip()
            cxxflags = f"{cxxflags} {extra} {' '.join(CROSS_CXX_FLAGS)}".strip()
            link = " ".join(self.cross.link_flags(self.link_dir()))
            args += [f"-DCMAKE_EXE_LINKER_FLAGS={link}", f"-DCMAKE_SHARED_LINKER_FLAGS={link}"]
        args += [f"-DCMAKE_C_FLAGS={cflags}", f"-DCMAKE_CXX_FLAGS={cxxflags}"]
        if self.unity:
            args += ["-DCMAKE_UNITY_BUILD=ON", f"-DCMAKE_UNITY_BUILD_BATCH_SIZE={UNITY_BATCH_SIZE}"]
        boost = s.boost
        if self.hook_text() is not None:
            args.append(f"-DCMAKE_PROJECT_{s.pins.project}_INCLUDE={self.hook_path()}")
        if boost.form != "headers" and s.pins.boost and s.pins.boost.url_variable:
            args.append(f"-D{s.pins.boost.url_variable}=file://{boost.path}")
        if self.gpu and self.gpu_plan is not None:
            args += self.gpu_plan.configure_args(self.cuda_hook_path())
        return args + self.extra_args

    def build_args(self) -> list[str]:
        return [
            self.cmake.path,
            "--build",
            str(self.build_dir),
            "--target",
            STUB_TARGET,
            "-j",
            str(self.jobs),
        ]


def _boost_hook(include_root: str) -> str:
    # Runs inside project(): ExternalProject is included here first, so python_backend's own include() is a
    # no-op and our ExternalProject_Add wins. Only `boostorg` is replaced; every other call is forwarded.
    return f"""include(ExternalProject)
function(ExternalProject_Add name)
  if(name STREQUAL "boostorg")
    file(CREATE_LINK "{include_root}/boost" "${{CMAKE_BINARY_DIR}}/boost" SYMBOLIC)
    add_custom_target(boostorg)
    return()
  endif()
  # Forward everything else unchanged; bracket-quoting keeps empty arguments such as INSTALL_COMMAND "".
  set(_sf_args "")
  math(EXPR _sf_last "${{ARGC}} - 1")
  foreach(_sf_i RANGE 0 ${{_sf_last}})
    string(APPEND _sf_args " [==[${{ARGV${{_sf_i}}}}]==]")
  endforeach()
  cmake_language(EVAL CODE "_ExternalProject_Add(${{_sf_args}})")
endfunction()
"""


def prepare(plan: Plan) -> None:
    """Put boost where the release's CMakeLists expects it, before configure."""
    plan.build_dir.mkdir(parents=True, exist_ok=True)
    if plan.cross is not None:
        plan.toolchain_path().write_text(plan.cross.toolchain_text())
        plan.cross.write_rapidjson_config()
        plan.cross.prepare_link_dir(plan.link_dir())
    boost = plan.sources.boost
    hook = plan.hook_text()
    if hook is not None:
        plan.hook_path().write_text(hook)
    cuda_hook = plan.gpu_plan.hook_text() if plan.gpu and plan.gpu_plan is not None else None
    if cuda_hook is not None:
        plan.cuda_hook_path().write_text(cuda_hook)
    if boost.form == "tarball" and not (plan.sources.pins.boost and plan.sources.pins.boost.url_variable):
        # Fixed-URL releases (r24.10): ExternalProject skips the download when the file is already in its
        # download dir with the pinned hash.
        download_dir = plan.build_dir / "boost-src" / "src"
        download_dir.mkdir(parents=True, exist_ok=True)
        target = download_dir / Path(boost.path).name
        try:
            os.link(boost.path, target)
        except OSError:
            shutil.copyfile(boost.path, target)


_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]\s+(.*)$")
_MAKE_STEP = re.compile(r"^\[\s*(\d+)%\]\s+(.*)$")


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """'[3/12] Building CXX object …' → (3, 12, text); make's '[ 45%] …' → (45, 100, text)."""
    match = _NINJA_STEP.match(line)
    if match:
        return int(match.group(1)), int(match.group(2)), match.group(3)
    match = _MAKE_STEP.match(line)
    if match:
        return int(match.group(1)), 100, match.group(2)
    return None


def _describe_step(text: str) -> str:
    obj = re.search(r"Building \w+ object (\S+)", text)
    if obj:
        return "compile " + re.sub(r"\.o$", "", os.path.basename(obj.group(1)))
    if "Linking" in text:
        return "link"
    return text[:70]


def run_logged(
    args: list[str],
    log: Path,
    timeout: float,
    label: str,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run a command, append its output to log, feed each line to on_line; kill it on timeout or Ctrl-C."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # its own process group, so a kill reaches the compilers too
        )
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            proc.wait(timeout=60)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            timer.cancel()
        if timed_out.is_set():
            out.write(f"\nstubforge: killed after {timeout:.0f} s\n")
            raise BuildError(
                f"{label} did not finish within {timeout:.0f} s",
                hint=f"see {log}",
            )
        return proc.returncode


def _kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class CompileResult:
    configure_s: float
    build_s: float
    compiler: str
    compiler_identity: dict[str, str] = field(default_factory=dict)
    # `file: __DATE__` for each date/time macro the compiler saw (-Wdate-time); pinned by SOURCE_DATE_EPOCH.
    date_time_macros: list[str] = field(default_factory=list)


class CompileFailed(BuildError):
    """The compile or link step failed (as opposed to configure); a plain build may still succeed."""


def configure_and_build(plan: Plan, progress: Progress = QUIET) -> CompileResult:
    prepare(plan)
    env = reproducible.build_environment(os.environ)
    # A user's PYTHONHOME/PYTHONPATH would make the probe of pybind11 describe another Python.
    for name in ("PYTHONHOME", "PYTHONPATH"):
        env.pop(name, None)
    started = time.monotonic()
    progress.step("configure")
    rc = run_logged(plan.configure_args(), plan.log_path, CONFIGURE_TIMEOUT_S, "cmake configure", env)
    configure_s = time.monotonic() - started
    if rc != 0:
        raise configure_error(plan.log_path, plan)
    progress.step("configured", f"{configure_s:.1f}s")

    def on_line(line: str) -> None:
        step = parse_progress(line)
        if step:
            n, total, text = step
            progress.step("build", f"{n}/{total} {_describe_step(text)}")

    started = time.monotonic()
    rc = run_logged(plan.build_args(), plan.log_path, BUILD_TIMEOUT_S, "cmake --build", env, on_line)
    build_s = time.monotonic() - started
    if rc != 0:
        raise CompileFailed(
            f"compiling {STUB_TARGET} for Python {plan.interpreter.version} failed (exit {rc})",
            hint=hint_for(log_tail(plan.log_path, 200), plan) or "read the compiler's error above",
            details=f"{log_tail(plan.log_path, 25)}\n(full log: {plan.log_path})",
        )
    return CompileResult(
        configure_s=configure_s,
        build_s=build_s,
        compiler=compiler_of(plan.build_dir),
        compiler_identity=compiler_identity(plan.build_dir),
        date_time_macros=reproducible.date_time_uses(_read_log(plan.log_path)),
    )


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# What a missing system package looks like in CMake/compiler output, and the package that provides it.
_MISSING = (
    (
        re.compile(r'provided by\s+"RapidJSON"|RapidJSONConfig\.cmake|rapidjson/\S+\.h: No such file', re.I),
        "rapidjson-dev",
    ),
    (re.compile(r"Could NOT find ZLIB|zlib\.h: No such file"), "zlib1g-dev"),
    (re.compile(r"archive(_entry)?\.h: No such file|cannot find -larchive"), "libarchive-dev"),
    (re.compile(r"No CMAKE_CXX_COMPILER could be found|CMAKE_CXX_COMPILER.*not set"), "g++"),
)


def _tool_output(text: str) -> str:
    """The log without stubforge's own `$ command` lines, whose flags would match every pattern."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("$ "))


def hint_for(text: str, plan: Plan | None = None) -> str:
    output = _tool_output(text)
    for pattern, package in _MISSING:
        if pattern.search(output):
            return f"install the missing build dependency: apt-get install -y {package}"
    if plan is not None and plan.gpu:
        gpu_hint = cuda_hint(output, plan.gpu_plan)
        if gpu_hint:
            return gpu_hint
    if "Compatibility with CMake < 3.5 has been removed" in output:
        return f"CMake 4 needs -DCMAKE_POLICY_VERSION_MINIMUM={POLICY_VERSION_MINIMUM}; report this as a bug"
    return ""


_UNSUPPORTED_ARCH = re.compile(r"Unsupported gpu architecture '(\w+)'")


def cuda_hint(output: str, gpu_plan: cuda.GpuPlan | None) -> str:
    """What a failed GPU build's output says went wrong with CUDA, as a fix; '' when nothing CUDA-specific."""
    toolkit = f"CUDA {gpu_plan.toolkit.version} ({gpu_plan.toolkit.nvcc})" if gpu_plan else "the CUDA toolkit"
    unsupported = _UNSUPPORTED_ARCH.search(output)
    if unsupported:
        supported = (
            ", ".join(str(a) for a in gpu_plan.toolkit.architectures)
            if gpu_plan
            else "see nvcc --list-gpu-arch"
        )
        return (
            f"{toolkit} cannot compile for {unsupported.group(1)}: pass --cuda-arch with architectures it "
            f"supports ({supported}), or a toolkit that has it with --cuda PATH"
        )
    if re.search(
        r"Could NOT find CUDAToolkit|No CMAKE_CUDA_COMPILER could be found|Failed to find nvcc", output
    ):
        return "CMake found no CUDA toolkit: pass its root with --cuda PATH (the directory holding bin/nvcc)"
    if re.search(r"cannot find -lcudart|libcudart\S* not found|CUDA::cudart", output):
        return (
            f"{toolkit} has no shared CUDA runtime to link: install its cudart package or pass another --cuda"
        )
    if re.search(r"unsupported GNU version|host compiler.*not supported", output, re.I):
        return (
            f"{toolkit} does not support this host compiler: install a gcc it supports and pass it with "
            "--cmake-arg=-DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++-N"
        )
    return ""


def configure_error(log: Path, plan: Plan) -> BuildError:
    return BuildError(
        f"cmake could not configure python_backend {plan.sources.release.branch} "
        f"for Python {plan.interpreter.version}",
        hint=hint_for(log_tail(log, 200), plan) or "read CMake's error above",
        details=f"{log_tail(log, 25)}\n(full log: {log})",
    )


def compiler_identity(build_dir: Path) -> dict[str, str]:
    """{'id': 'GNU', 'version': '12.2.0', 'path': '/usr/bin/c++'} from CMake's own compiler detection."""
    for info in build_dir.glob("CMakeFiles/*/CMakeCXXCompiler.cmake"):
        text = info.read_text(errors="replace")
        found = {}
        for key, variable in (("id", "ID"), ("version", "VERSION"), ("path", "")):
            name = f"CMAKE_CXX_COMPILER_{variable}" if variable else "CMAKE_CXX_COMPILER"
            match = re.search(rf'set\({name} "([^"]*)"\)', text)
            if match:
                found[key] = match.group(1)
        return found
    return {}


def compiler_of(build_dir: Path) -> str:
    """'GNU 12.2.0 /usr/bin/c++' from CMake's own compiler detection."""
    identity = compiler_identity(build_dir)
    return " ".join(identity[k] for k in ("id", "version", "path") if k in identity) or "unknown"
