"""An aarch64 sysroot and runner stub for tests and benchmarks, made the way docs/aarch64.md describes by hand.

The sysroot: Debian's arm64 python3.11 and its dependencies, fetched with `apt-get download` and unpacked with
`dpkg-deb -x` (needs `dpkg --add-architecture arm64`, done by .ci/run). STUBFORGE_TEST_SYSROOT names an
existing one instead. The runner stub: stub_src/sfstub.c compiled with aarch64-linux-gnu-gcc against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SFSTUB = Path(__file__).resolve().parent.parent / "stub_src" / "sfstub.c"
ROOTS = ("python3.11:arm64", "libpython3.11:arm64", "libpython3.11-dev:arm64")
# Never unpacked into a sysroot: tools of the package manager, not libraries the Python needs.
_SKIP = ("dpkg", "install-info", "perl", "tar", "debconf", "libperl", "linux-libc-dev", "libc-dev-bin")
TRIPLET = "aarch64-linux-gnu"


def _arm64_closure() -> list[str]:
    proc = subprocess.run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *ROOTS,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    names = {line.strip() for line in proc.stdout.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(n for n in names if n.endswith(":arm64") and not n.split(":")[0].startswith(_SKIP))


def sysroot(dest: Path) -> Path:
    """A Debian 12 arm64 root with python3.11 and libpython3.11(-dev) (cached in dest)."""
    given = os.environ.get("STUBFORGE_TEST_SYSROOT")
    if given:
        return Path(given)
    if (dest / "usr" / "bin" / "python3.11").is_file():
        return dest
    debs = dest.parent / f"{dest.name}-debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *_arm64_closure()], cwd=debs, check=True, timeout=900)
    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, timeout=300)
    staging.rename(dest)
    return dest


def runner_stub(root: Path, dest: Path) -> Path:
    """The runner's stub for aarch64 Python 3.11, cross-compiled against the sysroot."""
    libdirs = [root / "usr" / "lib" / TRIPLET, root / "lib" / TRIPLET]
    subprocess.run(
        [
            f"{TRIPLET}-gcc",
            "-O2",
            "-Wall",
            "-std=gnu99",
            f"-I{root}/usr/include/python3.11",
            f"-idirafter{root}/usr/include",  # Debian's pyconfig.h includes <aarch64-linux-gnu/...>
            str(SFSTUB),
            str(root / "usr" / "lib" / TRIPLET / "libpython3.11.so.1.0"),
            "-Wl,-rpath-link," + ":".join(str(d) for d in libdirs),
            "-lpthread",
            "-lrt",
            "-o",
            str(dest),
        ],
        check=True,
        timeout=300,
    )
    return dest
