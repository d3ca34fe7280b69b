"""`stubforge sysroot create`: a target root filesystem from Debian's packages for another architecture.

apt resolves the closure of python3.X, libpython3.X(-dev) and the stub's link dependencies (zlib, libarchive)
for the target architecture against an EMPTY package status, so nothing of the host counts as installed and
nothing is ever installed on the host (`apt install python3.11:arm64` would remove the host's python3). The debs
are kept in the cache, so a second create of the same request is offline; each is unpacked with `dpkg-deb -x`.
The Pythons it can offer are those of the host's Debian release (3.11 on bookworm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import cache, fsutil
from stubforge.core.sysroot import Sysroot, SysrootError, describe
from stubforge.core.targets import Target
from stubforge.progress import QUIET, Progress

# Debian's architecture names by stubforge's.
DEBIAN_ARCH: dict[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}
# What a stub links besides libpython (the real python_backend needs zlib and libarchive on its link line).
BUILD_PACKAGES = ("zlib1g-dev", "libarchive-dev")
RECORD_NAME = ".stubforge-sysroot.json"
APT_TIMEOUT_S = 1800.0
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[(\w+)\]\)")


@dataclass(frozen=True)
class CreateResult:
    sysroot: Sysroot
    debs: list[str]
    downloaded: bool  # False: every deb came from the cache (offline)
    debian_release: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "sysroot": self.sysroot.to_dict(),
            "debs": self.debs,
            "downloaded": self.downloaded,
            "debian_release": self.debian_release,
        }


def debs_dir(debian_arch: str) -> Path:
    path = cache.root() / "debs" / debian_arch
    (path / "partial").mkdir(parents=True, exist_ok=True)
    return path


def debian_release() -> str | None:
    """'bookworm' from /etc/os-release (the release whose packages apt offers)."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, re.M)
    return match.group(1).strip('"') if match else None


def _apt_options(debian_arch: str, status: Path, archives: Path) -> list[str]:
    # An empty status file: apt resolves the full closure as if nothing were installed, for one architecture.
    return [
        "-o", f"Dir::State::status={status}",
        "-o", f"APT::Architecture={debian_arch}",
        "-o", f"APT::Architectures::={debian_arch}",
        "-o", f"Dir::Cache::archives={archives}",
        "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Install-Recommends=0",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "APT::Sandbox::User=" + _user(),
    ]  # fmt: skip


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def offered_pythons(debian_arch: str) -> list[str]:
    """The libpython3.X-dev versions apt knows for the architecture ("3.11" on bookworm)."""
    with tempfile.TemporaryDirectory(prefix="stubforge-apt-") as tmp:
        status = Path(tmp) / "status"
        status.touch()
        opts = _apt_options(debian_arch, status, Path(tmp))
        proc = _run(["apt-cache", *opts, "pkgnames", "libpython3."])
    minors = {m.group(1) for m in re.finditer(r"^libpython(3\.\d+)-dev$", proc.stdout, re.M)}
    return sorted(minors, key=lambda v: tuple(int(p) for p in v.split(".")))


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise SysrootError(
            f"{args[0]} not found: `sysroot create` uses Debian's packages (apt-get, dpkg-deb)",
            hint="on another distribution, copy the target board's root filesystem and pass it as --sysroot",
        ) from exc


def _has_lists(debian_arch: str) -> bool:
    return any(Path("/var/lib/apt/lists").glob(f"*binary-{debian_arch}_Packages*"))


def packages_for(minor: str, numpy: bool, extra: tuple[str, ...] = ()) -> list[str]:
    names = [f"python{minor}", f"libpython{minor}", f"libpython{minor}-dev", *BUILD_PACKAGES]
    if numpy:
        names.append("python3-numpy")
    return names + [e for e in extra if e not in names]


def _resolve_and_download(
    debian_arch: str, packages: list[str], progress: Progress
) -> tuple[list[Path], bool]:
    """The debs of the closure of `packages`: from the cache when a previous run resolved the same request and
    every file is still there (offline), else resolved and downloaded by apt into the cache."""
    archives = debs_dir(debian_arch)
    record = archives / ("resolved-" + "+".join(sorted(packages)) + ".json")
    try:
        names = json.loads(record.read_text())
        files = [archives / n for n in names]
        if names and all(f.is_file() for f in files):
            return files, False
    except (OSError, ValueError):
        pass
    if not _has_lists(debian_arch):
        raise SysrootError(
            f"apt has no package lists for {debian_arch}",
            hint=f"as root: dpkg --add-architecture {debian_arch} && apt-get update",
        )
    with tempfile.TemporaryDirectory(prefix="stubforge-apt-") as tmp:
        status = Path(tmp) / "status"
        status.touch()
        opts = _apt_options(debian_arch, status, archives)
        progress.step("resolve", " ".join(packages))
        sim = _run(["apt-get", *opts, "-s", "-y", "install", *packages])
        if sim.returncode != 0:
            raise _apt_error(sim, debian_arch, packages)
        wanted = [m.groups() for m in (_INST.match(line) for line in sim.stdout.splitlines()) if m]
        progress.step("download", f"{len(wanted)} packages")
        got = _run(["apt-get", *opts, "-q", "--download-only", "-y", "install", *packages])
        if got.returncode != 0:
            raise _apt_error(got, debian_arch, packages)
    files = []
    for name, version, arch in wanted:
        deb = archives / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        if not deb.is_file():
            raise SysrootError(
                f"apt reported {name} {version} ({arch}) but {deb} is not there",
                hint="run the command again; report it if it persists",
            )
        files.append(deb)
    fsutil.write_json_atomic(record, [f.name for f in files])
    return files, True


def _apt_error(proc: subprocess.CompletedProcess[str], debian_arch: str, packages: list[str]) -> SysrootError:
    text = (proc.stderr or proc.stdout).strip()
    missing = re.findall(
        r"Unable to locate package (\S+)|Package '?(\S+?)'? has no installation candidate", text
    )
    if missing:
        names = ", ".join(a or b for a, b in missing)
        return SysrootError(
            f"Debian's {debian_arch} packages have no {names} (release {debian_release() or 'unknown'})",
            hint="`sysroot create` offers only the Python versions of this Debian release; for another version, "
            "copy a board's rootfs that has it and pass it as --sysroot",
        )
    return SysrootError(
        f"apt could not resolve or download {' '.join(packages)} for {debian_arch}",
        hint="check the network (or a previous download in the cache: the same request runs offline), "
        "then run again",
        details=text[-1500:],
    )


def _relativize_links(root: Path) -> None:
    """Absolute symlinks in packages (libz.so -> /lib/aarch64-linux-gnu/libz.so.1) would point at the host;
    make them relative so the tree is self-contained wherever it is moved."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            if target.startswith("/"):
                relative = os.path.relpath(root / target.lstrip("/"), path.parent)
                path.unlink()
                path.symlink_to(relative)


def _merge_usr(root: Path) -> None:
    """Debian bookworm ships the loader as /lib/ld-linux-aarch64.so.1 and libraries in /lib/<triplet>; a
    merged-/usr system finds both through /usr too. Nothing to do when the packages already used usr/."""
    for name in ("lib", "bin", "sbin"):
        top, usr = root / name, root / "usr" / name
        if not top.exists() and usr.is_dir():
            top.symlink_to(f"usr/{name}")


def create(
    directory: str | Path,
    arch: str = "aarch64",
    python: str = "3.11",
    numpy: bool = False,
    extra_packages: tuple[str, ...] = (),
    force: bool = False,
    progress: Progress = QUIET,
) -> CreateResult:
    """Make DIR a sysroot for `arch` holding Debian's Python `python` (e.g. "3.11"), its headers and libpython,
    and zlib/libarchive for the stub's link line. DIR must not exist (or `force`)."""
    target = Target.parse(arch)
    debian_arch = DEBIAN_ARCH.get(target.arch)
    if debian_arch is None:
        raise SysrootError(f"no Debian architecture for {arch!r}", hint="use --arch aarch64 or x86_64")
    minor = python.strip()
    if not re.fullmatch(r"3\.\d+", minor):
        raise SysrootError(
            f"--python {python!r}: give a minor version such as 3.11", hint="e.g. --python 3.11"
        )
    dest = Path(directory).expanduser().absolute()
    if dest.exists() and not force and (not dest.is_dir() or any(dest.iterdir())):
        raise SysrootError(f"{dest} already exists and is not empty", hint="pass --force to replace it")
    packages = packages_for(minor, numpy, extra_packages)
    try:
        debs, downloaded = _resolve_and_download(debian_arch, packages, progress)
    except SysrootError as exc:
        if f"python{minor}" in exc.message or f"libpython{minor}" in exc.message:
            offered = offered_pythons(debian_arch)
            exc.message += f"; it offers Python {', '.join(offered) or 'none'}"
        raise
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        progress.step("unpack", f"{len(debs)} debs")
        for deb in debs:
            proc = _run(["dpkg-deb", "-x", str(deb), str(staging)])
            if proc.returncode != 0:
                raise SysrootError(
                    f"dpkg-deb could not unpack {deb}",
                    hint=f"delete it from {deb.parent} and run again (it is downloaded again)",
                    details=proc.stderr.strip()[-1000:],
                )
        _relativize_links(staging)
        _merge_usr(staging)
        release = debian_release()
        record = {
            "arch": target.arch,
            "debian_arch": debian_arch,
            "debian_release": release,
            "python": minor,
            "packages": packages,
            "debs": [d.name for d in debs],
        }
        fsutil.write_json_atomic(staging / RECORD_NAME, record)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    described = describe(dest, target.arch)
    described.python(minor)  # raises, naming what is missing, if the packages did not deliver it
    return CreateResult(described, [d.name for d in debs], downloaded, release)
