"""The machine a stub or an env is for: its architecture and, for a cross build, the sysroot holding its libraries.

Carried through build, pack-env, install, check and verify and recorded in every manifest as
`"target": {"arch": ..., "sysroot": ..., "libc": ...}`: an artifact made for another machine (an aarch64 board,
built on an x86_64 workstation against the board's sysroot) is told apart from the host's by its arch, and the
sysroot's glibc is the floor its binaries must not exceed.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import elf
from stubforge.errors import StubforgeError

# What users and tools call the two architectures stubforge knows, to its own names (those of `uname -m`).
_ALIASES: dict[str, str] = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv8": "aarch64",
}
ARCHES: tuple[str, ...] = tuple(sorted(set(_ALIASES.values())))


class TargetError(StubforgeError):
    """A target architecture or sysroot stubforge cannot use."""


def normalize_arch(name: str) -> str | None:
    """'amd64' → 'x86_64', 'arm64' → 'aarch64'; None for an architecture stubforge does not know."""
    return _ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class Target:
    arch: str  # "x86_64" or "aarch64" (the host's own uname name when it is neither)
    sysroot: Path | None = None  # the target's root filesystem for a cross build; None: the host's own
    libc: str | None = None  # the sysroot's glibc version ("2.36"); None without a sysroot

    @classmethod
    def parse(cls, arch: str | None = None, sysroot: str | Path | None = None) -> Target:
        """A target from user input: `arch` by name or alias (None: the sysroot's, else the host's), `sysroot` an
        existing directory (its architecture must be `arch`)."""
        if sysroot is not None and str(sysroot) != "":
            return cls._with_sysroot(arch, sysroot)
        if arch is None:
            name = host_target().arch
        else:
            known = normalize_arch(arch)
            if known is None:
                raise TargetError(
                    f"unknown target architecture {arch!r}",
                    hint=f"use one of {', '.join(ARCHES)} (aliases: amd64, arm64)",
                )
            name = known
        return cls(name)

    @classmethod
    def _with_sysroot(cls, arch: str | None, sysroot: str | Path) -> Target:
        from stubforge.core import sysroot as sysroot_mod  # it imports this module

        wanted = cls.parse(arch).arch if arch is not None else None
        described = sysroot_mod.describe(sysroot, wanted)
        found = described.arch
        if found is None:
            searched = ", ".join(str(d) for d in described.lib_dirs) or "lib/ or usr/lib/"
            raise TargetError(
                f"sysroot {described.root}: no libc.so.6 in {searched}",
                hint="pass the target's root filesystem (the directory holding lib/ and usr/), e.g. one made by "
                "`stubforge sysroot create DIR --arch aarch64 --python 3.11`",
            )
        if wanted is not None and found != wanted:
            raise TargetError(
                f"sysroot {described.root} is for {found} (its libc is {described.libc_path}), not {wanted}",
                hint=f"pass --arch {found}, or a sysroot for {wanted}",
            )
        return cls(found, described.root, described.libc)

    @property
    def elf_machine(self) -> str | None:
        """The e_machine binaries for this target carry (EM_X86_64, EM_AARCH64)."""
        return elf.machine_of_arch(self.arch)

    @property
    def is_host(self) -> bool:
        return self.sysroot is None and self.arch == host_target().arch

    @property
    def is_cross(self) -> bool:
        """Built by a cross toolchain: another architecture than this machine's."""
        return self.arch != host_target().arch

    def to_dict(self) -> dict[str, str | None]:
        """The manifest field."""
        return {
            "arch": self.arch,
            "sysroot": str(self.sysroot) if self.sysroot is not None else None,
            "libc": self.libc,
        }

    @classmethod
    def from_dict(cls, data: object) -> Target | None:
        """The target a manifest records; None when it records none (manifests written before targets)."""
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            return None
        sysroot = data.get("sysroot")
        libc = data.get("libc")
        return cls(
            data["arch"],
            Path(sysroot) if isinstance(sysroot, str) and sysroot else None,
            libc if isinstance(libc, str) else None,
        )

    def __str__(self) -> str:
        return self.arch if self.sysroot is None else f"{self.arch} (sysroot {self.sysroot})"


def host_target() -> Target:
    """This machine. An architecture stubforge does not know keeps its uname name rather than failing: the host
    always builds for itself."""
    machine = platform.machine()
    return Target(normalize_arch(machine) or machine)


def as_target(target: Target | None) -> Target:
    """None (the default of every library function) means the host."""
    return target if target is not None else host_target()
