"""What stubforge knows about each Triton release, kept as data: one typed `Release` per branch.

The behaviours are fields read from one table of changes (`_CHANGES`): each row is the first release where
something changed, read from the python_backend branches r23.12 … r26.07 and from a real r24.10 server
(docs/triton-behaviour.md). Code asks the release in play (`release.hangs_on_dead_stub`, `release.activation`)
instead of naming a release in a sentence.

The fetched python_backend CMakeLists is the source of truth for pins (see stubs/pins.py); the pins here are the
fallback used before sources exist (which pybind11/dlpack/boost to fetch).

`--triton` is parsed once, at the edge, with `as_release`; library functions accept `Release | str` and call it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stubforge.errors import ReleaseError

BOOST_ARCHIVE_BASE = "https://archives.boost.io/release/"
# The release stubforge assumes when --triton is not given (the one nvidia-pytriton 0.7.0 ships: 2.51.0).
DEFAULT_TRITON = "24.10"


class Activation(enum.Enum):
    """How the server starts a stub inside an execution environment (docs/triton-behaviour.md,
    "EXECUTION_ENV_PATH and extraction")."""

    # `bash -c "source <env>/bin/activate && exec env LD_LIBRARY_PATH=<env>/lib:... <stub> ..."`, paths unquoted;
    # the stub is first run with no arguments as a probe.
    BASH_SOURCE_ACTIVATE = "bash"
    # fork + execve, no shell, no probe: the server sets VIRTUAL_ENV, puts <env>/bin first on PATH and <env>/lib
    # first on LD_LIBRARY_PATH and drops PYTHONHOME; bin/activate must exist but never runs.
    EXECV_WITH_VARIABLES = "execv"

    @property
    def sources_activate(self) -> bool:
        """<env>/bin/activate runs (and with it conda activate.d hooks and any custom exports)."""
        return self is Activation.BASH_SOURCE_ACTIVATE

    @property
    def probes_stub(self) -> bool:
        """The stub is run with no arguments before every start and chmod-ed to 0100 unless it exits 1."""
        return self is Activation.BASH_SOURCE_ACTIVATE


@dataclass(frozen=True)
class NameRules:
    """Which characters in a model or env path a release's launcher cannot take, and what it does then."""

    characters: frozenset[str]
    effect: str  # completes "Triton rYY.MM ...": what the launcher does with such a path
    # The subset that always stops the stub from starting; the rest is mangled only in some positions or when it
    # happens to match a file (a glob pattern left unexpanded is kept as written).
    breaking: frozenset[str] = frozenset()

    def offending(self, text: str) -> list[str]:
        return sorted(set(text) & self.characters)

    def breaks(self, text: str) -> list[str]:
        """The characters of `text` that stop the launcher from starting the stub."""
        return sorted(set(text) & self.breaking)


# r25.08+ reject stub, instance and region names holding any of these (docs/triton-behaviour.md, "Newer releases").
_REJECTED_BY_EXECV = frozenset(";|&$`<>()[]{}\\\"'*?~#!")
# The bash launcher pastes paths unquoted into `bash -c`: a space splits them, `;|&` end the command, `<>`
# redirect, `()` are a syntax error, `$` and a backquote expand, quotes and backslashes are removed. Mid-path,
# `*?[]{}~#!` stay as written unless a glob happens to match.
BASH_NAME_RULES = NameRules(
    characters=_REJECTED_BY_EXECV | {" "},
    effect="starts the stub through an unquoted bash -c command, which splits or interprets it",
    breaking=frozenset(" ;|&<>()$`\"'\\"),
)
# A refused name fails the model's load.
EXECV_NAME_RULES = NameRules(
    characters=_REJECTED_BY_EXECV, effect="rejects names containing it", breaking=_REJECTED_BY_EXECV
)


@dataclass(frozen=True)
class Release:
    branch: str  # rYY.MM, the branch name of every Triton repository for this release
    triton_version: str | None  # server version 2.NN.0, None where not known
    pybind11: str  # pinned pybind11 version (< 2.12: numpy 2 breaks tensors)
    dlpack: str
    googletest: str
    boost: str  # boost version of the ExternalProject / TRITON_BOOST_URL download
    boost_sha256: str | None
    boost_via_url_variable: bool  # r25.11+: TRITON_BOOST_URL; before: fixed URL, no override
    cmake_minimum: str
    activation: Activation
    # A stub that dies before its first message: the server waits forever, ignores SIGINT and leaves its
    # /dev/shm regions behind (checked in r24.10); r25.08+ gives up after 10 s windows.
    hangs_on_dead_stub: bool
    # Tarball envs of several python-family backends extracted at once corrupt each other (a process-wide chdir
    # during extraction; reproduced in r24.10, and no later branch changes that extraction).
    parallel_extraction_race: bool
    name_rules: NameRules
    # r26.06+: libarchive's secure flags refuse `..`, absolute paths and writes through links already on disk.
    refuses_unsafe_archive_members: bool
    # Unity build proven equivalent (symbols + behaviour in a real server) for this release.
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

    @property
    def allows_numpy2(self) -> bool:
        """Whether this release's own stubs (its pybind11 pin) pass numpy 2 tensors correctly."""
        return not older(self.pybind11, NUMPY2_PYBIND11)

    def numpy2_breaks(self, numpy: str) -> bool:
        """numpy `numpy` under a stub of this release's pybind11 pin crosses tensors wrong."""
        return numpy2_breaks(numpy, self.pybind11)

    def dead_stub_outcome(self, *, at_load: bool = False) -> str:
        """What the server does when a stub dies before its first message, as a clause of a sentence:
        "the stub will not start and {outcome}". at_load: said of a model not loaded yet (check)."""
        if self.hangs_on_dead_stub:
            return (
                f"Triton {self.branch} will hang at load" if at_load else f"Triton {self.branch} hangs on it"
            )
        return (
            f"Triton {self.branch} will fail the load after its start-up wait"
            if at_load
            else f"Triton {self.branch} fails the load after its start-up wait"
        )

    def unsafe_archive_outcome(self) -> str:
        """What the server does with an env archive member that would land outside the env (zip-slip)."""
        if self.refuses_unsafe_archive_members:
            return f"Triton {self.branch} refuses to extract it"
        return f"Triton {self.branch} extracts it anyway (zip-slip)"


_BOOST_179_SHA256 = "273f1be93238a068aba4f9735a4a2b003019af067b9c183ed227780b8f36062c"
_BOOST_180_SHA256 = "4b2136f98bdd1f5857f1c3dea9ac2018effe65286cf251534b6ae20cc45e1847"
# pybind11 from which numpy 2 tensors cross correctly.
NUMPY2_PYBIND11 = "2.12"

# The oldest release stubforge has read, with every behaviour it has.
_FIRST = Release(
    branch="r23.12",
    triton_version=None,  # filled in per release by _server_version
    pybind11="2.10.0",
    dlpack="0.8",
    googletest="1.12.1",  # common pins an untagged commit (9406a60c); any googletest configures
    boost="1.79.0",
    boost_sha256=_BOOST_179_SHA256,
    boost_via_url_variable=False,
    cmake_minimum="3.17",
    activation=Activation.BASH_SOURCE_ACTIVATE,
    hangs_on_dead_stub=True,
    parallel_extraction_race=True,
    name_rules=BASH_NAME_RULES,
    refuses_unsafe_archive_members=False,
    unity_proven=False,
)
_LAST_KNOWN = "r26.07"

# THE table: (first release with the change, the fields that changed there). Later rows apply on top of earlier
# ones; a field not named keeps its value. Read from the python_backend branches (docs/triton-behaviour.md).
_CHANGES: tuple[tuple[str, dict[str, Any]], ...] = (
    # Proven = same exported symbols as the plain build and identical answers in a real server.
    ("r24.10", {"unity_proven": True}),
    ("r24.11", {"pybind11": "2.12.0", "unity_proven": False}),
    (
        "r25.08",
        {
            "cmake_minimum": "3.31.8",
            "activation": Activation.EXECV_WITH_VARIABLES,
            "hangs_on_dead_stub": False,
            "name_rules": EXECV_NAME_RULES,
        },
    ),
    ("r25.11", {"boost": "1.80.0", "boost_sha256": _BOOST_180_SHA256, "boost_via_url_variable": True}),
    ("r26.06", {"refuses_unsafe_archive_members": True}),
)


def _server_version(yy: int, mm: int) -> str | None:
    """Server 2.NN.0 of container YY.MM. One number per month through 25.06 (2.59.0) and again from 26.04
    (2.68.0), both confirmed from release notes; one was skipped in between and 25.07–26.03 are unconfirmed."""
    months = 12 * yy + mm
    if months <= 12 * 25 + 6:
        return f"2.{months - 247}.0"
    if months >= 12 * 26 + 4:
        return f"2.{months - 248}.0"
    return None


def _known(branch: str) -> Release:
    """A known release: _FIRST with every change up to it applied (a row applies only from its own branch on,
    so `unity_proven` set at r24.10 and cleared at r24.11 holds for r24.10 alone)."""
    release = _FIRST
    for since, changes in _CHANGES:
        if since <= branch:
            release = dataclasses.replace(release, **changes)
    yy, mm = int(branch[1:3]), int(branch[4:6])
    return dataclasses.replace(release, branch=branch, triton_version=_server_version(yy, mm))


KNOWN: dict[str, Release] = {
    b: _known(b)
    for b in (f"r{yy:02d}.{mm:02d}" for yy in (23, 24, 25, 26) for mm in range(1, 13))
    if _FIRST.branch <= b <= _LAST_KNOWN
}

_BRANCH = re.compile(r"^r?(\d{2})\.(\d{2})$")
_SERVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def normalize(spec: Release | str) -> str:
    """'24.10', 'r24.10' or '2.51.0' → 'r24.10' (a Release gives its branch)."""
    if isinstance(spec, Release):
        return spec.branch
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


def as_release(spec: Release | str) -> Release:
    """The Release for '24.10', 'r24.10', '2.51.0' or a Release (returned as is): library functions take either.

    Unknown releases get the knowledge of the newest known release before them (pins come from sources), with no
    server version and no proven unity build."""
    if isinstance(spec, Release):
        return spec
    branch = normalize(spec)
    if branch in KNOWN:
        return KNOWN[branch]
    older_known = [r for r in KNOWN.values() if r.branch <= branch]
    template = (
        max(older_known, key=lambda r: r.branch)
        if older_known
        else min(KNOWN.values(), key=lambda r: r.branch)
    )
    return dataclasses.replace(template, branch=branch, triton_version=None, unity_proven=False)


def get(spec: Release | str) -> Release:
    """as_release under its older name."""
    return as_release(spec)


def default_release() -> Release:
    """The release assumed when none is given (DEFAULT_TRITON)."""
    return KNOWN[normalize(DEFAULT_TRITON)]


DEFAULT: Release = default_release()


def first_release(has: Callable[[Release], bool]) -> str:
    """The first known branch for which `has` is true, e.g. `first_release(lambda r: not r.hangs_on_dead_stub)`
    == "r25.08": for messages about releases other than the one in play."""
    for branch in sorted(KNOWN):
        if has(KNOWN[branch]):
            return branch
    raise ValueError("no known release has that behaviour")


def older(version: str, than: str) -> bool:
    """'2.10.0' < '2.12': compares the first three numbers of dotted versions (suffixes ignored)."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", text)[:3])

    return key(version) < key(than)


def numpy2_breaks(numpy: str, pybind11: str) -> bool:
    """numpy >= 2 under a stub built with pybind11 < 2.12: tensors cross wrong (docs/triton-behaviour.md,
    "numpy 2 and pybind11"). Release.numpy2_breaks applies it to a release's own pin."""
    return not older(numpy, "2") and older(pybind11, NUMPY2_PYBIND11)
