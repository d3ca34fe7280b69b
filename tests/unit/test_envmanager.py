"""EnvironmentManager: directories in place, archives once per (realpath, mtime), unsafe archives refused."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from stubforge.runner.launcher.envmanager import EnvError, EnvironmentManager, safe_extract


def make_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


GOOD = {"bin/activate": b"# activate\n", "bin/python3": b"", "lib/libpython3.8.so.1.0": b""}


def test_directory_is_used_in_place(tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    manager = EnvironmentManager()
    assert manager.resolve(env) == env.resolve()
    manager.close()


def test_archive_extracted_once_and_again_when_it_changes(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "env.tar.gz", GOOD, {"bin/python": "python3"})
    manager = EnvironmentManager()
    try:
        first = manager.resolve(archive)
        assert (first / "bin" / "activate").read_bytes() == b"# activate\n"
        assert os.readlink(first / "bin" / "python") == "python3"
        (first / "marker").write_text("kept while the archive is unchanged")
        assert manager.resolve(archive) == first and (first / "marker").exists()
        make_archive(archive, dict(GOOD, **{"bin/activate": b"# v2\n"}))
        os.utime(archive, (1, 1))  # a different mtime
        second = manager.resolve(archive)
        # A new directory: models still running from the first extraction keep their files until close().
        assert second != first and (first / "marker").exists()
        assert (second / "bin" / "activate").read_bytes() == b"# v2\n"
        assert manager.resolve(archive) == second
    finally:
        manager.close()
    assert not first.exists() and not second.exists()


def test_concurrent_loads_of_one_archive_extract_once(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "env.tar.gz", dict(GOOD, **{"big": os.urandom(4 << 20)}))
    manager = EnvironmentManager()
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(manager.resolve(archive))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert len([p for p in results[0].parent.iterdir() if p.is_dir()]) == 1  # one extraction
    manager.close()


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"../escape": b"x"}, {}, "outside the env directory"),
        ({"/etc/evil": b"x"}, {}, "outside the env directory"),
        (GOOD, {"lib/leak": "../../../etc"}, "points outside the env"),
        (GOOD, {"lib/abs": "/etc/passwd"}, "points outside the env"),
    ],
)
def test_unsafe_archives_are_refused(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str], message: str
) -> None:
    archive = make_archive(tmp_path / "env.tar.gz", members, links)
    with pytest.raises(EnvError, match=message):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "escape").exists()


def test_not_a_tar_is_refused_with_tritons_words(tmp_path: Path) -> None:
    archive = tmp_path / "env.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("bin/activate", "")
    manager = EnvironmentManager()
    try:
        with pytest.raises(EnvError, match=r"archive_read_open_filename\(\) failed"):
            manager.resolve(archive)
    finally:
        manager.close()


def test_archive_without_activate(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "env.tar.gz", {"lib/x": b""})
    manager = EnvironmentManager()
    try:
        with pytest.raises(EnvError, match="bin/activate does not exist"):
            manager.resolve(archive)
    finally:
        manager.close()
