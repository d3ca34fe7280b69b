"""Read what a python_backend checkout pins, straight from its CMake files.

The CMakeLists of the release being built is the source of truth: pybind11's commit, dlpack's tag, the boost
tarball and its hash, the CMake minimum. releases.py is only the fallback for what is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stubforge.errors import SourcesError

_DECLARE = re.compile(r"FetchContent_Declare\s*\(\s*([A-Za-z0-9_.-]+)(.*?)\)", re.S | re.I)
_EP_BOOST = re.compile(r"ExternalProject_Add\s*\(\s*boostorg(.*?)\n\s*\)", re.S | re.I)
_MINIMUM = re.compile(r"cmake_minimum_required\s*\(\s*VERSION\s+([0-9.]+)", re.I)
_PROJECT = re.compile(r"^\s*project\s*\(\s*([A-Za-z0-9_]+)", re.I | re.M)
_URL_VAR = re.compile(r'set\s*\(\s*(TRITON_BOOST_URL)\s+"([^"]+)"', re.I)
_BOOST_FILE = re.compile(r"boost_(\d+)_(\d+)_(\d+)\.tar\.(?:gz|bz2)")


@dataclass(frozen=True)
class Declared:
    """One FetchContent_Declare: what it fetches and at which tag or commit."""

    name: str
    repository: str | None
    tag: str | None
    # "# COMMIT ID for v2.10.0" next to a commit pin: the version it stands for.
    commented_version: str | None

    @property
    def version(self) -> str | None:
        for candidate in (self.commented_version, self.tag):
            if candidate and re.fullmatch(r"v?\d+(\.\d+)+", candidate):
                return candidate.lstrip("v")
        return None


@dataclass(frozen=True)
class BoostPin:
    url: str
    sha256: str | None
    version: str | None
    # r25.12+: the URL comes from the TRITON_BOOST_URL cache variable, so a -D override replaces the download.
    url_variable: str | None


@dataclass(frozen=True)
class Pins:
    project: str
    cmake_minimum: str
    declared: dict[str, Declared]
    boost: BoostPin | None

    def tag(self, name: str) -> str | None:
        decl = self.declared.get(name)
        return decl.tag if decl else None


def _field(body: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}\s+\"?([^\s\")]+)\"?", body, re.M)
    return match.group(1) if match else None


def parse_declares(text: str) -> dict[str, Declared]:
    found = {}
    for name, body in _DECLARE.findall(text):
        comment = re.search(r"#.*?\bv?(\d+\.\d+(?:\.\d+)?)", body)
        found[name.lower()] = Declared(
            name=name.lower(),
            repository=_field(body, "GIT_REPOSITORY") or _field(body, "URL"),
            tag=_field(body, "GIT_TAG"),
            commented_version=comment.group(1) if comment else None,
        )
    return found


def parse_boost(text: str) -> BoostPin | None:
    match = _EP_BOOST.search(text)
    if not match:
        return None
    body = match.group(1)
    url = _field(body, "URL") or ""
    variable = None
    var_ref = re.fullmatch(r"\$\{(\w+)\}", url)
    if var_ref:
        variable = var_ref.group(1)
        setting = _URL_VAR.search(text)
        url = setting.group(2) if setting else ""
    hash_match = re.search(r"URL_HASH\s+SHA256=([0-9a-fA-F]{64})", body)
    version_match = _BOOST_FILE.search(url)
    return BoostPin(
        url=url,
        sha256=hash_match.group(1).lower() if hash_match else None,
        version=".".join(version_match.groups()) if version_match else None,
        url_variable=variable,
    )


def read(python_backend: Path) -> Pins:
    cmakelists = python_backend / "CMakeLists.txt"
    try:
        text = cmakelists.read_text(errors="replace")
    except OSError as exc:
        raise SourcesError(
            f"{cmakelists}: cannot read it ({exc.strerror})",
            hint="point at a python_backend checkout (the directory holding its top-level CMakeLists.txt)",
        ) from exc
    project = _PROJECT.search(text)
    minimum = _MINIMUM.search(text)
    if not project or "triton-python-backend-stub" not in text:
        raise SourcesError(
            f"{cmakelists} does not look like python_backend's (no project() or no triton-python-backend-stub)",
            hint="point at a python_backend checkout of the release you build",
        )
    return Pins(
        project=project.group(1),
        cmake_minimum=minimum.group(1) if minimum else "3.17",
        declared=parse_declares(text),
        boost=parse_boost(text),
    )


def googletest_pin(common: Path) -> Declared | None:
    """common declares googletest itself (python_backend never does), by tag or by a commit archive URL."""
    for cmakelists in sorted(common.rglob("CMakeLists.txt")):
        decl = parse_declares(cmakelists.read_text(errors="replace")).get("googletest")
        if decl is not None:
            return decl
    return None


def commit_of(decl: Declared) -> str | None:
    """The pinned commit, whether given as GIT_TAG <sha> or as a GitHub archive URL <sha>.zip."""
    for text in (decl.tag, decl.repository):
        match = re.search(r"(?:^|/)([0-9a-f]{40})(?:\.zip|\.tar\.gz)?$", text or "")
        if match:
            return match.group(1)
    return None
