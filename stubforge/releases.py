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


@dataclass(frozen=True)
class Release:
    branch: str  # rYY.MM, the branch name of every Triton repository for this release
    triton_version: str | None  # server version 2.NN.0, None where not known
    pybind11: str  # pinned pybind11 version
    dlpack: str
    googletest: str
    boost: str  # boost version of the ExternalProject / TRITON_BOOST_URL download
    boost_sha256: str | None
    boost_via_url_variable: bool  # r25.12+: TRITON_BOOST_URL; before: fixed URL, no override
    cmake_minimum: str
    # r24.10 and earlier start the stub through `bash -c` and probe it with no arguments first (TRITON_FACTS §1).
    launcher: str  # "bash" or "execv"
    # Unity build proven equivalent (symbols + behaviour in a real server) for this release (TRITON_FACTS §7).
    unity_proven: bool
    # Files given a translation unit of their own in unity builds (the longest one, pb_stub.cc, ~20 s).
    unity_solo: tuple[str, ...] = ()

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


def _release(branch: str, triton: str | None, pybind11: str, **kw: object) -> Release:
    base: dict[str, object] = {
        "dlpack": "0.8",
        "googletest": "1.13.0",
        "boost": "1.79.0",
        "boost_sha256": _BOOST_179_SHA256,
        "boost_via_url_variable": False,
        "cmake_minimum": "3.17",
        "launcher": "bash",
        "unity_proven": False,
    }
    base.update(kw)
    return Release(branch=branch, triton_version=triton, pybind11=pybind11, **base)  # type: ignore[arg-type]


# Server versions: 23.12 = 2.41.0 and 24.10 = 2.51.0 were read off real images; monthly releases in between
# advance the minor by one.
KNOWN: dict[str, Release] = {
    r.branch: r
    for r in (
        _release("r23.12", "2.41.0", "2.10.0"),
        _release("r24.01", "2.42.0", "2.10.0"),
        _release("r24.02", "2.43.0", "2.10.0"),
        _release("r24.03", "2.44.0", "2.10.0"),
        _release("r24.04", "2.45.0", "2.10.0"),
        _release("r24.05", "2.46.0", "2.10.0"),
        _release("r24.06", "2.47.0", "2.10.0"),
        _release("r24.07", "2.48.0", "2.10.0"),
        _release("r24.08", "2.49.0", "2.10.0"),
        _release("r24.09", "2.50.0", "2.10.0"),
        _release("r24.10", "2.51.0", "2.10.0", unity_proven=True),
        _release("r24.12", "2.53.0", "2.12.0"),
        _release(
            "r25.12",
            None,
            "2.12.0",
            boost="1.80.0",
            boost_sha256=None,
            boost_via_url_variable=True,
            cmake_minimum="3.31.8",
            launcher="execv",
        ),
    )
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
