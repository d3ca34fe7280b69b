"""path-chars: characters in the model's or env's path that the release's launcher cannot take.

Which characters a release's launcher cannot take is release data (`Release.name_rules`, core/releases.py);
docs/triton-behaviour.md, "Launcher and environment activation per release", says how each release starts the stub.
"""

from __future__ import annotations

from pathlib import Path

from stubforge.core import releases
from stubforge.server.check.report import WARN, ModelCheck


def path_chars(check: ModelCheck, release: releases.Release, paths: list[Path]) -> None:
    """One finding, for the first path holding such characters."""
    for path in paths:
        bad = release.name_rules.offending(str(path))
        if bad:
            check.add(
                WARN,
                "path-chars",
                f"{path} contains {' '.join(repr(c) for c in bad)}: Triton {release.branch} "
                f"{release.name_rules.effect}",
                "rename it to letters, digits, '-', '_', '.' and '/'",
            )
            return
