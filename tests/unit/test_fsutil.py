"""Atomic writes, staged directories and numbered backups: nothing half-written, nothing lost."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from stubforge.core import fsutil
from stubforge.errors import StubforgeError
from stubforge.triton.config import ConfigError


@pytest.mark.parametrize("failure", [ConfigError("rejected"), KeyboardInterrupt()])
def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, failure: BaseException) -> None:
    target = tmp_path / "config.pbtxt"
    target.write_bytes(b"original\n")
    seen: list[bytes] = []

    def check(tmp: Path) -> None:
        seen.append(tmp.read_bytes())  # the complete new content is there before anything is replaced
        assert tmp.parent == tmp_path
        raise failure

    with pytest.raises(type(failure)):
        fsutil.write_atomic(target, b"new\n", mode=0o600, check=check)
    assert seen == [b"new\n"]
    assert target.read_bytes() == b"original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt"]


def test_atomic_write_success(tmp_path: Path) -> None:
    target = tmp_path / "file"
    fsutil.write_atomic(target, b"data", mode=0o604)
    assert target.read_bytes() == b"data" and stat.S_IMODE(target.stat().st_mode) == 0o604
    with pytest.raises(ConfigError, match="cannot write in"):
        fsutil.write_atomic(tmp_path / "missing" / "file", b"data", error=ConfigError)


def test_atomic_write_errors_default_to_stubforge_error(tmp_path: Path) -> None:
    with pytest.raises(StubforgeError, match="cannot write in") as info:
        fsutil.write_atomic(tmp_path / "missing" / "file", b"data")
    assert type(info.value) is StubforgeError
    (tmp_path / "dir").mkdir()  # os.replace cannot put a file over a directory: the write itself fails
    with pytest.raises(StubforgeError, match=r"cannot write .*dir \("):
        fsutil.write_atomic(tmp_path / "dir", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


def test_atomic_file_streams_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with fsutil.atomic_file(target, mode=0o640) as fh:
        fh.write(b"a")
        fh.write(b"b")
        assert not target.exists()  # nothing is visible before the block ends
    assert target.read_bytes() == b"ab" and stat.S_IMODE(target.stat().st_mode) == 0o640
    with pytest.raises(RuntimeError), fsutil.atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("stopped")
    assert target.read_bytes() == b"ab"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_copy_and_json(tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.write_bytes(b"\x7fELF" + bytes(range(256)) * 8192)  # larger than one copy block
    copy = tmp_path / "copies" / "tool"
    copy.parent.mkdir()
    fsutil.copy_atomic(source, copy, mode=0o755)
    assert copy.read_bytes() == source.read_bytes() and stat.S_IMODE(copy.stat().st_mode) == 0o755
    manifest = tmp_path / "new" / "dir" / "manifest.json"
    fsutil.write_json_atomic(manifest, {"b": 1, "a": [1, 2]})
    assert manifest.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert json.loads(manifest.read_text()) == {"a": [1, 2], "b": 1}
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o644


def test_staging_dir_replaces_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "artifact"
    with fsutil.staging_dir(final) as staging:
        (staging / "v1").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["v1"]
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
    with pytest.raises(KeyboardInterrupt), fsutil.staging_dir(final) as staging:
        (staging / "v2").write_text("2")
        raise KeyboardInterrupt
    assert sorted(p.name for p in final.iterdir()) == ["v1"]  # the old artifact stays whole
    with fsutil.staging_dir(final) as staging:
        (staging / "v3").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["v3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # no staging or old dirs left


def test_backup_path_numbers_and_reuses(tmp_path: Path) -> None:
    target = tmp_path / "config.pbtxt"
    assert fsutil.backup_path(target, b"v1") == (tmp_path / "config.pbtxt.bak", True)
    (tmp_path / "config.pbtxt.bak").write_bytes(b"v1")
    assert fsutil.backup_path(target, b"v1") == (tmp_path / "config.pbtxt.bak", False)
    assert fsutil.backup_path(target, b"v2") == (tmp_path / "config.pbtxt.bak.1", True)
    (tmp_path / "config.pbtxt.bak.1").symlink_to(tmp_path / "config.pbtxt.bak")  # never written through
    assert fsutil.backup_path(target, b"v1") == (tmp_path / "config.pbtxt.bak", False)
    assert fsutil.backup_path(target, b"v2") == (tmp_path / "config.pbtxt.bak.2", True)
