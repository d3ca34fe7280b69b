"""Archive member lists kept in the cache: listed once per content, the same answers as listing afresh."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from stubforge.triton import envinfo, member_index


def _archive(path: Path, files: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755 if name.startswith("bin/") else 0o644, 7
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return path


FILES = {
    "bin/activate": b"# activate\n",
    "lib/libpython3.10.so.1.0": b"\x7fELF" + bytes(3000),
    "x.txt": b"hello",
}


def _facts(contents: envinfo.EnvContents) -> list[tuple[object, ...]]:
    return [(m.name, m.type, m.size, m.mode, m.linkname, m.mtime) for m in contents.member_list]


def test_a_second_look_reads_the_kept_list_and_gets_the_same_answers(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _archive(tmp_path / "env.tar.gz", FILES, link=("bin/python3", "python3.10"))
    first = envinfo.EnvContents(path)
    assert len(list((cache_root / "archive-index").glob("*.json"))) == 1

    def no_listing(_path: Path) -> list[tarfile.TarInfo]:
        raise AssertionError("listed again")

    monkeypatch.setattr(envinfo, "_list_members", no_listing)
    second = envinfo.EnvContents(path)
    assert _facts(second) == _facts(first)
    assert second.python() == "3.10" and second.has("bin/python3") and second.has("bin/activate")
    assert second.read("x.txt") == b"hello"  # a member's bytes, found through the kept offsets


def test_other_bytes_of_the_same_size_at_the_same_path_are_listed_afresh(
    cache_root: Path, tmp_path: Path
) -> None:
    path = _archive(tmp_path / "env.tar.gz", FILES)
    assert envinfo.EnvContents(path).has("x.txt")
    renamed = {("y.txt" if k == "x.txt" else k): v for k, v in FILES.items()}
    data = _archive(tmp_path / "other.tar.gz", renamed).read_bytes()
    with open(path, "r+b") as fh:  # rewritten in place: same inode, maybe the same size and mtime
        fh.write(data)
        fh.truncate()
    contents = envinfo.EnvContents(path)
    assert contents.has("y.txt") and not contents.has("x.txt")


def test_a_damaged_kept_list_is_ignored(cache_root: Path, tmp_path: Path) -> None:
    path = _archive(tmp_path / "env.tar.gz", FILES)
    envinfo.EnvContents(path)
    (kept,) = (cache_root / "archive-index").glob("*.json")
    kept.write_text(json.dumps({"schema": 1, "identity": kept.stem, "members": [["x"]]}))
    assert envinfo.EnvContents(path).python() == "3.10"
    kept.write_text("{not json")
    assert envinfo.EnvContents(path).read("x.txt") == b"hello"


def test_only_the_most_recent_lists_are_kept(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(member_index, "KEPT", 2)
    for index in range(4):
        envinfo.EnvContents(_archive(tmp_path / f"e{index}.tar.gz", {**FILES, "n": str(index).encode()}))
    assert len(list((cache_root / "archive-index").glob("*.json"))) == 2


def test_an_unreadable_archive_still_raises_a_read_error(cache_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(envinfo.READ_ERRORS):
        envinfo.EnvContents(path)
    assert not list((cache_root / "archive-index").glob("*.json"))  # nothing kept for it
