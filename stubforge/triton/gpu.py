"""GPU facts of a deployment, as data: is the stub a GPU build, is the server's libtriton_python.so one, and can
the server's loader find the CUDA runtime the stub needs. check and install word their findings from these.

A build's GPU setting is read from its ELF: a `TRITON_ENABLE_GPU=ON` stub or libtriton_python.so links the
shared CUDA runtime (NEEDED libcudart.so.N; a wheel's bundled copy is renamed libcudart-<hash>.so.N...) and
calls cudaIpc* functions; a CPU build does neither (docs/triton-behaviour.md, "GPU stubs and CUDA
architectures").
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stubforge.core import elf
from stubforge.errors import StubforgeError
from stubforge.triton import libpython
from stubforge.triton.deployment import STOCK, Deployment
from stubforge.triton.stubinfo import StubInfo, cudart_major, cudart_of

LIBRARY = "libtriton_python.so"


@dataclass(frozen=True)
class GpuBuild:
    """One binary's GPU setting."""

    path: Path
    gpu: bool
    cudart: str | None  # the runtime it NEEDs, e.g. libcudart.so.13

    @property
    def cuda_major(self) -> int | None:
        return cudart_major(self.cudart) if self.cudart else None

    def describe(self) -> str:
        if not self.gpu:
            return "a CPU build"
        major = self.cuda_major
        return f"a GPU build (CUDA {major})" if major else "a GPU build"


def of_binary(path: Path) -> GpuBuild | None:
    """The GPU setting of a stub or libtriton_python.so; None when the file is not a readable ELF binary."""
    try:
        info = elf.read(path)
    except StubforgeError:
        return None
    cudart = cudart_of(info.needed)
    return GpuBuild(path, cudart is not None or _calls_cuda_ipc(path), cudart)


def _calls_cuda_ipc(path: Path) -> bool:
    """A GPU build with a statically linked runtime still imports no libcudart, but calls cudaIpc*: read the
    dynamic symbols for them (a static runtime defines them locally, so look in .symtab too when present)."""
    try:
        with open(path, "rb") as fh:
            binary = ELFFile(fh)
            for name in (".dynsym", ".symtab"):
                section = binary.get_section_by_name(name)
                if isinstance(section, SymbolTableSection) and any(
                    s.name.startswith("cudaIpcOpenMemHandle") for s in section.iter_symbols()
                ):
                    return True
    except (OSError, ELFError):
        return False
    return False


def of_stub(stub: StubInfo) -> GpuBuild | None:
    if stub.elf_error:
        return None
    return of_binary(stub.path)


def server_library(resolved: Deployment, backends: Path | None) -> Path | None:
    """The libtriton_python.so the server runs the model with: the backend directory's own, else the stock
    python/ one (a Python-based backend has none of its own)."""
    candidates = []
    if resolved.backend_dir is not None:
        candidates.append(resolved.backend_dir / LIBRARY)
    if backends is not None:
        candidates.append(backends / STOCK / LIBRARY)
    return next((c for c in candidates if c.is_file()), None)


def mismatch(stub: GpuBuild, library: GpuBuild) -> tuple[str, str] | None:
    """(what goes wrong, how to fix it) when the stub's and the library's GPU settings differ; else None."""
    if stub.gpu and not library.gpu:
        return (
            f"the stub {stub.path} is {stub.describe()} but {library.path} is a CPU build: GPU tensors the model "
            "returns (e.g. a CUDA tensor through DLPack) cannot be read by the server, and the stub still needs "
            f"{stub.cudart or 'the CUDA runtime'} to start",
            "use a CPU stub with this server (stubforge build --no-gpu), or a GPU build of the server",
        )
    if library.gpu and not stub.gpu:
        return (
            f"the stub {stub.path} is a CPU build but {library.path} is {library.describe()}: inputs the server "
            "hands over in GPU memory (KIND_GPU instances, GPU outputs of BLS calls) reach the model without "
            "data and crash the stub, and pb_utils.Tensor.from_dlpack of a CUDA tensor fails with 'DLPack "
            "capsule passed pointer to memory allocated on GPU device, when GPU is not available'",
            "build the stub with --gpu (stubforge build --gpu), or keep the model's tensors on the CPU",
        )
    return None


class Where(enum.Enum):
    RUNPATH = "the stub's RUNPATH"
    ENV = "the model's env"
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    SYSTEM = "the system's library cache"
    NOWHERE = "nothing provides it"


@dataclass(frozen=True)
class CudartReach:
    where: Where
    soname: str
    directory: Path | None = None

    @property
    def found(self) -> bool:
        return self.where is not Where.NOWHERE


def cudart_reach(resolved: Deployment, library_path: tuple[str, ...] = ()) -> CudartReach | None:
    """Where the loader finds the stub's CUDA runtime: its RUNPATH, the env's lib/ (Triton puts it on
    LD_LIBRARY_PATH), LD_LIBRARY_PATH (`library_path` stands for the server's when known), the system's
    library cache. None when the stub is no GPU build or unreadable."""
    stub = resolved.stub
    if stub is None or stub.elf_error:
        return None
    env = resolved.env
    contents = env.contents if env is not None and env.path is not None else None
    return locate_cudart(
        stub.path,
        env_has=contents.has if contents is not None else None,
        env=env.path if env is not None else None,
        library_path=library_path,
    )


def locate_cudart(
    stub: Path,
    *,
    env_has: Callable[[str], bool] | None = None,
    env: Path | None = None,
    library_path: tuple[str, ...] = (),
) -> CudartReach | None:
    """cudart_reach for a stub file and an env given by a membership test of its files."""
    try:
        info = elf.read(stub)
    except StubforgeError:
        return None
    soname = cudart_of(info.needed)
    if soname is None:
        return None
    for directory in info.runpath:
        if (Path(directory) / soname).exists():
            return CudartReach(Where.RUNPATH, soname, Path(directory))
    if env_has is not None and env_has(f"lib/{soname}"):
        return CudartReach(Where.ENV, soname, env)
    entries = [*library_path, *os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)]
    for entry in entries:
        if entry and (Path(entry) / soname).exists():
            return CudartReach(Where.LD_LIBRARY_PATH, soname, Path(entry))
    if soname in libpython.system_libraries():
        return CudartReach(Where.SYSTEM, soname)
    return CudartReach(Where.NOWHERE, soname)


def install_warnings(stub: Path, library: Path | None) -> list[str]:
    """What `stubforge install` says about a stub's GPU setting against the server's library and this
    machine's loader (an env given later can still provide the runtime)."""
    warnings: list[str] = []
    stub_build = of_binary(stub)
    library_build = of_binary(library) if library is not None and library.is_file() else None
    if stub_build is not None and library_build is not None:
        found = mismatch(stub_build, library_build)
        if found is not None:
            warnings.append(f"{found[0]}: {found[1]}")
    reach = locate_cudart(stub)
    if reach is not None and not reach.found:
        message, fix = unreachable_message(reach, stub, library_build, "the model will not load")
        warnings.append(f"{message} (unless the model's env provides lib/{reach.soname}): {fix}")
    return warnings


def unreachable_message(
    reach: CudartReach, stub: Path, library: GpuBuild | None, outcome: str
) -> tuple[str, str]:
    """(finding, fix) for a stub whose CUDA runtime the server's loader will not find."""
    major = cudart_major(reach.soname)
    message = (
        f"nothing provides {reach.soname} to the stub {stub} (not in its RUNPATH, the model's env lib/, "
        f"LD_LIBRARY_PATH or the system's library cache): the stub will not start and {outcome}"
    )
    if library is not None and library.cudart and library.cudart != reach.soname:
        message += (
            f"; the server's own {library.cudart} does not count: the loader looks the stub's NEEDED name up, "
            "and a wheel's bundled copy is renamed"
        )
    fix = (
        f"put the directory holding {reach.soname} on the server's LD_LIBRARY_PATH (a CUDA {major} toolkit's "
        f"lib64, or the lib/ directory of the pip package nvidia-cuda-runtime), or copy it into "
        f"the model env's lib/; or build the stub against the server's CUDA major (stubforge build --gpu "
        "--cuda PATH)"
    )
    return message, fix


_FATBIN_MAGIC = 0xBA55ED50
_FATBIN_PTX, _FATBIN_ELF = 1, 2


def device_code(path: Path) -> list[str]:
    """What device code a binary carries, from its .nv_fatbin section: 'sm_75' per compiled (cubin) entry,
    'compute_90' per PTX entry, sorted; [] for none or an unreadable file.

    The fat binary is a run of containers (magic 0xBA55ED50, u16 version, u16 header size, u64 payload size),
    each a run of entries (u16 kind: 1 PTX, 2 ELF; u16; u32 header size; u64 payload size; ...; u32 arch at
    byte 28). The toolkit's cuobjdump --list-elf/--list-ptx shows the same; not every toolkit install has it."""
    try:
        with open(path, "rb") as fh:
            section = ELFFile(fh).get_section_by_name(".nv_fatbin")
            data = section.data() if section is not None else b""
    except (OSError, ELFError):
        return []
    found: set[str] = set()
    offset = 0
    while offset + 16 <= len(data):
        magic, _version, header, size = struct.unpack_from("<IHHQ", data, offset)
        if magic != _FATBIN_MAGIC:
            offset += 8  # containers are 8-byte aligned
            continue
        entry, end = offset + header, min(offset + header + size, len(data))
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if kind == _FATBIN_ELF:
                found.add(f"sm_{arch}")
            elif kind == _FATBIN_PTX:
                found.add(f"compute_{arch}")
            if entry_header == 0:
                break
            entry += entry_header + payload
        offset = max(end, offset + 8)
    return sorted(found, key=lambda name: (int(name.split("_")[1]), name))
