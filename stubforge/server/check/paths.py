"""path-chars: characters in the model's or env's path that the release's launcher or the dynamic loader cannot take.

Which characters a release's launcher cannot take, and which of them always stop the stub, is release data
(`Release.name_rules`, core/releases.py); docs/triton-behaviour.md, "Launcher and environment activation per
release", says how each release starts the stub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stubforge.core import releases
from stubforge.server.check.report import ERROR, WARN, ModelCheck

# Every release puts <env>/lib in front of LD_LIBRARY_PATH (r24.10 in its bash command, r25.08+ in the environment
# it builds; docs/triton-behaviour.md, "Launcher and environment activation per release"). glibc's dynamic loader
# splits LD_LIBRARY_PATH at both ':' and ';', and PATH (where <env>/bin goes) splits at ':'.
LOADER_SEPARATORS = frozenset(":;")
RENAME = "rename it to letters, digits, '-', '_', '.' and '/'"


@dataclass(frozen=True)
class PathProblem:
    path: Path
    breaking: bool  # the stub cannot start (ERROR) rather than may be mangled (WARN)
    message: str


def path_chars(
    check: ModelCheck,
    release: releases.Release,
    model_dir: Path,
    env_dir: Path | None = None,
    env_archive: Path | None = None,
) -> None:
    """One finding for the worst path: ERROR when a character stops the stub from starting, else WARN.

    The launcher sees the model directory and a directory env as they are; an archive is extracted to a
    /tmp/python_env_* directory first, so the launcher never sees the archive's own path (a WARN at most)."""
    candidates = [path_problem(model_dir, release, launched=True, env_dir=False)]
    if env_dir is not None:
        candidates.append(path_problem(env_dir, release, launched=True, env_dir=True))
    if env_archive is not None:
        candidates.append(path_problem(env_archive, release, launched=False, env_dir=False))
    problems = [p for p in candidates if p is not None]
    worst = next((p for p in problems if p.breaking), problems[0] if problems else None)
    if worst is None:
        return
    if worst.breaking:
        check.add(ERROR, "path-chars", f"{worst.message}; the model will not load", RENAME)
    else:
        check.add(WARN, "path-chars", worst.message, RENAME)


def path_problem(
    path: Path, release: releases.Release, *, launched: bool, env_dir: bool
) -> PathProblem | None:
    """What `release` makes of `path`; `launched`: the launcher sees it; `env_dir`: it goes on LD_LIBRARY_PATH."""
    text = str(path)
    rules = release.name_rules
    offending = rules.offending(text)
    split = sorted(set(text) & LOADER_SEPARATORS) if env_dir else []
    if not offending and not split:
        return None
    reasons = []
    if offending:
        reasons.append(f"Triton {release.branch} {rules.effect}")
    if split:
        who = "it also" if offending else f"Triton {release.branch}"
        reasons.append(
            f"{who} puts {path}/lib in front of LD_LIBRARY_PATH, which the dynamic loader splits at ':' and ';', "
            "so the env's libraries are not found"
        )
    chars = " ".join(repr(c) for c in sorted({*offending, *split}))
    breaking = launched and bool(rules.breaks(text) or split)
    return PathProblem(path, breaking, f"{path} contains {chars}: {'; '.join(reasons)}")
