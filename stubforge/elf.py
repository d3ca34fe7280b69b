"""ELF facts about a binary, read with pyelftools rather than by parsing ldd (which runs the loader)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection
from elftools.elf.sections import SymbolTableSection

from stubforge.errors import StubforgeError

_VERSIONED = re.compile(r"^(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)$")


@dataclass(frozen=True)
class ElfInfo:
    machine: str
    needed: list[str]
    runpath: list[str]
    rpath: list[str]
    # Highest symbol version required per family: the oldest libc/libstdc++ the binary can run on.
    floors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "needed": self.needed,
            "runpath": self.runpath,
            "rpath": self.rpath,
            "floors": self.floors,
        }


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
                            needed.append(tag.needed)
                        elif tag.entry.d_tag == "DT_RUNPATH":
                            runpath.extend(p for p in tag.runpath.split(":") if p)
                        elif tag.entry.d_tag == "DT_RPATH":
                            rpath.extend(p for p in tag.rpath.split(":") if p)
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
