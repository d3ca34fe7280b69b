"""`sources fetch` against local git repositories reached through git's url.<base>.insteadOf, the same
mechanism users rely on for gitee-style mirrors, and boost archives through --mirror and --archive."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stubforge.errors import SourcesError
from stubforge.stubs import sources
from tests.conftest import FIXTURE_SOURCES

pytestmark = pytest.mark.slow

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV}
    )
    return proc.stdout.strip()


def _repo(src: Path, dest: Path, ref: str, tag: bool = False) -> str:
    """A repository with the fixture tree committed on branch/tag `ref`; returns the commit."""
    shutil.copytree(src, dest)
    _git("init", "-q", "-b", "main", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-qm", "fixture", cwd=dest)
    if tag:
        _git("tag", ref, cwd=dest)
    else:
        _git("branch", ref, cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local stand-ins for github.com, wired in with insteadOf in a private git config."""
    root = tmp_path / "mirror"
    org = root / "triton-inference-server"
    org.mkdir(parents=True)
    pyb_commit = _repo(FIXTURE_SOURCES / "pybind11", root / "pybind" / "pybind11", "v2.10.0", tag=True)
    _repo(FIXTURE_SOURCES / "pybind11-2.12.0", root / "pybind" / "pybind11-2.12", "v2.12.0", tag=True)
    # One repo holding both pybind11 tags, like upstream.
    _git(
        "fetch",
        "-q",
        str(root / "pybind" / "pybind11-2.12"),
        "refs/tags/v2.12.0:refs/tags/v2.12.0",
        cwd=root / "pybind" / "pybind11",
    )
    _repo(FIXTURE_SOURCES / "dlpack", root / "dmlc" / "dlpack", "v0.8", tag=True)
    gt_commit = _repo(FIXTURE_SOURCES / "googletest", root / "google" / "googletest", "unused", tag=True)
    # Pin what our stand-in repos really hold, the way the real CMakeLists pin commits.
    pb = tmp_path / "pb-src"
    shutil.copytree(FIXTURE_SOURCES / "python_backend", pb)
    cml = pb / "CMakeLists.txt"
    cml.write_text(cml.read_text().replace("aa304c9c7d725ffb9d10af08a3b34cb372307020", pyb_commit))
    common = tmp_path / "common-src"
    shutil.copytree(FIXTURE_SOURCES / "common", common)
    for f in common.rglob("CMakeLists.txt"):
        f.write_text(f.read_text().replace("9406a60c7839052e4944ea4dbc8344762a89f9bd", gt_commit))
    _repo(pb, org / "python_backend.git", "r24.10")
    _repo(common, org / "common.git", "r24.10")
    for name in ("core", "backend"):
        _repo(FIXTURE_SOURCES / name, org / f"{name}.git", "r24.10")
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "file://{root}/"]\n\tinsteadOf = https://github.com/\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return root


def test_fetch_through_insteadof_mirror(cache_root: Path, mirror: Path) -> None:
    boost_dir = mirror / "boost"
    boost_dir.mkdir()
    shutil.copy(FIXTURE_SOURCES / "boost_1_79_0.tar.gz", boost_dir)
    stored = sources.fetch_sources("24.10", mirror=f"file://{boost_dir}/", extra_pybind11=("2.12.0",))
    kinds = {(i.kind, i.version) for i in stored}
    assert {
        ("python_backend", "r24.10"),
        ("common", "r24.10"),
        ("core", "r24.10"),
        ("backend", "r24.10"),
        ("pybind11", "2.10.0"),
        ("pybind11", "2.12.0"),
        ("dlpack", "0.8"),
        ("googletest", "1.12.1"),
        ("boost", "1.79.0"),
    } <= kinds
    assert all(i.commit for i in stored if i.form == "tree")
    rows = sources.list_sources()
    assert rows[0]["complete"] is True
    # A second fetch finds everything cached and clones nothing.
    again = sources.fetch_sources("24.10", mirror=f"file://{boost_dir}/")
    assert [i.path for i in again][:4] == [i.path for i in stored][:4]


def test_moved_pin_is_refused(cache_root: Path, mirror: Path) -> None:
    # Upstream's tag now points elsewhere than python_backend's pinned commit.
    repo = mirror / "pybind" / "pybind11"
    (repo / "extra.txt").write_text("moved")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "move", cwd=repo)
    _git("tag", "-f", "v2.10.0", cwd=repo)
    with pytest.raises(SourcesError, match="but python_backend pins"):
        sources.fetch_sources("24.10", skip_boost=True)
    assert not (cache_root / "sources" / "pybind11" / "2.10.0").exists()


def test_corrupt_boost_archive_is_refused_and_not_stored(
    cache_root: Path, mirror: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "boost_1_79_0.tar.gz"
    bad.write_bytes(b"not boost")
    with pytest.raises(SourcesError) as info:
        sources.fetch_sources("24.10", archive=bad)
    assert "does not match the pinned" in info.value.message
    assert not (cache_root / "sources" / "boost" / "1.79.0").exists()


def test_unreachable_boost_mirror_names_alternatives(cache_root: Path, mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(SourcesError) as info:
        sources.fetch_sources("24.10", mirror=f"file://{tmp_path}/nowhere/")
    assert "download of file://" in info.value.message
    assert "--archive FILE" in info.value.hint
    assert not any((cache_root / "sources").glob("**/.boost*"))


def test_unreachable_git_names_the_mirror_fix(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "file://{tmp_path}/empty/"]\n\tinsteadOf = https://github.com/\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    with pytest.raises(SourcesError) as info:
        sources.fetch_sources("24.10")
    assert "git clone https://github.com/triton-inference-server/python_backend.git r24.10 failed" in (
        info.value.message
    )
    assert "insteadOf" in info.value.hint
    assert not (cache_root / "sources" / "triton" / "r24.10").exists()


def test_import_refuses_wrong_branch_and_leaves_cache_empty(cache_root: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    for name in ("python_backend", "common", "core", "backend"):
        _repo(FIXTURE_SOURCES / name, layout / name, "r24.10")
    _git("checkout", "-q", "r24.10", cwd=layout / "python_backend")
    with pytest.raises(SourcesError, match=r"is on branch main, not r24\.10"):
        sources.import_sources("24.10", layout)
    assert not (cache_root / "sources" / "triton").exists()


def test_import_missing_repo(cache_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SourcesError) as info:
        sources.import_sources("24.10", tmp_path)
    assert "lacks python_backend/, common/, core/, backend/" in info.value.message


def test_import_with_bad_tarball_stores_nothing(cache_root: Path, fixture_copy: Path) -> None:
    (fixture_copy / "boost_1_79_0.tar.gz").write_bytes(b"truncated")
    with pytest.raises(SourcesError, match="does not match the pinned"):
        sources.import_sources("24.10", fixture_copy)
    assert not (cache_root / "sources" / "triton").exists()


def test_imported_header_tree_is_copied(cache_root: Path, fixture_copy: Path) -> None:
    sources.import_sources("24.10", fixture_copy)
    shutil.rmtree(fixture_copy)  # the USB stick is gone
    resolved = sources.resolve("24.10", boost=None)
    headers = [r for r in sources._stored("boost") if r.form == "headers"]
    assert headers and Path(headers[0].path, "boost", "version.hpp").is_file()
    assert resolved.boost.form == "tarball"  # the genuine pinned tarball still wins when present
