"""Outputs are claimed atomically: two runs for one name never both succeed, nothing is silently replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from stubforge.core import fsutil


def test_publish_never_replaces_without_being_asked(tmp_path: Path) -> None:
    final = tmp_path / "e.tar.gz"
    final.write_bytes(b"theirs")
    tmp = tmp_path / ".e.tar.gz.tmp"
    tmp.write_bytes(b"ours")
    with pytest.raises(FileExistsError):
        fsutil.publish(tmp, final, replace=False)
    assert final.read_bytes() == b"theirs" and tmp.exists()
    fsutil.publish(tmp, final, replace=True)
    assert final.read_bytes() == b"ours" and not tmp.exists()


def test_publish_directories(tmp_path: Path) -> None:
    final = tmp_path / "env"
    (final / "bin").mkdir(parents=True)
    new = tmp_path / ".env.new"
    (new / "lib").mkdir(parents=True)
    with pytest.raises(OSError):
        fsutil.publish(new, final, replace=False)
    assert (final / "bin").is_dir() and not (final / "lib").exists()
    empty = tmp_path / "empty"
    empty.mkdir()  # rename(2) would silently replace an empty directory; a claim must not
    with pytest.raises(OSError):
        fsutil.publish(new, empty, replace=False)
    fsutil.publish(new, final, replace=True)
    assert (final / "lib").is_dir() and not (final / "bin").exists()
    other = tmp_path / ".other"
    other.mkdir()
    fsutil.publish(other, tmp_path / "fresh", replace=False)
    assert (tmp_path / "fresh").is_dir() and not other.exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["-o", "--dir"])
def test_two_pack_envs_for_one_output_at_once(cache_root: Path, tmp_path: Path, flag: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / ("e.tar.gz" if flag == "-o" else "env")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "stubforge", "pack-env", "--python", "3.8", flag, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, STUBFORGE_CACHE=str(cache_root)),
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=900) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(err for p, (_, err) in zip(procs, results) if p.returncode == 2)
    assert "already exists" in loser and "Traceback" not in loser
    if flag == "-o":
        with tarfile.open(target) as tar:
            assert "bin/python3" in tar.getnames()
        assert sorted(p.name for p in out_dir.iterdir()) == ["e.tar.gz", "e.tar.gz.stubforge.json"]
    else:
        assert (target / "bin" / "python3").exists()
        assert [p.name for p in out_dir.iterdir()] == ["env"]
