"""pack-env's archive writer (igzip on two threads) and pruning, read back by the libarchive Triton links."""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from stubforge.envs import pack
from stubforge.errors import StubforgeError

ARCHIVE_EOF, ARCHIVE_OK = 1, 0


def _tree(root: Path) -> Path:
    """An env-shaped tree: text and incompressible files over several 1 MiB blocks, links, bytecode."""
    (root / "bin").mkdir(parents=True)
    site = root / "lib" / "python3.8" / "site-packages"
    (site / "pkg" / "__pycache__").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n" * 50_000)
    (site / "pkg" / "__pycache__" / "__init__.cpython-38.pyc").write_bytes(b"bytecode")
    (site / "pkg" / "blob.bin").write_bytes(os.urandom(3 << 20))
    (root / "bin" / "python3.8").write_bytes(b"\x7fELF" + bytes(5000))
    (root / "bin" / "python3.8").chmod(0o700)
    (root / "bin" / "python3").symlink_to("python3.8")
    os.link(site / "pkg" / "blob.bin", site / "pkg" / "same.bin")
    return root


def _libarchive_members(path: Path) -> dict[str, bytes]:
    """Every member read with the system's libarchive, gzip filter + tar format, as Triton's extraction does."""
    name = ctypes.util.find_library("archive")
    assert name, "libarchive is needed (Debian: libarchive13, installed with libarchive-dev by .ci/run)"
    lib = ctypes.CDLL(name)
    lib.archive_read_new.restype = ctypes.c_void_p
    lib.archive_read_support_filter_gzip.argtypes = [ctypes.c_void_p]
    lib.archive_read_support_format_tar.argtypes = [ctypes.c_void_p]
    lib.archive_read_open_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.archive_read_next_header.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.archive_entry_pathname.argtypes = [ctypes.c_void_p]
    lib.archive_entry_pathname.restype = ctypes.c_char_p
    lib.archive_read_data.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.archive_read_data.restype = ctypes.c_ssize_t
    lib.archive_error_string.argtypes = [ctypes.c_void_p]
    lib.archive_error_string.restype = ctypes.c_char_p
    lib.archive_read_free.argtypes = [ctypes.c_void_p]
    handle = lib.archive_read_new()
    lib.archive_read_support_filter_gzip(handle)
    lib.archive_read_support_format_tar(handle)
    members: dict[str, bytes] = {}
    try:
        assert lib.archive_read_open_filename(handle, str(path).encode(), 1 << 16) == ARCHIVE_OK
        entry = ctypes.c_void_p()
        buf = ctypes.create_string_buffer(1 << 16)
        while (status := lib.archive_read_next_header(handle, ctypes.byref(entry))) == ARCHIVE_OK:
            chunks = []
            while (got := lib.archive_read_data(handle, buf, len(buf))) > 0:
                chunks.append(buf.raw[:got])
            assert got == 0, lib.archive_error_string(handle)
            members[lib.archive_entry_pathname(entry).decode()] = b"".join(chunks)
        assert status == ARCHIVE_EOF, lib.archive_error_string(handle)
    finally:
        lib.archive_read_free(handle)
    return members


def test_libarchive_gnu_tar_and_python_read_the_archive(tmp_path: Path) -> None:
    env = _tree(tmp_path / "env")
    out = tmp_path / "env.tar.gz"
    pack.write_archive(env, out)
    blob = (env / "lib/python3.8/site-packages/pkg/blob.bin").read_bytes()
    members = _libarchive_members(out)
    assert members["lib/python3.8/site-packages/pkg/blob.bin"] == blob
    assert members["lib/python3.8/site-packages/pkg/__init__.py"] == b"VALUE = 1\n" * 50_000
    assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]
    listing = subprocess.run(["tar", "-tvzf", str(out)], capture_output=True, text=True, check=True).stdout
    assert "bin/python3 -> python3.8" in listing
    with tarfile.open(out) as tar:
        same = tar.getmember("lib/python3.8/site-packages/pkg/same.bin")
        assert same.islnk() and same.linkname == "lib/python3.8/site-packages/pkg/blob.bin"
        assert tar.getmember("bin/python3.8").mode == 0o755
        assert all(m.uid == 0 and m.uname == "" and m.mtime == pack.FIXED_MTIME for m in tar.getmembers())
    with gzip.open(out) as fh:  # one gzip stream, checksum and length trailer included
        assert len(fh.read()) > 3 << 20


def test_bytes_do_not_depend_on_the_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _tree(tmp_path / "env")
    outputs = []
    for threads in (1, 2):
        monkeypatch.setattr(pack, "_threads", lambda n=threads: n)
        out = tmp_path / f"t{threads}.tar.gz"
        pack.write_archive(env, out)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_a_fifo_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    env = _tree(tmp_path / "env")
    os.mkfifo(env / "bin" / "pipe")
    out = tmp_path / "out" / "env.tar.gz"
    with pytest.raises(StubforgeError, match="pipe: neither a file"):
        pack.write_archive(env, out)
    assert list(out.parent.iterdir()) == []


def test_default_prune_keeps_bytecode_and_drops_tests_exe_and_headers(tmp_path: Path) -> None:
    env = _tree(tmp_path / "env")
    site = env / "lib/python3.8/site-packages"
    (site / "pkg" / "tests").mkdir()
    (site / "pkg" / "tests" / "test_it.py").write_text("x" * 1000)
    (site / "pip" / "_vendor").mkdir(parents=True)
    (site / "pip" / "_vendor" / "w64.exe").write_bytes(bytes(2000))
    (env / "include" / "python3.8").mkdir(parents=True)
    (env / "include" / "python3.8" / "Python.h").write_text("/* */")
    (site / "pkg" / "core.h").write_text("/* */")
    freed = pack.prune(env)
    assert freed >= 3000
    assert not (site / "pkg" / "tests").exists() and not (site / "pip" / "_vendor" / "w64.exe").exists()
    assert not (env / "include").exists() and not (site / "pkg" / "core.h").exists()
    assert (site / "pkg" / "__pycache__" / "__init__.cpython-38.pyc").exists()
    assert (site / "pkg" / "blob.bin").exists() and (env / "bin" / "python3").is_symlink()


def test_headers_stay_when_a_package_compiles_at_run_time(tmp_path: Path) -> None:
    env = _tree(tmp_path / "env")
    site = env / "lib/python3.8/site-packages"
    (site / "torch-2.3.0.dist-info").mkdir()
    (site / "torch" / "include").mkdir(parents=True)
    (site / "torch" / "include" / "torch.h").write_text("/* */")
    (env / "include" / "python3.8").mkdir(parents=True)
    (env / "include" / "python3.8" / "Python.h").write_text("/* */")
    assert pack.keeps_headers(env) == ["torch"]
    pack.prune(env, headers=False)
    assert (site / "torch" / "include" / "torch.h").exists() and (env / "include/python3.8/Python.h").exists()


def test_the_launchs_bytecode_ends_the_archive_in_place_of_the_envs_own(tmp_path: Path) -> None:
    env = _tree(tmp_path / "env")
    pyc = "lib/python3.8/site-packages/pkg/__pycache__/__init__.cpython-38.pyc"
    stdlib_pyc = "lib/python3.8/__pycache__/os.cpython-38.pyc"
    tmp = pack.write_unpublished(
        env, tmp_path / "env.tar.gz", bytecode=lambda: {stdlib_pyc: b"os code", pyc: b"launch's code"}
    )
    members = _libarchive_members(tmp)
    assert members[pyc] == b"launch's code"  # not the env's own b"bytecode"
    assert members[stdlib_pyc] == b"os code"
    with tarfile.open(tmp) as tar:
        names = tar.getnames()
        added = [m for m in tar.getmembers() if "__pycache__" in m.name]
    # After every file of the env, each __pycache__ before its files, in a fixed order, with fixed metadata.
    assert names[-4:] == [
        "lib/python3.8/__pycache__",
        stdlib_pyc,
        "lib/python3.8/site-packages/pkg/__pycache__",
        pyc,
    ]
    assert [(m.isdir(), m.mode) for m in added] == [(True, 0o755), (False, 0o644)] * 2
    assert all(m.mtime == pack.FIXED_MTIME and m.uid == 0 and m.uname == "" for m in added)


@pytest.mark.parametrize("name", ["../x/__pycache__/a.pyc", "/abs/__pycache__/a.pyc", "lib/a.pyc"])
def test_bytecode_outside_a_pycache_of_the_env_is_refused_and_nothing_is_left(
    tmp_path: Path, name: str
) -> None:
    env = _tree(tmp_path / "env")
    out = tmp_path / "out" / "env.tar.gz"
    with pytest.raises(StubforgeError, match=r"not a \.pyc inside a __pycache__"):
        pack.write_unpublished(env, out, bytecode=lambda: {name: b"x"})
    assert list(out.parent.iterdir()) == []
