"""Cross builds: compile for a target (an aarch64 board) against its sysroot, with a cross compiler.

The toolchain's own C library (Debian's libc6-dev-arm64-cross in /usr/aarch64-linux-gnu) compiles and links;
the sysroot provides what is the target's own: libpython and its headers, zlib, libarchive. Debian's
pyconfig.h includes `<aarch64-linux-gnu/python3.X/pyconfig.h>`, so the sysroot's usr/include is searched after
everything else (-idirafter); the libraries libpython needs are found at link time through -rpath-link. No build
RUNPATH is recorded: a sysroot path means nothing on the board (docs/triton-behaviour.md: "aarch64: emulation and
cross-compilation").
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import cache, fsutil, pythons
from stubforge.core.sysroot import TRIPLETS, Sysroot, SysrootError, SysrootPython, describe, inside
from stubforge.core.targets import Target, host_target
from stubforge.errors import BuildError

# gcc 12 with rapidjson 1.1 (Debian) warns about std::iterator; upstream builds with -Werror.
CROSS_CXX_FLAGS = ("-Wno-error=deprecated-declarations",)
CROSS_PACKAGE = {"aarch64": "g++-aarch64-linux-gnu", "x86_64": "g++-x86-64-linux-gnu"}
_RAPIDJSON_HEADERS = ("usr/include/rapidjson",)
# glibc's own link libraries (libfoo.so): taken from the cross toolchain, never from the sysroot.
_TOOLCHAIN_LIBS = frozenset(
    (
        "c", "m", "pthread", "dl", "rt", "resolv", "util", "anl", "mvec", "BrokenLocale", "nsl", "crypt",
        "c_malloc_debug", "thread_db", "memusage", "pcprofile",
    )
)  # fmt: skip


@dataclass(frozen=True)
class CrossBuild:
    """Everything that makes one build a cross build, decided before anything runs."""

    target: Target
    sysroot: Sysroot
    python: SysrootPython
    cc: str
    cxx: str

    @property
    def triplet(self) -> str:
        return TRIPLETS.get(self.target.arch, "")

    @property
    def interpreter(self) -> pythons.Interpreter:
        """The target's Python as the rest of the build side sees an interpreter (described, never run)."""
        py = self.python
        assert py.libpython is not None and py.include_dir is not None
        executable = str(py.executable) if py.executable else ""
        return pythons.Interpreter(
            version=py.version,
            executable=executable,
            real_path=executable,
            prefix=str(self.sysroot.root / "usr"),
            base_prefix=str(self.sysroot.root / "usr"),
            shared=True,
            libpython=str(py.libpython),
            include_dir=str(py.include_dir),
            has_headers=True,
            numpy=py.numpy,
            source="sysroot",
        )

    def identity(self) -> str:
        """What of the sysroot decides the stub's bytes: its glibc, its Python, libpython's soname."""
        text = (
            f"{self.target.arch}\0{self.sysroot.libc}\0{self.python.version}\0{self.python.libpython_soname}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def lib_dirs(self) -> tuple[Path, ...]:
        return self.sysroot.lib_dirs

    def compile_flags(self) -> list[str]:
        return [f"-idirafter{self.sysroot.root / 'usr/include'}"]

    def link_flags(self, link_dir: Path) -> list[str]:
        """-L the private link dir (see `prepare_link_dir`); -rpath-link the sysroot's library dirs, where the
        linker resolves what libpython itself needs (libexpat, libz ...)."""
        dirs = [str(d) for d in self.lib_dirs()]
        return [f"-L{link_dir}", f"-Wl,-rpath-link,{':'.join(dirs)}"]

    def prepare_link_dir(self, link_dir: Path) -> Path:
        """A directory of links to the sysroot's development libraries (libarchive.so, libz.so ...) without the
        C runtime's: glibc and gcc's libraries come from the cross toolchain. A sysroot's libc.so is a linker
        script naming absolute paths (/usr/lib/aarch64-linux-gnu/libc_nonshared.a) that are the host's."""
        link_dir.mkdir(parents=True, exist_ok=True)
        for directory in reversed(self.lib_dirs()):  # the first dir's copy wins
            for entry in directory.glob("lib*.so"):
                stem = entry.name[3:-3]
                if stem in _TOOLCHAIN_LIBS or stem.startswith(("gcc", "stdc++", "asan", "ubsan", "tsan")):
                    continue
                real = inside(self.sysroot.root, entry)
                if not real.is_file():
                    continue
                link = link_dir / entry.name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(real)
        return link_dir

    def toolchain_text(self) -> str:
        roots = [str(self.sysroot.root)]
        cross_root = Path(f"/usr/{self.triplet}")
        if cross_root.is_dir():
            roots.append(str(cross_root))
        return "\n".join(
            [
                "# Generated by stubforge for a cross build; see docs/aarch64.md.",
                "set(CMAKE_SYSTEM_NAME Linux)",
                f"set(CMAKE_SYSTEM_PROCESSOR {self.target.arch})",
                f'set(CMAKE_C_COMPILER "{self.cc}")',
                f'set(CMAKE_CXX_COMPILER "{self.cxx}")',
                f"set(CMAKE_LIBRARY_ARCHITECTURE {self.triplet})",
                f'set(CMAKE_FIND_ROOT_PATH "{";".join(roots)}")',
                "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
                "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
                "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
                "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
                # A build RUNPATH would name the sysroot, a path that does not exist on the board.
                "set(CMAKE_SKIP_BUILD_RPATH ON)",
                "",
            ]
        )

    def python_cache_args(self) -> list[str]:
        """pybind11's classic search runs PYTHON_EXECUTABLE, which cannot be the target's Python without
        emulation: a host interpreter answers, and every value it would give is set for the target instead
        ("Can manually set values when cross-compiling" in pybind11's FindPythonLibsNew)."""
        py = self.python
        assert py.libpython is not None and py.include_dir is not None
        major_minor = py.minor
        return [
            f"-DPYTHON_EXECUTABLE={sys.executable}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DPYBIND11_PYTHONLIBS_OVERWRITE=OFF",
            f"-D_PYTHON_VERSION_LIST={py.version}",
            f"-DPYTHON_PREFIX={self.sysroot.root / 'usr'}",
            f"-DPYTHON_INCLUDE_DIR={py.include_dir}",
            f"-DPYTHON_SITE_PACKAGES={self.sysroot.root / 'usr/lib/python3/dist-packages'}",
            f"-DPYTHON_MODULE_EXTENSION={py.ext_suffix}",
            "-DPYTHON_IS_DEBUG=0",
            "-DPYTHON_SIZEOF_VOID_P=8",
            f"-DPYTHON_LIBRARY_SUFFIX={major_minor}",
            f"-DPYTHON_LIBDIR={py.libpython.parent}",
            f"-DPYTHON_MULTIARCH={py.multiarch}",
            f"-DPYTHON_LIBRARY={py.libpython}",
            # FindPython3 (used by newer CMake files) takes these as given.
            f"-DPython3_INCLUDE_DIR={py.include_dir}",
            f"-DPython3_LIBRARY={py.libpython}",
        ]

    def rapidjson_headers(self) -> Path | None:
        """rapidjson is header-only: the sysroot's copy, else the host's. Debian's RapidJSONConfig.cmake adds
        the host's /usr/include to every include path, so a config of our own points at the headers alone."""
        for base in (self.sysroot.root, Path("/")):
            for rel in _RAPIDJSON_HEADERS:
                if (base / rel / "document.h").is_file():
                    return base / rel
        return None

    def rapidjson_config_dir(self) -> Path | None:
        """Outside the build tree: common's exported target lists this include dir, and CMake refuses an
        exported include dir inside the build tree."""
        headers = self.rapidjson_headers()
        if headers is None:
            return None
        digest = hashlib.sha256(str(headers).encode()).hexdigest()[:10]
        return cache.root() / "cross" / f"rapidjson-{digest}"

    def write_rapidjson_config(self) -> Path | None:
        headers = self.rapidjson_headers()
        config_dir = self.rapidjson_config_dir()
        if headers is None or config_dir is None:
            return None
        include = config_dir / "include"
        include.mkdir(parents=True, exist_ok=True)
        link = include / "rapidjson"
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):  # another build made it meanwhile
                link.symlink_to(headers)
        fsutil.write_atomic(
            config_dir / "RapidJSONConfig.cmake",
            (
                f'set(RAPIDJSON_INCLUDE_DIRS "{include}")\nset(RapidJSON_INCLUDE_DIRS "{include}")\n'
                "set(RapidJSON_FOUND TRUE)\n"
            ).encode(),
        )
        return config_dir

    def to_dict(self) -> dict[str, object]:
        return {
            "cc": self.cc,
            "cxx": self.cxx,
            "triplet": self.triplet,
            "sysroot": str(self.sysroot.root),
            "libc": self.sysroot.libc,
            "python": self.python.to_dict(),
        }


def find_compilers(arch: str, language: str = "c++") -> tuple[str, str]:
    """(cc, c++) that produce `arch` code: the host's own for the host's arch, else Debian's cross gcc."""
    if arch == host_target().arch:
        names = [("gcc", "g++"), ("cc", "c++")]
    else:
        triplet = TRIPLETS.get(arch, f"{arch}-linux-gnu")
        names = [(f"{triplet}-gcc", f"{triplet}-g++")]
    for cc, cxx in names:
        found_cc, found_cxx = shutil.which(cc), shutil.which(cxx)
        if found_cc and (found_cxx or language == "c"):
            return found_cc, found_cxx or ""
    wanted = names[0][1] if language == "c++" else names[0][0]
    package = CROSS_PACKAGE.get(arch, f"g++-{arch}-linux-gnu")
    if language == "c":
        package = package.replace("g++", "gcc", 1)
    raise BuildError(
        f"no compiler for {arch}: {wanted} is not on PATH",
        hint=f"apt-get install {package}",
    )


def needed(target: Target) -> bool:
    """A sysroot, or an architecture other than this machine's: build with a toolchain file. A build for this
    machine without a sysroot (also on an aarch64 host) is the native build, unchanged."""
    return target.sysroot is not None or target.arch != host_target().arch


def plan(target: Target, python: str, language: str = "c++") -> CrossBuild:
    """The cross build of Python `python` ("3.11") for `target`, which must name a sysroot."""
    if target.sysroot is None:
        raise BuildError(
            f"building for {target.arch} on this {host_target().arch} machine needs the target's sysroot",
            hint=f"pass --sysroot DIR (a rootfs copied from the board, or `stubforge sysroot create DIR --arch "
            f"{target.arch} --python 3.11`), or build on the board itself",
        )
    minor = minor_of(python)
    described = describe(target.sysroot, target.arch)
    try:
        py = described.python(minor)
    except SysrootError as exc:
        raise BuildError(exc.message, exc.hint) from exc
    cc, cxx = find_compilers(target.arch, language)
    return CrossBuild(target, described, py, cc, cxx)


def minor_of(python: str) -> str:
    text = python.strip().lower()
    if text.startswith("cp") and text[2:].isdigit():
        text = f"{text[2]}.{text[3:]}"
    if text.startswith("python"):
        text = text[len("python") :]
    parts = text.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
        return ".".join(parts[:2])
    raise BuildError(
        f"--python {python!r}: a cross build takes the target's version (3.11, cp311), not a path",
        hint="the interpreter is the sysroot's; see `stubforge sysroot show DIR`",
    )
