"""What stubforge knows about each Triton release, kept as data.

The fetched python_backend CMakeLists is the source of truth for pins (see build/pins.py); the values here are
the fallback used before sources exist (which pybind11/dlpack/boost to fetch) and the facts no file records
(which launcher the server uses, which build modes are proven).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stubforge.errors import ReleaseError

BOOST_ARCHIVE_BASE = "https://archives.boost.io/release/"
# The release stubforge assumes when --triton is not given (the one nvidia-pytriton 0.7.0 ships: 2.51.0).
DEFAULT_TRITON = "24.10"


@dataclass(frozen=True)
class Release:
    branch: str  # rYY.MM, the branch name of every Triton repository for this release
    triton_version: str | None  # server version 2.NN.0, None where not known
    pybind11: str  # pinned pybind11 version
    dlpack: str
    googletest: str
    boost: str  # boost version of the ExternalProject / TRITON_BOOST_URL download
    boost_sha256: str | None
    boost_via_url_variable: bool  # r25.11+: TRITON_BOOST_URL; before: fixed URL, no override
    cmake_minimum: str
    # r24.10 and earlier start the stub through `bash -c` and probe it with no arguments first (TRITON_FACTS §1).
    launcher: str  # "bash" or "execv"
    # Unity build proven equivalent (symbols + behaviour in a real server) for this release (TRITON_FACTS §7).
    unity_proven: bool

    @property
    def yymm(self) -> str:
        return self.branch[1:]

    @property
    def boost_tarball_name(self) -> str:
        return f"boost_{self.boost.replace('.', '_')}.tar.gz"

    @property
    def boost_url(self) -> str:
        return f"{BOOST_ARCHIVE_BASE}{self.boost}/source/{self.boost_tarball_name}"


_BOOST_179_SHA256 = "273f1be93238a068aba4f9735a4a2b003019af067b9c183ed227780b8f36062c"
_BOOST_180_SHA256 = "4b2136f98bdd1f5857f1c3dea9ac2018effe65286cf251534b6ae20cc45e1847"


def _server_version(yy: int, mm: int) -> str | None:
    """Server 2.NN.0 of container YY.MM. One number per month through 25.06 (2.59.0) and again from 26.04
    (2.68.0), both confirmed from release notes; one was skipped in between and 25.07–26.03 are unconfirmed."""
    months = 12 * yy + mm
    if months <= 12 * 25 + 6:
        return f"2.{months - 247}.0"
    if months >= 12 * 26 + 4:
        return f"2.{months - 248}.0"
    return None


def _known(yy: int, mm: int) -> Release:
    """Facts read from every python_backend branch r23.12 … r26.07 (top-level CMakeLists)."""
    months = 12 * yy + mm
    url_variable = months >= 12 * 25 + 11  # r25.11+: boost 1.80 through TRITON_BOOST_URL
    return Release(
        branch=f"r{yy:02d}.{mm:02d}",
        triton_version=_server_version(yy, mm),
        pybind11="2.10.0" if months <= 12 * 24 + 10 else "2.12.0",  # r24.11 moved to v2.12.0
        dlpack="0.8",
        googletest="1.12.1",  # common pins an untagged commit (9406a60c); any googletest configures
        boost="1.80.0" if url_variable else "1.79.0",
        boost_sha256=_BOOST_180_SHA256 if url_variable else _BOOST_179_SHA256,
        boost_via_url_variable=url_variable,
        cmake_minimum="3.31.8" if months >= 12 * 25 + 8 else "3.17",
        launcher="execv" if months >= 12 * 25 + 8 else "bash",
        # Proven = same exported symbols as the plain build and identical answers in a real server.
        unity_proven=(yy, mm) == (24, 10),
    )


KNOWN: dict[str, Release] = {
    r.branch: r
    for r in (_known(yy, mm) for yy in (23, 24, 25, 26) for mm in range(1, 13))
    if "r23.12" <= r.branch <= "r26.07"
}

_BRANCH = re.compile(r"^r?(\d{2})\.(\d{2})$")
_SERVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def normalize(spec: str) -> str:
    """'24.10', 'r24.10' or '2.51.0' → 'r24.10'."""
    text = spec.strip()
    match = _BRANCH.match(text)
    if match:
        return f"r{match.group(1)}.{match.group(2)}"
    if _SERVER.match(text):
        for release in KNOWN.values():
            if release.triton_version == text:
                return release.branch
        raise ReleaseError(
            f"Triton server version {text} is not one stubforge knows",
            hint="name the release as YY.MM (the NGC container tag, e.g. 24.10); known server versions: "
            + ", ".join(f"{r.triton_version}={r.yymm}" for r in KNOWN.values() if r.triton_version),
        )
    raise ReleaseError(
        f"--triton {spec!r} is not a Triton release",
        hint="use the container tag 24.10, the branch r24.10 or the server version 2.51.0",
    )


def get(spec: str) -> Release:
    """Release knowledge for a spec; unknown releases get the newest known defaults (pins come from sources)."""
    branch = normalize(spec)
    if branch in KNOWN:
        return KNOWN[branch]
    newer = [r for r in KNOWN.values() if r.branch <= branch]
    template = max(newer, key=lambda r: r.branch) if newer else min(KNOWN.values(), key=lambda r: r.branch)
    return Release(
        branch=branch,
        triton_version=None,
        pybind11=template.pybind11,
        dlpack=template.dlpack,
        googletest=template.googletest,
        boost=template.boost,
        boost_sha256=template.boost_sha256,
        boost_via_url_variable=template.boost_via_url_variable,
        cmake_minimum=template.cmake_minimum,
        launcher=template.launcher,
        unity_proven=False,
    )


def older(version: str, than: str) -> bool:
    """'2.10.0' < '2.12': compares the first three numbers of dotted versions (suffixes ignored)."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", text)[:3])

    return key(version) < key(than)


def numpy2_breaks(numpy: str, pybind11: str) -> bool:
    """numpy >= 2 under a stub built with pybind11 < 2.12: tensors cross wrong (TRITON_FACTS numpy 2)."""
    return not older(numpy, "2") and older(pybind11, "2.12")
