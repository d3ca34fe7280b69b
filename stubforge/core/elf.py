"""ELF facts about a binary, read with pyelftools rather than by parsing ldd (which runs the loader)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection, DynamicTag
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.sections import SymbolTableSection

from stubforge.errors import StubforgeError

_VERSIONED = re.compile(r"^(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)$")

# ELF e_machine (as pyelftools names it) <-> the architecture name stubforge uses (uname -m): the one mapping.
MACHINE_TO_ARCH: dict[str, str] = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
ARCH_TO_MACHINE: dict[str, str] = {arch: machine for machine, arch in MACHINE_TO_ARCH.items()}


def arch_of_machine(machine: str) -> str | None:
    """'x86_64' for EM_X86_64; None for a machine stubforge does not target."""
    return MACHINE_TO_ARCH.get(machine)


def machine_of_arch(arch: str) -> str | None:
    """'EM_AARCH64' for aarch64; None for an architecture stubforge does not target."""
    return ARCH_TO_MACHINE.get(arch)


@dataclass(frozen=True)
class ElfInfo:
    machine: str
    needed: list[str]
    runpath: list[str]
    rpath: list[str]
    # Highest symbol version required per family: the oldest libc/libstdc++ the binary can run on.
    floors: dict[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str | None:
        """The architecture the binary is for ('x86_64', 'aarch64'), None when stubforge does not target it."""
        return arch_of_machine(self.machine)

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "needed": self.needed,
            "runpath": self.runpath,
            "rpath": self.rpath,
            "floors": self.floors,
        }


def _tag_string(tag: DynamicTag) -> str:
    """The string of DT_NEEDED, DT_RUNPATH or DT_RPATH: pyelftools sets it as an attribute named after the tag
    (needed, runpath, rpath), which type checkers cannot see."""
    return str(getattr(tag, str(tag.entry.d_tag)[3:].lower()))


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def read(path: Path) -> ElfInfo:
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            needed: list[str] = []
            runpath: list[str] = []
            rpath: list[str] = []
            floors: dict[str, str] = {}
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(_tag_string(tag))
                        elif tag.entry.d_tag == "DT_RUNPATH":
                            runpath.extend(p for p in _tag_string(tag).split(":") if p)
                        elif tag.entry.d_tag == "DT_RPATH":
                            rpath.extend(p for p in _tag_string(tag).split(":") if p)
                elif isinstance(section, GNUVerNeedSection):
                    for _verneed, aux_iter in section.iter_versions():
                        for aux in aux_iter:
                            match = _VERSIONED.match(aux.name)
                            if not match:
                                continue
                            family, version = match.groups()
                            if family not in floors or _version_key(version) > _version_key(floors[family]):
                                floors[family] = version
            return ElfInfo(
                machine=elf["e_machine"],
                needed=needed,
                runpath=runpath,
                rpath=rpath,
                floors={k: f"{k}_{v}" for k, v in sorted(floors.items())},
            )
    except (OSError, ELFError) as exc:
        raise StubforgeError(f"{path}: not a readable ELF binary ({exc})", hint="rebuild the stub") from exc


def exported_symbols(path: Path) -> set[str]:
    """Names the binary defines in its dynamic symbol table (what `nm -D --defined-only` lists)."""
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            table = elf.get_section_by_name(".dynsym")
            if not isinstance(table, SymbolTableSection):
                return set()
            return {sym.name for sym in table.iter_symbols() if sym.name and sym["st_shndx"] != "SHN_UNDEF"}
    except (OSError, ELFError) as exc:
        raise StubforgeError(f"{path}: not a readable ELF binary ({exc})", hint="rebuild the stub") from exc


def shorten_runpath(path: Path, new: str) -> str | None:
    """Rewrite DT_RUNPATH (or DT_RPATH) in place to `new`, which must not be longer than the old value.

    Editing the string inside .dynstr keeps every offset in the file valid, so no patchelf is needed for the
    one edit envs need: pyenv's absolute `/root/.pyenv/versions/X/lib` becomes `$ORIGIN/../lib`.
    Returns the old value, or None when the binary has neither tag."""
    with open(path, "r+b") as fh:
        elf = ELFFile(fh)
        dynamic = elf.get_section_by_name(".dynamic")
        dynstr = elf.get_section_by_name(".dynstr")
        if not isinstance(dynamic, DynamicSection) or dynstr is None:
            return None
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag not in ("DT_RUNPATH", "DT_RPATH"):
                continue
            old = _tag_string(tag)
            if len(new.encode()) > len(old.encode()):
                raise StubforgeError(
                    f"{path}: cannot replace the run path {old!r} with the longer {new!r} in place",
                    hint="report this; a relocatable env needs $ORIGIN/../lib",
                )
            start, end = tag.entry.d_val, tag.entry.d_val + len(old.encode())
            if any(start < other <= end for other in _dynstr_references(elf) if other != start):
                raise StubforgeError(
                    f"{path}: its run path string is shared with another name; cannot edit it in place",
                    hint="report this binary",
                )
            offset = dynstr["sh_offset"] + tag.entry.d_val
            fh.seek(offset)
            fh.write(new.encode() + b"\0" * (len(old.encode()) - len(new.encode()) + 1))
            return old
    return None


def _dynstr_references(elf: ELFFile) -> set[int]:
    """Every .dynstr offset something points at (tags, symbol names, version names)."""
    refs: set[int] = set()
    dynamic = elf.get_section_by_name(".dynamic")
    if isinstance(dynamic, DynamicSection):
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag in ("DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH"):
                refs.add(tag.entry.d_val)
    dynsym = elf.get_section_by_name(".dynsym")
    if isinstance(dynsym, SymbolTableSection):
        refs.update(sym.entry.st_name for sym in dynsym.iter_symbols())
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for verneed, aux_iter in section.iter_versions():
                refs.add(verneed.entry.vn_file)
                refs.update(aux.entry.vna_name for aux in aux_iter)
    return refs


def defined_versions(path: Path, family: str) -> str | None:
    """The highest `<family>_x.y.z` version a shared library defines (e.g. GLIBCXX_3.4.30 for libstdc++)."""
    best: str | None = None
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            for section in elf.iter_sections():
                if not isinstance(section, GNUVerDefSection):
                    continue
                for _verdef, aux_iter in section.iter_versions():
                    for aux in aux_iter:
                        match = _VERSIONED.match(aux.name)
                        if (
                            match
                            and match.group(1) == family
                            and (best is None or _version_key(match.group(2)) > _version_key(best))
                        ):
                            best = match.group(2)
    except (OSError, ELFError):
        return None
    return f"{family}_{best}" if best else None


# e_machine numbers of the ELF header (offset 18, 2 bytes), for files read as bytes (an archive member).
_E_MACHINE_NUMBERS = {62: "x86_64", 183: "aarch64"}


def arch_of_header(data: bytes) -> str | None:
    """The architecture of an ELF file from its first 20 bytes; None when it is not ELF or not one we target."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    order = "little" if data[5] == 1 else "big"
    return _E_MACHINE_NUMBERS.get(int.from_bytes(data[18:20], order))  # type: ignore[arg-type]
