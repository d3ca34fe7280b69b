"""`sources fetch` on a machine that cannot reach GitHub or boost's servers: what is cached is used, and a
download that cannot be avoided fails with the mirror settings named. No test here uses the network: git is
pointed at an empty local directory through url.<base>.insteadOf, and boost downloads go to file:// URLs or
to a recording stand-in for `download`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stubforge.core import releases
from stubforge.errors import SourcesError
from stubforge.progress import EventLog
from stubforge.stubs import pins as pins_mod
from stubforge.stubs import sources
from tests.conftest import FIXTURE_SOURCES

pytestmark = pytest.mark.slow

JFROG_URL = "https://boostorg.jfrog.io/artifactory/main/release/1.79.0/source/boost_1_79_0.tar.gz"
ARCHIVE_URL = "https://archives.boost.io/release/1.79.0/source/boost_1_79_0.tar.gz"
PYBIND11_PIN = "aa304c9c7d725ffb9d10af08a3b34cb372307020"  # the fixture's python_backend pins this commit


def _lines(log: EventLog) -> list[str]:
    """The progress lines as a user reads them: step, then detail."""
    return [f"{e.step} {e.detail}" for e in log.events]


@pytest.fixture
def offline_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every github.com URL leads to an empty directory (clones fail at once); returns the URLs git tried."""
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "file://{tmp_path}/unreachable/"]\n\tinsteadOf = https://github.com/\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    tried: list[str] = []
    real_clone = sources._clone

    def recording_clone(url: str, ref: str, dest: Path, commit: str | None = None) -> str | None:
        tried.append(url)
        return real_clone(url, ref, dest, commit)

    monkeypatch.setattr(sources, "_clone", recording_clone)
    return tried


@pytest.fixture
def no_system_googletest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "SYSTEM_GOOGLETEST", tmp_path / "no-system-googletest")


def _r2312_sources(dest: Path, *, googletest: bool = True, boost: bool = False) -> Path:
    """The fixture as r23.12 ships it: boost pinned at the retired JFrog URL (same file, same hash)."""
    shutil.copytree(FIXTURE_SOURCES, dest, symlinks=True)
    cmakelists = dest / "python_backend" / "CMakeLists.txt"
    text = cmakelists.read_text()
    assert ARCHIVE_URL in text, "fixture layout changed"
    cmakelists.write_text(text.replace(ARCHIVE_URL, JFROG_URL))
    if not googletest:
        shutil.rmtree(dest / "googletest")
    if not boost:
        (dest / "boost_1_79_0.tar.gz").unlink()
        shutil.rmtree(dest / "boost")
    return dest


def _import(tree: Path) -> None:
    """Import, then record pybind11's pinned commit as a fetch would (so only the input under test differs)."""
    sources.import_sources("23.12", tree)
    record = sources._load("pybind11", "2.10.0")
    assert record is not None
    record.commit = PYBIND11_PIN
    sources._save(record)


def test_fetch_after_import_uses_the_cached_googletest_and_pybind11(
    cache_root: Path, tmp_path: Path, offline_git: list[str], no_system_googletest: None
) -> None:
    # The imported googletest has no recorded commit (no .git), common pins one by commit: any googletest
    # configures, so nothing is cloned. Same for pybind11, imported without .git but of the pinned version.
    sources.import_sources("23.12", _r2312_sources(tmp_path / "r23.12"))
    log = EventLog()
    stored = sources.fetch_sources("23.12", skip_boost=True, progress=log)
    progress = _lines(log)
    assert offline_git == []
    by_kind = {i.kind: i for i in stored}
    assert by_kind["googletest"].version == "1.12.1"
    assert by_kind["googletest"].path.startswith(str(cache_root))
    assert by_kind["pybind11"].version == "2.10.0"
    assert any(line.startswith("cached googletest 1.12.1 (common pins 9406a60c7839") for line in progress)


def test_cached_googletest_of_another_commit_is_used(
    cache_root: Path, tmp_path: Path, offline_git: list[str], no_system_googletest: None
) -> None:
    _import(_r2312_sources(tmp_path / "r23.12"))
    record = sources._load("googletest", "1.12.1")
    assert record is not None
    record.commit = "0123456789abcdef0123456789abcdef01234567"  # e.g. a v1.13.0 checkout with .git
    sources._save(record)
    stored = sources.fetch_sources("23.12", skip_boost=True)
    assert offline_git == []
    assert [i.commit for i in stored if i.kind == "googletest"] == [record.commit]


def test_googletest_clone_failure_falls_back_to_the_system_googletest(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "usr-src-googletest"
    shutil.copytree(FIXTURE_SOURCES / "googletest", system)
    monkeypatch.setattr(sources, "SYSTEM_GOOGLETEST", system)
    _import(_r2312_sources(tmp_path / "r23.12", googletest=False))
    log = EventLog()
    stored = sources.fetch_sources("23.12", skip_boost=True, progress=log)
    progress = _lines(log)
    assert offline_git == ["https://github.com/google/googletest"]
    googletest = [i for i in stored if i.kind == "googletest"]
    assert googletest and googletest[0].path == str(system)
    assert any(f"builds use {system}" in line for line in progress)
    assert sources.resolve("23.12", boost=FIXTURE_SOURCES / "boost").googletest.path == str(system)


def test_unavoidable_googletest_clone_names_mirror_and_alternatives(
    cache_root: Path, tmp_path: Path, offline_git: list[str], no_system_googletest: None
) -> None:
    _import(_r2312_sources(tmp_path / "r23.12", googletest=False))
    with pytest.raises(SourcesError) as info:
        sources.fetch_sources("23.12", skip_boost=True)
    assert "https://github.com/google/googletest" in info.value.message
    assert "url.<mirror>.insteadOf https://github.com/" in info.value.hint
    assert "apt-get install googletest" in info.value.hint
    assert "stubforge sources import" in info.value.hint
    assert info.value.details  # git's own words


def test_r2312_boost_comes_from_boosts_archive_not_the_dead_pin(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(_r2312_sources(tmp_path / "r23.12"))
    python_backend = sources._load("python_backend", "r23.12")
    assert python_backend is not None
    pin = pins_mod.read(Path(python_backend.path)).boost
    assert pin is not None and pin.url == JFROG_URL
    tried: list[str] = []

    def fake_download(url: str, dest: Path, progress: sources.Progress = print, timeout: float = 60) -> None:
        tried.append(url)
        shutil.copyfile(FIXTURE_SOURCES / "boost_1_79_0.tar.gz", dest)

    monkeypatch.setattr(sources, "download", fake_download)
    log = EventLog()
    stored = sources.fetch_sources("23.12", progress=log)
    progress = _lines(log)
    assert tried == [ARCHIVE_URL]
    boost = next(i for i in stored if i.kind == "boost")
    assert boost.form == "tarball" and boost.origin == f"download {ARCHIVE_URL}"
    assert any("no longer serves boost" in line for line in progress)


def test_boost_url_candidates() -> None:
    release = releases.get("24.10")
    live = pins_mod.BoostPin(
        url="https://example.org/b/boost_1_79_0.tar.gz", sha256=None, version="1.79.0", url_variable=None
    )
    dead = pins_mod.BoostPin(url=JFROG_URL, sha256=None, version="1.79.0", url_variable=None)
    assert sources.boost_download_urls(release, dead, None) == [ARCHIVE_URL]
    assert sources.boost_download_urls(release, live, None) == [live.url, ARCHIVE_URL]
    assert sources.boost_download_urls(release, dead, "file:///m/") == ["file:///m/boost_1_79_0.tar.gz"]
    assert sources.boost_download_urls(release, None, "https://m/{version}/{file}") == [
        "https://m/1.79.0/boost_1_79_0.tar.gz"
    ]


def test_failed_pinned_url_falls_back_to_boosts_archive(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _r2312_sources(tmp_path / "r23.12")
    cmakelists = tree / "python_backend" / "CMakeLists.txt"
    other = "https://mirror.example.invalid/boost/boost_1_79_0.tar.gz"
    cmakelists.write_text(cmakelists.read_text().replace(JFROG_URL, other))
    _import(tree)
    tried: list[str] = []

    def flaky_download(url: str, dest: Path, progress: sources.Progress = print, timeout: float = 60) -> None:
        tried.append(url)
        if url == other:
            raise SourcesError(f"download of {url} failed (gone)", hint="h")
        shutil.copyfile(FIXTURE_SOURCES / "boost_1_79_0.tar.gz", dest)

    monkeypatch.setattr(sources, "download", flaky_download)
    stored = sources.fetch_sources("23.12")
    assert tried == [other, ARCHIVE_URL]
    assert [i.version for i in stored if i.kind == "boost"] == ["1.79.0"]


def test_boost_mirror_from_the_environment(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(_r2312_sources(tmp_path / "r23.12"))
    mirror = tmp_path / "boost-mirror" / "1.79.0"
    mirror.mkdir(parents=True)
    shutil.copy(FIXTURE_SOURCES / "boost_1_79_0.tar.gz", mirror)
    monkeypatch.setenv(sources.BOOST_MIRROR_ENV, f"file://{tmp_path}/boost-mirror/{{version}}/{{file}}")
    stored = sources.fetch_sources("23.12")
    boost = next(i for i in stored if i.kind == "boost")
    assert boost.origin == f"download file://{mirror}/boost_1_79_0.tar.gz"
    assert offline_git == []


def test_unavoidable_boost_download_names_the_mirror_settings(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(_r2312_sources(tmp_path / "r23.12"))
    monkeypatch.setattr(releases, "BOOST_ARCHIVE_BASE", f"file://{tmp_path}/no-archive/")
    with pytest.raises(SourcesError) as info:
        sources.fetch_sources("23.12")
    assert f"download of file://{tmp_path}/no-archive/1.79.0/source/boost_1_79_0.tar.gz failed" in (
        info.value.message
    )
    for setting in ("--mirror URL", sources.BOOST_MIRROR_ENV, "--archive FILE", "--no-boost"):
        assert setting in info.value.hint
    assert not (cache_root / "sources" / "boost" / "1.79.0").exists()


def test_cached_header_tree_is_used_when_no_boost_download_works(
    cache_root: Path, tmp_path: Path, offline_git: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _r2312_sources(tmp_path / "r23.12")
    shutil.copytree(FIXTURE_SOURCES / "boost", tree / "boost")  # a header tree, no tarball
    _import(tree)
    monkeypatch.setattr(releases, "BOOST_ARCHIVE_BASE", f"file://{tmp_path}/no-archive/")
    log = EventLog()
    stored = sources.fetch_sources("23.12", progress=log)
    progress = _lines(log)
    boost = next(i for i in stored if i.kind == "boost")
    assert (boost.form, boost.version) == ("headers", "1.74.0")
    assert any("builds use the cached header tree 1.74.0" in line for line in progress)
    assert sources.resolve("23.12").boost.path == boost.path
