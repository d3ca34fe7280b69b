"""What a stub binary is: the Python it embeds (from its ELF), and the manifest stubforge recorded for it.

The one place that reads a stub's NEEDED libpython and the one manifest reader: build, install, pack-env, the
backend listing, check, verify and the runner all ask here.

A manifest is found, in this order, in the sidecar `stubforge install backend` writes into a backend directory,
in the `<stub>.stubforge.json` sidecar `stubforge install model` writes beside a per-model stub, or in the
`manifest.json` of an artifact in stubforge's cache.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from stubforge.core import cache, elf
from stubforge.errors import StubforgeError

BACKEND_SIDECAR = "stubforge-backend.json"  # written by `stubforge install backend`
MODEL_SIDECAR_SUFFIX = ".stubforge.json"  # <stub>.stubforge.json, written by `stubforge install model`

# libpython3.8.so.1.0, libpython3.7m.so.1.0 (3.7 and older carry the ABI flag), libpython3.10.so
_LIBPYTHON = re.compile(r"^libpython(\d+\.\d+)m?\.so")
# libcudart.so.13; a wheel's bundled copy is renamed (auditwheel): libcudart-09529672.so.12.6.77
_CUDART = re.compile(r"^libcudart(?:-[0-9a-f]{8})?\.so\.(\d+)")


class StubSource(enum.Enum):
    """Where a stub was found: decides which models it serves and how messages name it."""

    MODEL = "per-model"  # <model_dir>/triton_python_backend_stub
    BACKEND = "backend"  # <backends>/<backend>/triton_python_backend_stub of a Python-based backend
    STOCK = "stock backend"  # <backends>/python/triton_python_backend_stub
    CACHE = "cache"  # an artifact in stubforge's cache
    GIVEN = "given"  # a path the user passed (--stub)


def libpython_minor(name: str) -> str | None:
    """'3.8' from a libpython file or soname ('libpython3.8.so.1.0', 'libpython3.7m.so.1.0'); else None."""
    match = _LIBPYTHON.match(name)
    return match.group(1) if match else None


def cudart_major(soname: str) -> int | None:
    """13 for 'libcudart.so.13' (and for a wheel's renamed 'libcudart-09529672.so.12.6.77': 12); else None."""
    match = _CUDART.match(soname)
    return int(match.group(1)) if match else None


def cudart_of(needed: list[str] | tuple[str, ...]) -> str | None:
    """The CUDA runtime a binary links (from its NEEDED), or None for a CPU build."""
    return next((name for name in needed if cudart_major(name) is not None), None)


def python_of(stub: Path) -> str | None:
    """The X.Y a stub embeds, from its NEEDED libpython; None when it links none. Raises StubforgeError when
    the file is not a readable ELF binary."""
    return _libpython(elf.read(stub).needed)[1]


def _libpython(needed: list[str]) -> tuple[str | None, str | None]:
    for name in needed:
        minor = libpython_minor(name)
        if minor:
            return name, minor
    return None, None


def read_manifest(stub: Path) -> dict[str, Any] | None:
    """The build/import manifest stubforge recorded for this stub (see the module docstring), or None."""
    for sidecar in (stub.parent / BACKEND_SIDECAR, stub.with_name(stub.name + MODEL_SIDECAR_SUFFIX)):
        data = _json_object(sidecar)
        if data is not None:
            manifest = data.get("manifest")
            return manifest if isinstance(manifest, dict) else None
    return _json_object(stub.parent / cache.MANIFEST_NAME)


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = cache.read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ManifestFacts:
    """The manifest fields other modules decide on."""

    release: str | None  # rYY.MM branch the stub was built from
    pybind11: str | None  # None when unknown (imported stubs record 'unknown')
    arch: str | None  # platform.machine() of the build
    gpu: bool | None
    cuda: str | None = None  # CUDA toolkit version of a GPU build, e.g. "13.0"
    cuda_architectures: tuple[str, ...] = ()  # CUDA_ARCHITECTURES its kernels were built for
    cudart: str | None = None  # the CUDA runtime soname it needs, e.g. libcudart.so.13

    @classmethod
    def of(cls, manifest: dict[str, Any] | None) -> ManifestFacts:
        if not manifest:
            return cls(None, None, None, None)
        record = manifest.get("cuda")
        record = record if isinstance(record, dict) else {}
        triton = manifest.get("triton")
        branch = triton.get("release") if isinstance(triton, dict) else triton
        pybind11 = manifest.get("pybind11")
        if pybind11 in ("unknown", ""):
            pybind11 = None
        arch = manifest.get("arch")
        gpu = manifest.get("gpu")
        return cls(
            release=str(branch) if branch else None,
            pybind11=str(pybind11) if pybind11 else None,
            arch=str(arch) if arch else None,
            gpu=bool(gpu) if gpu is not None else None,
            cuda=str(record["version"]) if record.get("version") else None,
            cuda_architectures=tuple(str(a) for a in record.get("architectures") or ()),
            cudart=str(record["cudart"]) if record.get("cudart") else None,
        )

    def gpu_text(self) -> str:
        """'cpu', 'gpu', or 'gpu cuda 13.0 [75-real;80] libcudart.so.13' for listings."""
        if not self.gpu:
            return "cpu" if self.gpu is not None else "gpu?"
        parts = ["gpu"]
        if self.cuda:
            parts.append(f"cuda {self.cuda}")
        if self.cuda_architectures:
            parts.append(f"[{';'.join(self.cuda_architectures)}]")
        if self.cudart:
            parts.append(self.cudart)
        return " ".join(parts)


def gpu_summary(manifest: dict[str, Any]) -> str:
    """The GPU column of `stubforge stubs`: from the manifest, and the stub's NEEDED for imported stubs."""
    facts = ManifestFacts.of(manifest)
    if facts.gpu and facts.cudart is None:
        elf_record = manifest.get("elf")
        needed = elf_record.get("needed", []) if isinstance(elf_record, dict) else []
        cudart = cudart_of(list(needed))
        if cudart:
            return f"{facts.gpu_text()} {cudart}"
    return facts.gpu_text()


@dataclass(frozen=True)
class StubInfo:
    """One stub binary, read once: its ELF facts and its manifest."""

    path: Path
    source: StubSource
    python: str | None  # X.Y from NEEDED libpython; None when it links none or is unreadable
    libpython: str | None  # that soname, e.g. libpython3.8.so.1.0
    runpath: tuple[str, ...]
    machine: str | None  # ELF e_machine, e.g. EM_X86_64
    manifest: dict[str, Any] | None = field(repr=False, compare=False)
    facts: ManifestFacts
    elf_error: str | None  # why the file could not be read as ELF, when it could not

    @property
    def release(self) -> str | None:
        return self.facts.release

    @property
    def pybind11(self) -> str | None:
        return self.facts.pybind11


def read_stub(path: Path, source: StubSource = StubSource.GIVEN) -> StubInfo:
    """Never raises for a file that is not ELF: elf_error says why (check reports it, install refuses it)."""
    manifest = read_manifest(path)
    try:
        info = elf.read(path)
    except StubforgeError as exc:
        return StubInfo(path, source, None, None, (), None, manifest, ManifestFacts.of(manifest), exc.message)
    soname, minor = _libpython(info.needed)
    return StubInfo(
        path=path,
        source=source,
        python=minor,
        libpython=soname,
        runpath=tuple(info.runpath),
        machine=info.machine,
        manifest=manifest,
        facts=ManifestFacts.of(manifest),
        elf_error=None,
    )


# pybind11 2.12 (the first to pass numpy 2 tensors right) imports numpy's core as "numpy._core" or "numpy.core"
# by the running numpy's major version; older releases import the literal "numpy.core.multiarray". The stub
# uses pybind11's numpy support (py::array), so one of the two is in its read-only data.
_NUMPY2_AWARE = b"numpy._core"
_NUMPY1_ONLY = b"numpy.core.multiarray"


def numpy2_aware(stub: Path) -> bool | None:
    """From the binary alone: True when the stub was built with pybind11 >= 2.12, False when older, None when
    it cannot tell (not ELF, no .rodata, or neither string). For stubs without a manifest saying which."""
    try:
        with open(stub, "rb") as fh:
            section = ELFFile(fh).get_section_by_name(".rodata")
            data = section.data() if section is not None else b""
    except (OSError, ELFError):
        return None
    if _NUMPY2_AWARE in data:
        return True
    if _NUMPY1_ONLY in data:
        return False
    return None
