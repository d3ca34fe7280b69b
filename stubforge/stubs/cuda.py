"""GPU stubs: find a CUDA toolkit, decide the architectures to compile, and steer the backend repo's CUDA target.

A GPU stub (`TRITON_ENABLE_GPU=ON`) links the backend repo's `triton-backend-utils`, which in r24.06+ builds one
CUDA target, `kernel_library_new`, with a CUDA_ARCHITECTURES list written into the release's sources. Each CUDA
major drops old architectures (CUDA 13 compiles nothing below 7.5), so a list written for CUDA 12 fails with
`nvcc fatal : Unsupported gpu architecture 'compute_53'` (docs/triton-behaviour.md, "GPU stubs and CUDA
architectures"). Nothing upstream is edited: a file run inside the backend's project() call defers a
set_target_properties() of that target to the end of its directory, after the release's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stubforge.errors import BuildError

# The backend repo's project() name: its CMAKE_PROJECT_<name>_INCLUDE hook runs inside that directory.
BACKEND_PROJECT = "tritonbackend"
KERNEL_TARGET = "kernel_library_new"


class CudaOptionError(BuildError):
    """--cuda or --cuda-arch asks for something this toolkit or release cannot do: an error in what was asked
    for (exit 2), not a failed build."""

    exit_code = 2


NVCC_TIMEOUT_S = 60.0

_LIBDIRS = ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib", "targets/aarch64-linux/lib")
_ARCH_ENTRY = re.compile(r"^(\d+)([a-z]?)(?:-(real|virtual))?$")


@dataclass(frozen=True)
class Toolkit:
    """One CUDA toolkit: where it is, its version, what its nvcc compiles, and the runtime stubs will need."""

    root: Path
    nvcc: Path
    version: str  # "13.0" from `nvcc --version`
    architectures: tuple[int, ...]  # compute capabilities nvcc compiles for, e.g. (75, 80, ..., 121)
    cudart: str  # soname of the shared runtime in the toolkit, e.g. libcudart.so.13

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def library_dirs(self) -> tuple[str, ...]:
        """The toolkit's directories that hold its shared runtime."""
        return tuple(str(self.root / d) for d in _LIBDIRS if (self.root / d / self.cudart).exists())

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "nvcc": str(self.nvcc),
            "version": self.version,
            "supported_architectures": list(self.architectures),
            "cudart": self.cudart,
        }


def candidate_roots(explicit: Path | None) -> list[tuple[Path, str]]:
    """(toolkit root, where it came from) in the order tried: --cuda, CUDA_HOME, CUDA_PATH, nvcc on PATH,
    /usr/local/cuda."""
    if explicit is not None:
        return [(explicit, "--cuda")]
    found: list[tuple[Path, str]] = []
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(variable)
        if value:
            found.append((Path(value), variable))
    on_path = shutil.which("nvcc")
    if on_path:
        found.append((_nvcc_home(Path(on_path)), "nvcc on PATH"))
    found.append((Path("/usr/local/cuda"), "the default location"))
    return found


def _nvcc_home(nvcc: Path) -> Path:
    """The toolkit root of an nvcc on PATH, which may be a wrapper script (`exec /usr/local/cuda-13.0/bin/nvcc`):
    nvcc's dry run names the directory it really runs from (`_HERE_=`)."""
    try:
        proc = subprocess.run(
            [str(nvcc), "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=NVCC_TIMEOUT_S,
            check=False,
        )
        match = re.search(r"_HERE_=(\S+)", proc.stdout + proc.stderr)
    except (OSError, subprocess.TimeoutExpired):
        match = None
    return Path(match.group(1)).parent if match else nvcc.resolve().parent.parent


def find_toolkit(explicit: Path | None = None) -> Toolkit:
    """The first toolkit with a working nvcc and a shared CUDA runtime; BuildError naming what is missing."""
    tried: list[str] = []
    for root, origin in candidate_roots(explicit):
        nvcc = root / "bin" / "nvcc"
        if not nvcc.is_file():
            tried.append(f"{nvcc} ({origin}): no such file")
            if explicit is not None:
                raise CudaOptionError(
                    f"--cuda {explicit}: no nvcc at {nvcc}",
                    hint="pass the CUDA toolkit's root (the directory holding bin/nvcc), e.g. /usr/local/cuda-12.6; "
                    "for a CPU stub build with --no-gpu",
                )
            continue
        return _toolkit_at(root, nvcc)
    raise BuildError(
        "a GPU stub needs a CUDA toolkit (nvcc), and none was found: " + "; ".join(tried),
        hint="install a CUDA 12 or 13 toolkit and pass its root with --cuda PATH (or set CUDA_HOME); "
        "for a CPU stub build with --no-gpu",
    )


def _toolkit_at(root: Path, nvcc: Path) -> Toolkit:
    version_text = _nvcc(nvcc, "--version")
    match = re.search(r"release (\d+\.\d+)", version_text)
    if not match:
        raise BuildError(
            f"{nvcc} --version names no CUDA release", hint="pass another toolkit with --cuda PATH"
        )
    version = match.group(1)
    architectures = parse_nvcc_architectures(_nvcc(nvcc, "--list-gpu-arch"))
    if not architectures:
        raise BuildError(
            f"{nvcc} --list-gpu-arch lists no architecture",
            hint="CUDA 11.0 and older cannot list them: use a CUDA 12 or 13 toolkit",
        )
    cudart = _shared_cudart(root)
    if cudart is None:
        raise BuildError(
            f"the CUDA toolkit at {root} has no shared CUDA runtime (lib64/libcudart.so.N)",
            hint="the stub links libcudart dynamically, as Triton's own stubs do: install the toolkit's cudart "
            "package (e.g. cuda-cudart-dev-12-6) or pass another toolkit with --cuda PATH",
        )
    return Toolkit(root=root, nvcc=nvcc, version=version, architectures=architectures, cudart=cudart)


def _nvcc(nvcc: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            [str(nvcc), *args], capture_output=True, text=True, timeout=NVCC_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(
            f"{nvcc} {' '.join(args)} could not run: {exc}", hint="check the CUDA toolkit"
        ) from None
    if proc.returncode != 0:
        raise BuildError(
            f"{nvcc} {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}",
            hint="check the CUDA toolkit, or pass another with --cuda PATH",
        )
    return proc.stdout


def parse_nvcc_architectures(text: str) -> tuple[int, ...]:
    """(75, 80, ...) from `nvcc --list-gpu-arch` ('compute_75' per line; suffixed a/f variants ignored)."""
    return tuple(sorted({int(m) for m in re.findall(r"\bcompute_(\d+)\b", text)}))


def _shared_cudart(root: Path) -> str | None:
    """The versioned soname of the toolkit's shared runtime: the stub will NEED it."""
    for libdir in _LIBDIRS:
        names = sorted(p.name for p in (root / libdir).glob("libcudart.so.*"))
        majors = [n for n in names if re.fullmatch(r"libcudart\.so\.\d+", n)]
        if majors:
            return majors[0]
    return None


# --- what the sources ask for --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceArchitectures:
    """What the backend repo's sources ask for, and how they ask."""

    entries: tuple[str, ...]  # CMake CUDA_ARCHITECTURES entries: '53', '60-real', '120'
    how: str  # 'target property' (r24.06-r25.07), 'CUDA_ARCH_LIST default' (r25.08+), 'FindCUDA' (before)
    overridable: bool  # whether the deferred set_target_properties() replaces it


_PROPERTY = re.compile(
    r"set_target_properties\(\s*" + KERNEL_TARGET + r"\s+PROPERTIES\s+CUDA_ARCHITECTURES\s+\"([^\"]*)\"\s*\)"
)
_DEFAULT_LIST = re.compile(r'set\(\s*CUDA_ARCHITECTURES\s+"([^"]*)"\s+PARENT_SCOPE\s*\)')
_FINDCUDA_CODE = re.compile(r"OPTIONS\s+-code\s+([\w,]+)")


def source_architectures(backend_dir: Path) -> SourceArchitectures | None:
    """Read the backend repo's CMakeLists.txt; None when it builds no CUDA target."""
    try:
        text = (backend_dir / "CMakeLists.txt").read_text(errors="replace")
    except OSError:
        return None
    if KERNEL_TARGET not in text:
        return None
    match = _PROPERTY.search(text)
    if match and "${" not in match.group(1):
        return SourceArchitectures(tuple(split_entries(match.group(1))), "target property", True)
    if match:
        # r25.08+: the list comes from cmake/define.cuda_architectures.cmake (CUDA_ARCH_LIST, else a default).
        default = _read(backend_dir / "cmake" / "define.cuda_architectures.cmake")
        found = _DEFAULT_LIST.search(default)
        entries = tuple(split_entries(found.group(1))) if found else ()
        return SourceArchitectures(entries, "CUDA_ARCH_LIST default", True)
    code = _FINDCUDA_CODE.search(text)
    if code:
        # cuda_add_library(... OPTIONS -arch compute_53 OPTIONS -code compute_53,sm_53,...): FindCUDA passes
        # these flags to nvcc itself, no target property to replace.
        numbers = sorted({int(n) for n in re.findall(r"_(\d+)", code.group(1))})
        return SourceArchitectures(tuple(f"{n}-real" for n in numbers), "FindCUDA", False)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def split_entries(text: str) -> list[str]:
    """'75-real;80' or '75-real,80' or '7.5 8.0' → ['75-real', '80'] (dots dropped, as CUDA_ARCH_LIST allows)."""
    return [e.replace(".", "") for e in re.split(r"[;,\s]+", text.strip()) if e]


def entry_number(entry: str) -> int:
    match = _ARCH_ENTRY.match(entry)
    if not match:
        raise ValueError(entry)
    return int(match.group(1))


def choose_architectures(
    requested: SourceArchitectures | None, toolkit: Toolkit, override: str | None
) -> tuple[list[str], list[str]]:
    """(entries to build, entries dropped because the toolkit cannot compile them).

    --cuda-arch wins and must be fully supported. Else the sources' list meets the toolkit's: entries it
    cannot compile are dropped; if that drops the only PTX entry (one without -real), the newest kept one carries
    PTX instead, so GPUs newer than the list still run the kernels by JIT, as the release intended."""
    supported = set(toolkit.architectures)
    if override is not None:
        entries = split_entries(override)
        bad = [e for e in entries if not _ARCH_ENTRY.match(e)]
        if not entries or bad:
            raise CudaOptionError(
                f"--cuda-arch {override!r}: {', '.join(bad) or 'no entry'} is not a CUDA architecture",
                hint="give CMake CUDA_ARCHITECTURES entries separated by ';' or ',', e.g. '75-real;80-real;90'",
            )
        unsupported = [e for e in entries if entry_number(e) not in supported]
        if unsupported:
            raise CudaOptionError(
                f"CUDA {toolkit.version} ({toolkit.nvcc}) cannot compile for "
                f"{', '.join(unsupported)} (--cuda-arch)",
                hint=f"this toolkit supports {_supported_text(toolkit)}; drop the others or use a toolkit that "
                "has them (--cuda PATH)",
            )
        return entries, []
    if requested is None or not requested.entries:
        # No list in the sources: CMake's default for the toolkit (CMAKE_CUDA_ARCHITECTURES) applies.
        return [], []
    kept = [e for e in requested.entries if entry_number(e) in supported]
    dropped = [e for e in requested.entries if entry_number(e) not in supported]
    if not kept:
        raise BuildError(
            f"CUDA {toolkit.version} supports none of the architectures the sources ask for "
            f"({';'.join(requested.entries)})",
            hint=f"pass --cuda-arch with some of {_supported_text(toolkit)}, or use another toolkit (--cuda PATH)",
        )
    had_ptx = any(not e.endswith("-real") for e in requested.entries)
    if dropped and had_ptx and all(e.endswith("-real") for e in kept):
        kept[-1] = kept[-1].removesuffix("-real")
    return kept, dropped


def _supported_text(toolkit: Toolkit) -> str:
    return ", ".join(str(a) for a in toolkit.architectures)


def hook_text(architectures: list[str]) -> str:
    """Run inside the backend's project(): set kernel_library_new's architectures after the release's own line.

    cmake_language(DEFER) (CMake 3.19+) queues the call to the end of the backend directory, where the target
    exists and the release has already set its list."""
    joined = ";".join(architectures)
    return (
        "include_guard(GLOBAL)\n"
        "# stubforge: the CUDA architectures this toolkit can compile (the release's list, intersected).\n"
        "cmake_language(DEFER CALL set_target_properties "
        f'{KERNEL_TARGET} PROPERTIES CUDA_ARCHITECTURES "{joined}")\n'
        f'message(STATUS "stubforge: {KERNEL_TARGET} CUDA_ARCHITECTURES {joined}")\n'
    )


@dataclass(frozen=True)
class GpuPlan:
    """Everything a GPU configure needs beyond TRITON_ENABLE_GPU=ON."""

    toolkit: Toolkit
    architectures: tuple[str, ...]  # entries applied to kernel_library_new; () keeps the sources' own
    requested: SourceArchitectures | None
    dropped: tuple[str, ...]
    override: str | None  # --cuda-arch as given

    def configure_args(self, hook: Path) -> list[str]:
        args = [
            f"-DCMAKE_CUDA_COMPILER={self.toolkit.nvcc}",
            f"-DCUDAToolkit_ROOT={self.toolkit.root}",
        ]
        if self.architectures:
            args.append(f"-DCMAKE_PROJECT_{BACKEND_PROJECT}_INCLUDE={hook}")
        return args

    def hook_text(self) -> str | None:
        return hook_text(list(self.architectures)) if self.architectures else None

    def to_manifest(self) -> dict[str, Any]:
        return {
            "version": self.toolkit.version,
            "toolkit": str(self.toolkit.root),
            "architectures": list(self.architectures),
            "requested": list(self.requested.entries) if self.requested else [],
            "requested_by": self.requested.how if self.requested else None,
            "dropped": list(self.dropped),
            "override": self.override,
            "cudart": self.toolkit.cudart,
        }


def plan(backend_dir: Path, cuda: Path | None, cuda_arch: str | None) -> GpuPlan:
    """The GPU part of a build: toolkit, then the architectures (BuildError naming the real cause)."""
    toolkit = find_toolkit(cuda)
    requested = source_architectures(backend_dir)
    if requested is not None and not requested.overridable:
        unsupported = [e for e in requested.entries if entry_number(e) not in toolkit.architectures]
        if unsupported:
            raise BuildError(
                f"the backend sources build {KERNEL_TARGET} with FindCUDA's fixed nvcc flags "
                f"({', '.join(unsupported)}), which CUDA {toolkit.version} cannot compile",
                hint="these releases (before r24.06) need a CUDA toolkit that still has them (CUDA 12.x): "
                "pass one with --cuda PATH",
            )
        if cuda_arch is not None:
            raise CudaOptionError(
                "--cuda-arch cannot change this release's architectures: its backend repo passes them to nvcc "
                "through FindCUDA",
                hint="drop --cuda-arch (the release's own list is built)",
            )
        return GpuPlan(toolkit, (), requested, (), None)
    architectures, dropped = choose_architectures(requested, toolkit, cuda_arch)
    return GpuPlan(toolkit, tuple(architectures), requested, tuple(dropped), cuda_arch)
