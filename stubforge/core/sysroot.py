"""What a target's root filesystem holds: its architecture, its glibc, and the CPythons a stub can embed.

A sysroot is any directory laid out like the target's `/`: one made by `stubforge sysroot create` from Debian's
packages, or a Jetson (L4T, Ubuntu) or Armbian rootfs copied from the board. Nothing here runs a target binary:
every answer comes from file names, headers and ELF headers, so it works without emulation.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from stubforge.core import elf
from stubforge.core.targets import TargetError, normalize_arch

# Debian/Ubuntu multiarch triplets by stubforge's architecture names.
TRIPLETS: dict[str, str] = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# Where distributions put libraries and headers, multiarch first (Debian, Ubuntu/L4T, Armbian), then plain
# (Fedora-style lib64, self-built Pythons under usr/local).
_LIB_DIRS = ("lib/{t}", "usr/lib/{t}", "lib64", "usr/lib64", "lib", "usr/lib", "usr/local/lib")
_INCLUDE_DIRS = ("usr/include", "usr/local/include")
_LIBPYTHON = re.compile(r"^libpython(3\.\d+)m?\.so(\.1(\.0)?)?$")
_GLIBC_BANNER = re.compile(rb"GNU C Library [^\n]*? version (\d+\.\d+)")


class SysrootError(TargetError):
    """A sysroot that lacks what a cross build or an env needs."""


@dataclass(frozen=True)
class SysrootPython:
    """One CPython in a sysroot, found from its files (never run)."""

    minor: str  # "3.11"
    version: str  # "3.11.2" from patchlevel.h; the minor alone when the headers are missing
    libpython: Path | None  # the shared library a stub links (its soname file)
    include_dir: Path | None  # the directory holding Python.h
    platinclude_dir: Path | None  # the directory holding the real pyconfig.h (Debian: a multiarch subdir)
    executable: Path | None
    stdlib: Path | None  # usr/lib/python3.X
    numpy: str | None  # numpy's version when the sysroot has it (Debian: python3-numpy)
    ext_suffix: str  # ".cpython-311-aarch64-linux-gnu.so"
    multiarch: str  # "aarch64-linux-gnu", "" when the sysroot does not use multiarch

    @property
    def buildable(self) -> bool:
        return self.libpython is not None and self.include_dir is not None

    @property
    def libpython_soname(self) -> str | None:
        return self.libpython.name if self.libpython else None

    def to_dict(self) -> dict[str, object]:
        return {
            "minor": self.minor,
            "version": self.version,
            "libpython": str(self.libpython) if self.libpython else None,
            "include_dir": str(self.include_dir) if self.include_dir else None,
            "platinclude_dir": str(self.platinclude_dir) if self.platinclude_dir else None,
            "executable": str(self.executable) if self.executable else None,
            "stdlib": str(self.stdlib) if self.stdlib else None,
            "numpy": self.numpy,
            "buildable": self.buildable,
        }


@dataclass(frozen=True)
class Sysroot:
    root: Path
    arch: str | None  # from the ELF header of its libc (None: no libc found)
    libc: str | None  # glibc version, "2.36"
    libc_path: Path | None
    lib_dirs: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    pythons: tuple[SysrootPython, ...] = field(default=())

    @property
    def triplet(self) -> str:
        return TRIPLETS.get(self.arch or "", "")

    def python(self, minor: str) -> SysrootPython:
        """The sysroot's Python `minor` ("3.11"), able to be embedded, or an error saying what was looked for."""
        found = [p for p in self.pythons if p.minor == minor]
        if found and found[0].buildable:
            return found[0]
        looked = ", ".join(str(self.root / d.format(t=self.triplet or "<triplet>")) for d in _LIB_DIRS)
        if found:
            missing = "libpython" if found[0].libpython is None else "Python.h"
            raise SysrootError(
                f"sysroot {self.root}: Python {minor} has no {missing} "
                f"(libpython{minor}.so* looked for in {looked}; Python.h in "
                f"{', '.join(str(self.root / d / f'python{minor}') for d in _INCLUDE_DIRS)})",
                hint=f"install libpython{minor}-dev on the board before copying its rootfs, or make one with "
                f"`stubforge sysroot create DIR --arch {self.arch or 'aarch64'} --python {minor}`",
            )
        others = ", ".join(p.minor for p in self.pythons if p.buildable) or "none"
        raise SysrootError(
            f"sysroot {self.root}: no libpython{minor} (looked for libpython{minor}.so* in {looked}); "
            f"Pythons it can embed: {others}",
            hint=f"pass --python with one of those, or install python{minor} and libpython{minor}-dev in the "
            "target's rootfs",
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "arch": self.arch,
            "libc": self.libc,
            "libc_path": str(self.libc_path) if self.libc_path else None,
            "lib_dirs": [str(p) for p in self.lib_dirs],
            "pythons": [p.to_dict() for p in self.pythons],
        }


def _existing(root: Path, patterns: tuple[str, ...], triplet: str) -> list[Path]:
    seen: list[Path] = []
    for pattern in patterns:
        if "{t}" in pattern and not triplet:
            continue
        path = root / pattern.format(t=triplet)
        if path.is_dir() and not any(_same(path, s) for s in seen):
            seen.append(path)
    return seen


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


def inside(root: Path, path: Path) -> Path:
    """`path` as the target sees it, resolved inside `root`: absolute symlinks of a copied rootfs
    (libz.so -> /lib/aarch64-linux-gnu/libz.so.1) point into the sysroot, never at the host."""
    current = path
    for _ in range(40):
        if not current.is_symlink():
            return current
        link = Path(os.readlink(current))
        current = root / str(link).lstrip("/") if link.is_absolute() else current.parent / link
    return current


def _find_libc(root: Path, lib_dirs: list[Path]) -> Path | None:
    for directory in lib_dirs:
        candidate = inside(root, directory / "libc.so.6")
        if candidate.is_file():
            return candidate
    return None


def libc_version(libc: Path) -> str | None:
    """glibc's version from its banner ("GNU C Library ... release version 2.36"), else the highest GLIBC_x.y
    it defines."""
    try:
        data = libc.read_bytes()
    except OSError:
        return None
    match = _GLIBC_BANNER.search(data)
    if match:
        return match.group(1).decode()
    defined = elf.defined_versions(libc, "GLIBC")
    return defined.split("_", 1)[1] if defined else None


def describe(root: str | Path, arch: str | None = None) -> Sysroot:
    """Read a sysroot. `arch` (when known) picks the multiarch directories; otherwise it comes from libc."""
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise SysrootError(
            f"sysroot {root}: no such directory",
            hint="pass the directory holding the target's usr/lib and usr/include "
            "(or make one with `stubforge sysroot create DIR --arch aarch64 --python 3.11`)",
        )
    guess = normalize_arch(arch) if arch else None
    # The asked architecture's directories first; the others too, so a sysroot of another arch is named as such.
    triplets = sorted(TRIPLETS.values(), key=lambda t: t != TRIPLETS.get(guess or ""))
    libc_path: Path | None = None
    found_arch: str | None = None
    for triplet in triplets:
        libc_path = _find_libc(base, _existing(base, _LIB_DIRS, triplet))
        if libc_path is not None:
            break
    if libc_path is None:
        libc_path = _find_libc(base, _existing(base, _LIB_DIRS, ""))
    if libc_path is not None:
        with contextlib.suppress(Exception):  # an unreadable libc leaves the arch unknown
            found_arch = elf.read(libc_path).arch
    triplet = TRIPLETS.get(found_arch or guess or "", "")
    lib_dirs = _existing(base, _LIB_DIRS, triplet)
    include_dirs = _existing(base, _INCLUDE_DIRS, "")
    pythons = _find_pythons(base, lib_dirs, include_dirs, triplet)
    return Sysroot(
        root=base,
        arch=found_arch,
        libc=libc_version(libc_path) if libc_path else None,
        libc_path=libc_path,
        lib_dirs=tuple(lib_dirs),
        include_dirs=tuple(include_dirs),
        pythons=tuple(pythons),
    )


def _minor_key(minor: str) -> tuple[int, ...]:
    return tuple(int(p) for p in minor.split("."))


def _find_pythons(
    root: Path, lib_dirs: list[Path], include_dirs: list[Path], triplet: str
) -> list[SysrootPython]:
    libs: dict[str, Path] = {}
    for directory in lib_dirs:
        for entry in sorted(directory.glob("libpython3.*.so*")):
            match = _LIBPYTHON.match(entry.name)
            real = inside(root, entry)
            if match and real.is_file() and _LIBPYTHON.match(real.name):
                # The file the links lead to (libpython3.11.so.1.0) carries the soname a stub's NEEDED names.
                libs.setdefault(match.group(1), real)
    headers: dict[str, Path] = {}
    for directory in include_dirs:
        for entry in sorted(directory.glob("python3.*")):
            minor = entry.name[len("python") :].rstrip("m")
            if (entry / "Python.h").is_file() and minor not in headers:
                headers[minor] = entry
    minors = sorted(set(libs) | set(headers), key=_minor_key)
    return [_describe_python(root, minor, libs.get(minor), headers.get(minor), triplet) for minor in minors]


def _describe_python(
    root: Path, minor: str, libpython: Path | None, include: Path | None, triplet: str
) -> SysrootPython:
    version = minor
    if include is not None:
        patch = include / "patchlevel.h"
        match = re.search(r'#define\s+PY_VERSION\s+"(\d+\.\d+\.\d+)', _read(patch))
        if match:
            version = match.group(1)
    platinclude = include
    if include is not None:
        for candidate in (include.parent / triplet / include.name, include):
            if triplet and (candidate / "pyconfig.h").is_file() and candidate != include:
                platinclude = candidate
                break
    stdlib = next(
        (d for d in (root / f"usr/lib/python{minor}", root / f"usr/local/lib/python{minor}") if d.is_dir()),
        None,
    )
    executable = next(
        (p for p in (root / f"usr/bin/python{minor}", root / f"usr/local/bin/python{minor}") if p.exists()),
        None,
    )
    config = _sysconfig_vars(stdlib) if stdlib else {}
    nodot = minor.replace(".", "")
    default_suffix = f".cpython-{nodot}-{triplet}.so" if triplet else f".cpython-{nodot}.so"
    ext_suffix = str(config.get("EXT_SUFFIX") or default_suffix)
    multiarch = str(config.get("MULTIARCH") or (triplet if libpython and triplet in str(libpython) else ""))
    return SysrootPython(
        minor=minor,
        version=version,
        libpython=libpython,
        include_dir=include,
        platinclude_dir=platinclude,
        executable=executable,
        stdlib=stdlib,
        numpy=_numpy_version(root, minor),
        ext_suffix=ext_suffix,
        multiarch=multiarch,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _sysconfig_vars(stdlib: Path) -> dict[str, object]:
    """The build-time config of the target's Python, read (literal_eval, never imported) from its
    _sysconfigdata_*.py."""
    for candidate in sorted(stdlib.glob("_sysconfigdata_*.py")):
        text = _read(candidate)
        start = text.find("build_time_vars")
        if start < 0:
            continue
        brace = text.find("{", start)
        try:
            data = ast.literal_eval(text[brace:].strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def _numpy_version(root: Path, minor: str) -> str | None:
    """From numpy's dist-info/egg-info directory name (Debian: numpy-1.24.2.egg-info), else its version.py."""
    for site in (
        "usr/lib/python3/dist-packages",
        f"usr/lib/python{minor}/site-packages",
        f"usr/local/lib/python{minor}/dist-packages",
        f"usr/local/lib/python{minor}/site-packages",
    ):
        directory = root / site
        for info in sorted(directory.glob("numpy-*.*-info")):
            match = re.match(r"numpy-(\d[^-]*?)(?:\.dist-info|\.egg-info|-py)", info.name)
            if match:
                return match.group(1)
        text = _read(directory / "numpy" / "version.py")
        match = re.search(r"^(?:full_)?version\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)", text, re.M)
        if match:
            return match.group(1)
    return None
