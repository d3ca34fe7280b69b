"""The numpy-2 rule of an env: whether the stub it runs with passes numpy 2 tensors right, and whether the
requirements insist on numpy 2, so pack-env can refuse before any slow work.

Stubs built with pybind11 < 2.12 answer every request with 'output tensor shape does not match size of output'
under numpy 2 (docs/triton-behaviour.md, "numpy 2 and pybind11"). Which pybind11 a stub has is read, in this
order, from its
stubforge manifest (backend sidecar, per-model sidecar or cache manifest, see triton/stubinfo.py), from its
binary when no manifest says, and from the release's pin when there is no stub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stubforge.core import releases
from stubforge.triton import stubinfo


@dataclass(frozen=True)
class Numpy2Rule:
    """Whether numpy 2 may be in the env, and the sentence saying why (used in messages either way)."""

    allowed: bool
    reason: str  # e.g. "the stub m/triton_python_backend_stub was built with pybind11 2.12.0"


def rule(stub: Path | None, triton: releases.Release | str) -> Numpy2Rule:
    """The rule for an env that will run with `stub` (None: the release's own stubs)."""
    if stub is not None:
        facts = stubinfo.ManifestFacts.of(stubinfo.read_manifest(stub))
        if facts.pybind11:
            allowed = not releases.older(facts.pybind11, releases.NUMPY2_PYBIND11)
            return Numpy2Rule(allowed, f"the stub {stub} was built with pybind11 {facts.pybind11}")
        aware = stubinfo.numpy2_aware(stub)
        if aware is not None:
            which = ">= 2.12" if aware else "< 2.12"
            return Numpy2Rule(
                aware, f"the stub {stub} was built with pybind11 {which} (read from the binary)"
            )
        # A stub nothing is known of (an imported one records pybind11 "unknown"): numpy stays < 2.
        return Numpy2Rule(False, f"the stub {stub} has no record of its pybind11, so it is taken as < 2.12")
    release = releases.as_release(triton)
    return Numpy2Rule(release.allows_numpy2, f"Triton {release.yymm}'s stubs use pybind11 {release.pybind11}")


_CLAUSE = re.compile(r"^\s*(===|==|~=|!=|>=|<=|>|<)\s*([0-9][0-9.]*)(\.\*)?\s*$")
_NAME = re.compile(r"^\s*numpy\s*(\[[^\]]*\])?\s*(?P<spec>.*)$", re.IGNORECASE)
# One version of every numpy 1 minor, first and late patch: a requirement none of them satisfies wants numpy 2.
_NUMPY1 = [(1, minor, patch) for minor in range(27) for patch in (0, 4, 99)]


def demands_numpy2(requirement: str) -> bool:
    """Whether a pip requirement for numpy admits no numpy 1 release ('numpy>=2', 'numpy==2.1.*', 'numpy~=2.0').

    Conservative: anything it does not fully understand (markers, URLs, other packages) is False; the check of
    the finished env still catches what this lets through.
    """
    match = _NAME.match(requirement)
    if match is None or ";" in requirement or "@" in requirement:
        return False
    spec = match.group("spec").strip()
    if not spec:
        return False
    clauses = []
    for text in spec.strip("()").split(","):
        clause = _CLAUSE.match(text)
        if clause is None:
            return False
        op, version, star = clause.groups()
        clauses.append((op, tuple(int(p) for p in version.strip(".").split(".")), bool(star)))
    return not any(all(_satisfies(v, *c) for c in clauses) for v in _NUMPY1)


def _satisfies(version: tuple[int, ...], op: str, wanted: tuple[int, ...], star: bool) -> bool:
    if star:  # ==2.* / !=1.26.*: a prefix match
        same = version[: len(wanted)] == wanted
        return same if op in ("==", "===") else not same if op == "!=" else False
    width = max(len(version), len(wanted))
    v = version + (0,) * (width - len(version))
    w = wanted + (0,) * (width - len(wanted))
    if op in ("==", "==="):
        return v == w
    if op == "!=":
        return v != w
    if op == ">=":
        return v >= w
    if op == "<=":
        return v <= w
    if op == ">":
        return v > w
    if op == "<":
        return v < w
    # ~=X.Y[.Z]: >= X.Y[.Z] and the same prefix without the last part
    prefix = wanted[:-1] if len(wanted) > 1 else wanted
    return v >= w and version[: len(prefix)] == prefix


def first_demanding_numpy2(requirements: list[str]) -> str | None:
    """The first requirement that insists on numpy 2, or None."""
    return next((req for req in requirements if demands_numpy2(req)), None)
