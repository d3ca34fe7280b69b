"""Sysroots read from their files: arch and glibc from libc, Pythons from libpython + headers, in Debian's
multiarch layout, an L4T/Ubuntu rootfs with absolute symlinks, and a plain /usr/local layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stubforge.core import sysroot
from stubforge.core.targets import Target, TargetError

AARCH64_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.so.6")  # libc6-arm64-cross, with g++-aarch64-linux-gnu


def _need_cross_libc() -> None:
    if not AARCH64_LIBC.is_file():
        pytest.skip("no aarch64 libc: apt-get install g++-aarch64-linux-gnu (.ci/run does)")


def make_rootfs(
    root: Path, minor: str = "3.10", *, absolute_links: bool = False, numpy: str | None = None
) -> Path:
    """A board's rootfs in the Debian/Ubuntu multiarch layout (as on a Jetson or an Armbian image)."""
    libdir = root / "usr/lib/aarch64-linux-gnu"
    libdir.mkdir(parents=True)
    shutil.copyfile(AARCH64_LIBC.resolve(), libdir / "libc.so.6")
    (libdir / f"libpython{minor}.so.1.0").write_bytes(b"\x7fELF")
    target = (
        f"/usr/lib/aarch64-linux-gnu/libpython{minor}.so.1.0"
        if absolute_links
        else f"libpython{minor}.so.1.0"
    )
    (libdir / f"libpython{minor}.so").symlink_to(target)
    include = root / f"usr/include/python{minor}"
    include.mkdir(parents=True)
    (include / "Python.h").write_text("")
    (include / "patchlevel.h").write_text(f'#define PY_VERSION "{minor}.12"\n')
    plat = root / f"usr/include/aarch64-linux-gnu/python{minor}"
    plat.mkdir(parents=True)
    (plat / "pyconfig.h").write_text("")
    if numpy:
        site = root / "usr/lib/python3/dist-packages"
        (site / f"numpy-{numpy}.egg-info").mkdir(parents=True)
    return root


def test_multiarch_rootfs_is_read_from_its_files(tmp_path: Path) -> None:
    _need_cross_libc()
    root = make_rootfs(tmp_path / "l4t", absolute_links=True, numpy="1.21.5")
    found = sysroot.describe(root)
    assert found.arch == "aarch64" and found.libc and found.libc.startswith("2.")
    (py,) = found.pythons
    assert py.minor == "3.10" and py.version == "3.10.12" and py.buildable and py.numpy == "1.21.5"
    # The absolute link of a copied rootfs is followed inside the rootfs, never to the host's /usr/lib.
    assert py.libpython == root / "usr/lib/aarch64-linux-gnu/libpython3.10.so.1.0"
    assert py.platinclude_dir == root / "usr/include/aarch64-linux-gnu/python3.10"
    assert found.python("3.10") is py
    target = Target.parse(None, root)
    assert target.arch == "aarch64" and target.libc == found.libc and target.sysroot == root.resolve()


def test_missing_python_names_the_dir_and_what_was_looked_for(tmp_path: Path) -> None:
    _need_cross_libc()
    root = make_rootfs(tmp_path / "armbian")
    found = sysroot.describe(root, "arm64")
    with pytest.raises(sysroot.SysrootError) as info:
        found.python("3.11")
    message = info.value.message
    assert str(root) in message and "libpython3.11.so*" in message and "usr/lib/aarch64-linux-gnu" in message
    assert "3.10" in message and "libpython3.11-dev" in info.value.hint
    (root / "usr/include/python3.10/Python.h").unlink()
    with pytest.raises(sysroot.SysrootError) as info:
        sysroot.describe(root).python("3.10")
    assert "no Python.h" in info.value.message


def test_sysroot_of_another_arch_is_an_error_naming_both(tmp_path: Path) -> None:
    _need_cross_libc()
    root = make_rootfs(tmp_path / "board")
    with pytest.raises(TargetError) as info:
        Target.parse("x86_64", root)
    assert "aarch64" in info.value.message and "x86_64" in info.value.message
    assert "--arch aarch64" in info.value.hint


def test_plain_usr_local_layout(tmp_path: Path) -> None:
    host_libc = next(
        p for p in (Path("/lib/x86_64-linux-gnu/libc.so.6"), Path("/lib64/libc.so.6")) if p.exists()
    )
    root = tmp_path / "plain"
    (root / "lib64").mkdir(parents=True)
    shutil.copyfile(host_libc.resolve(), root / "lib64/libc.so.6")
    (root / "usr/local/lib").mkdir(parents=True)
    (root / "usr/local/lib/libpython3.12.so.1.0").write_bytes(b"\x7fELF")
    (root / "usr/local/include/python3.12").mkdir(parents=True)
    (root / "usr/local/include/python3.12/Python.h").write_text("")
    found = sysroot.describe(root)
    assert found.arch == "x86_64"
    assert found.python("3.12").libpython == root / "usr/local/lib/libpython3.12.so.1.0"
