"""The Python of another machine's root filesystem (a sysroot), copied into an execution environment.

`pack-env --arch aarch64 --sysroot DIR --python 3.11` takes the interpreter, libpython and standard library from
DIR (a Jetson/L4T or Armbian rootfs, or one made from Debian's arm64 packages) instead of from a Python of this
machine, and bundles the shared libraries the interpreter and its extension modules need that are not part of
glibc, so the env runs on any machine of that architecture with a glibc at least as new as the sysroot's
(docs/triton-behaviour.md: "aarch64: emulation and cross-compilation").
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import elf
from stubforge.core.targets import Target
from stubforge.envs import activate
from stubforge.envs.create import _STDLIB_SKIP, _STDLIB_SKIP_PREFIX
from stubforge.errors import EnvError, StubforgeError

_TRIPLETS = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
# glibc itself: the target machine has it; the env must not carry one (it would have to match ld.so).
_GLIBC = re.compile(
    r"^(libc|libm|libpthread|libdl|librt|libutil|libresolv|libanl|libBrokenLocale|libnss_\w+|libmvec)\.so\.\d+$"
    r"|^ld-linux[-\w.]*\.so\.\d+$"
)
SYSROOT_HINT = (
    "pass the target's root filesystem (it needs usr/bin/python3.X, libpython3.X.so.1.0 and lib/python3.X); "
    "stubforge sysroot create DIR --arch aarch64 --python 3.11 makes one from Debian's arm64 packages"
)


@dataclass(frozen=True)
class SysrootPython:
    sysroot: Path
    target: Target
    minor: str  # "3.11"
    version: str  # "3.11.2" when the headers say so, else the minor
    executable: Path
    libpython: Path
    stdlib: Path
    lib_dirs: tuple[Path, ...]
    site_dir: str  # where packages go, relative to the env: what the interpreter's site.py adds to sys.path
    glibc: str | None  # "2.36": the newest glibc symbol version the sysroot's libc defines

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": "sysroot",
            "sysroot": str(self.sysroot),
            "executable": str(self.executable),
            "libpython": str(self.libpython),
            "glibc": self.glibc,
        }


def lib_dirs(sysroot: Path, arch: str) -> list[Path]:
    """The sysroot's library directories, in the order its loader searches them (plus Debian's blas/lapack
    alternatives, which numpy from Debian needs)."""
    triplet = _TRIPLETS.get(arch, f"{arch}-linux-gnu")
    candidates = [
        sysroot / "lib" / triplet,
        sysroot / "usr" / "lib" / triplet,
        sysroot / "usr" / "local" / "lib",
        sysroot / "lib",
        sysroot / "usr" / "lib",
        sysroot / "usr" / "lib" / triplet / "blas",
        sysroot / "usr" / "lib" / triplet / "lapack",
    ]
    seen: list[Path] = []
    for path in candidates:
        if path.is_dir() and path.resolve() not in [p.resolve() for p in seen]:
            seen.append(path)
    return seen


def find(target: Target, python: str) -> SysrootPython:
    """The Python X.Y of target.sysroot, checked to be built for target.arch."""
    sysroot = target.sysroot
    if sysroot is None:
        raise EnvError(
            f"--arch {target.arch} needs --sysroot DIR: the env's Python comes from the target's root filesystem",
            hint=SYSROOT_HINT,
        )
    match = re.fullmatch(r"(?:cp|python)?(3)\.?(\d+)(?:\.\d+)?", python.strip())
    if match is None:
        raise EnvError(
            f"--python {python}: with --sysroot give a version (3.X), the sysroot's interpreter is used",
            hint="e.g. --python 3.11",
        )
    minor = f"{match.group(1)}.{match.group(2)}"
    name = f"python{minor}"
    executable = next(
        (
            d / name
            for d in (sysroot / "usr" / "bin", sysroot / "bin", sysroot / "usr" / "local" / "bin")
            if (d / name).is_file()
        ),
        None,
    )
    if executable is None:
        found = sorted(
            {p.name for d in ("usr/bin", "usr/local/bin") for p in (sysroot / d).glob("python3.*")}
        )
        raise EnvError(
            f"{sysroot} has no {name} (looked in usr/bin, bin, usr/local/bin)",
            hint=(f"Pythons there: {', '.join(found)}" if found else "it has no Python 3 at all")
            + f"; {SYSROOT_HINT}",
        )
    try:
        info = elf.read(executable)
    except StubforgeError as exc:
        raise EnvError(f"{executable}: not an ELF binary", hint=SYSROOT_HINT) from exc
    if info.arch != target.arch:
        raise EnvError(
            f"{executable} is built for {info.arch or info.machine}, not {target.arch}",
            hint=f"pass the root filesystem of the {target.arch} machine as --sysroot",
        )
    dirs = lib_dirs(sysroot, target.arch)
    soname = f"libpython{minor}.so.1.0"
    libpython = next((d / soname for d in dirs if (d / soname).exists()), None)
    if libpython is None:
        raise EnvError(
            f"{sysroot} has no {soname} (the stub loads it from the env's lib/)",
            hint=f"install the target's libpython{minor} package into the sysroot (Debian/Ubuntu: libpython{minor})",
        )
    stdlib = next(
        (
            d / name
            for d in (sysroot / "usr" / "lib", sysroot / "lib", sysroot / "usr" / "local" / "lib")
            if (d / name / "os.py").is_file()
        ),
        None,
    )
    if stdlib is None:
        raise EnvError(
            f"{sysroot} has no standard library for {name} (no lib/{name}/os.py)", hint=SYSROOT_HINT
        )
    libc = next((d / "libc.so.6" for d in dirs if (d / "libc.so.6").exists()), None)
    glibc = elf.defined_versions(libc, "GLIBC") if libc is not None else None
    return SysrootPython(
        sysroot=sysroot,
        target=target,
        minor=minor,
        version=_patch_version(sysroot, minor) or minor,
        executable=executable,
        libpython=libpython,
        stdlib=stdlib,
        lib_dirs=tuple(dirs),
        site_dir=_site_dir(stdlib, minor),
        glibc=glibc[len("GLIBC_") :] if glibc else None,
    )


def _patch_version(sysroot: Path, minor: str) -> str | None:
    """X.Y.Z from the sysroot's headers (patchlevel.h), when they are there."""
    for header in sorted(sysroot.glob(f"usr/include/*python{minor}*/patchlevel.h")):
        found = re.search(r'#define\s+PY_VERSION\s+"([0-9.]+)', header.read_text(errors="replace"))
        if found:
            return found.group(1)
    return None


def _site_dir(stdlib: Path, minor: str) -> str:
    """Debian and Ubuntu (Jetson's L4T, Armbian) patch site.py: outside a venv it adds lib/python3/dist-packages
    and never lib/pythonX.Y/site-packages. Every other CPython adds the latter."""
    site = stdlib / "site.py"
    if site.is_file() and "dist-packages" in site.read_text(errors="replace"):
        return "lib/python3/dist-packages"
    return f"lib/python{minor}/site-packages"


def copy_interpreter(found: SysrootPython, dest: Path) -> None:
    """bin/, lib/libpython, the stdlib and the site dir of the sysroot's Python under dest (existing, empty)."""
    bin_dir = dest / "bin"
    lib_dir = dest / "lib"
    bin_dir.mkdir()
    lib_dir.mkdir()
    exe_name = f"python{found.minor}"
    shutil.copy2(found.executable, bin_dir / exe_name)
    if elf.read(bin_dir / exe_name).runpath:
        elf.shorten_runpath(bin_dir / exe_name, "$ORIGIN/../lib")
    for alias in ("python3", "python"):
        (bin_dir / alias).symlink_to(exe_name)
    shutil.copy2(found.libpython.resolve(), lib_dir / found.libpython.name)
    (lib_dir / f"libpython{found.minor}.so").symlink_to(found.libpython.name)

    source = found.stdlib

    def ignore(directory: str, names: list[str]) -> set[str]:
        if Path(directory) == source:
            # EXTERNALLY-MANAGED (PEP 668) speaks for the sysroot's package manager, not for this env.
            return {
                n
                for n in names
                if n in _STDLIB_SKIP or n.startswith(_STDLIB_SKIP_PREFIX) or n == "EXTERNALLY-MANAGED"
            }
        return set()

    target = lib_dir / source.name
    shutil.copytree(source, target, symlinks=True, ignore=ignore)
    _resolve_outside_links(target, source, found.sysroot)
    (dest / found.site_dir).mkdir(parents=True, exist_ok=True)
    activate.write(dest)


def _resolve_outside_links(tree: Path, source: Path, sysroot: Path) -> None:
    """Symlinks that leave the copied stdlib would point into the machine the env runs on, or out of the env's
    archive (which then refuses them as unsafe): Debian's sitecustomize.py -> /etc/python3.X/..., absolute in the
    package and made relative by `sysroot create`. Replace each by the file it names inside the sysroot, or drop
    it when the sysroot has none. Links within the stdlib stay links."""
    root = os.path.realpath(sysroot)
    src = os.path.realpath(source)
    for path in sorted(tree.rglob("*")):
        if not path.is_symlink():
            continue
        link = os.readlink(path)
        if os.path.isabs(link):
            named = os.path.normpath(os.path.join(root, link.lstrip("/")))
        else:
            named = os.path.normpath(os.path.join(src, path.parent.relative_to(tree), link))
            if named == src or named.startswith(src + os.sep):
                continue
        path.unlink()
        inside = Path(named)
        if (named == root or named.startswith(root + os.sep)) and inside.is_file():
            shutil.copy2(inside, path)


def bundle_libraries(found: SysrootPython, env_dir: Path) -> list[str]:
    """Copy into env/lib every non-glibc shared library the interpreter, libpython and the stdlib's extension
    modules need, as far as the sysroot has them (the launcher puts env/lib first on LD_LIBRARY_PATH).
    Returns the sonames copied."""
    lib_dir = env_dir / "lib"
    todo = [env_dir / "bin" / f"python{found.minor}", lib_dir / found.libpython.name]
    todo += sorted((lib_dir / found.stdlib.name / "lib-dynload").glob("*.so"))
    copied: list[str] = []
    seen: set[str] = {found.libpython.name}
    while todo:
        binary = todo.pop()
        try:
            needed = elf.read(binary).needed
        except StubforgeError:
            continue
        for soname in needed:
            if soname in seen or _GLIBC.match(soname):
                continue
            seen.add(soname)
            source = next((d / soname for d in found.lib_dirs if (d / soname).exists()), None)
            if source is None:
                continue  # the target machine must provide it (validation names it when it is missing)
            shutil.copy2(source.resolve(), lib_dir / soname)
            copied.append(soname)
            todo.append(lib_dir / soname)
    return sorted(copied)


def foreign_binaries(env_dir: Path, arch: str, limit: int = 5) -> list[str]:
    """Shared libraries and programs in the env built for another architecture than `arch`."""
    wanted = elf.machine_of_arch(arch)
    found: list[str] = []
    for path in sorted(env_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if not (".so" in path.name or path.parent.name == "bin"):
            continue
        machine = elf_machine(path)
        if machine is not None and machine != wanted:
            found.append(f"{path.relative_to(env_dir)} ({elf.arch_of_machine(machine) or machine})")
            if len(found) >= limit:
                break
    return found


def elf_machine(path: Path) -> str | None:
    """e_machine of an ELF file (EM_AARCH64 ...) from its header alone; None for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    number = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return {62: "EM_X86_64", 183: "EM_AARCH64", 40: "EM_ARM", 3: "EM_386"}.get(number, f"EM_{number}")
