from __future__ import annotations

import pytest

from stubforge.core import releases
from stubforge.errors import ReleaseError
from stubforge.stubs import pins
from tests.conftest import FIXTURE_SOURCES


@pytest.mark.parametrize("spec", ["24.10", "r24.10", "2.51.0", " 24.10 "])
def test_release_specs(spec: str) -> None:
    assert releases.normalize(spec) == "r24.10"


@pytest.mark.parametrize(
    ("branch", "server", "pybind11", "boost", "url_variable", "cmake"),
    [
        ("r23.12", "2.41.0", "2.10.0", "1.79.0", False, "3.17"),
        ("r24.10", "2.51.0", "2.10.0", "1.79.0", False, "3.17"),
        ("r24.11", "2.52.0", "2.12.0", "1.79.0", False, "3.17"),
        ("r25.06", "2.59.0", "2.12.0", "1.79.0", False, "3.17"),
        ("r25.08", None, "2.12.0", "1.79.0", False, "3.31.8"),
        ("r25.11", None, "2.12.0", "1.80.0", True, "3.31.8"),
        ("r26.04", "2.68.0", "2.12.0", "1.80.0", True, "3.31.8"),
        ("r26.07", "2.71.0", "2.12.0", "1.80.0", True, "3.31.8"),
    ],
)
def test_release_table_matches_upstream_branches(
    branch: str, server: str | None, pybind11: str, boost: str, url_variable: bool, cmake: str
) -> None:
    release = releases.KNOWN[branch]
    assert (release.triton_version, release.pybind11, release.boost) == (server, pybind11, boost)
    assert release.boost_via_url_variable is url_variable
    assert release.cmake_minimum == cmake


@pytest.mark.parametrize("spec", ["24.1", "main", "2.99.0", "v24.10"])
def test_bad_release_specs(spec: str) -> None:
    with pytest.raises(ReleaseError) as info:
        releases.normalize(spec)
    assert info.value.hint


def test_unknown_release_uses_newest_older_knowledge_but_no_unity() -> None:
    release = releases.get("26.09")
    assert release.branch == "r26.09"
    assert release.triton_version is None
    assert release.boost_via_url_variable
    assert not release.unity_proven


def test_pins_read_from_fixture_cmakelists() -> None:
    read = pins.read(FIXTURE_SOURCES / "python_backend")
    assert read.project == "tritonpythonbackend"
    assert read.cmake_minimum == "3.17"
    assert read.declared["pybind11"].version == "2.10.0"
    assert read.declared["dlpack"].version == "0.8"
    assert read.boost is not None and read.boost.version == "1.79.0"
    assert read.boost.url_variable is None
    assert read.boost.sha256 and len(read.boost.sha256) == 64


def test_boost_url_variable_form() -> None:
    text = """
set(TRITON_BOOST_URL "https://archives.boost.io/release/1.80.0/source/boost_1_80_0.tar.gz" CACHE STRING "x")
ExternalProject_Add(
  boostorg
  URL ${TRITON_BOOST_URL}
  URL_HASH SHA256=4b2136f98bdd1f5857f1c3dea9ac2018effe65286cf251534b6ae20cc45e1847
  PREFIX "boost-src"
)
"""
    pin = pins.parse_boost(text)
    assert pin is not None
    assert pin.url_variable == "TRITON_BOOST_URL"
    assert pin.version == "1.80.0"
    assert pin.url.endswith("boost_1_80_0.tar.gz")


def test_googletest_pin_comes_from_common_as_a_commit_archive() -> None:
    decl = pins.googletest_pin(FIXTURE_SOURCES / "common")
    assert decl is not None
    assert pins.commit_of(decl) == "9406a60c7839052e4944ea4dbc8344762a89f9bd"


def test_too_old_cmake_names_what_to_install() -> None:
    from stubforge.errors import BuildError
    from stubforge.stubs import upstream

    with pytest.raises(BuildError) as info:
        upstream.find_cmake("99.0")
    assert "no CMake >= 99.0 found; found " in info.value.message
    assert "pip install 'cmake>=99.0'" in info.value.hint
    assert upstream.find_cmake("3.17").version_tuple >= (3, 17)
