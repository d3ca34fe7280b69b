"""Same inputs, same bytes: the compiler settings and input records that make a stub reproducible.

A stub used to differ from one `--force` rebuild to the next because paths reach the binary through `__FILE__`:
python_backend's LOG_INFO/LOG_ERROR pass the source file, and boost code that records its header's location
(e.g. BOOST_THROW_EXCEPTION) names the boost tree that the boost step puts in the build directory. Two things keep
them out: a build directory named after the artifact key instead of a random one, and `-ffile-prefix-map` (which
covers `__FILE__`, debug info and coverage paths) for the build directory and every source tree.
`__DATE__`/`__TIME__` are pinned with SOURCE_DATE_EPOCH and reported with `-Wdate-time`. What went in is
recorded with its digest, so two manifests show why two stubs differ.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Pins __DATE__, __TIME__ and __TIMESTAMP__ (GCC and Clang read it); a user's own value is kept.
SOURCE_DATE_EPOCH = "0"
# Reports __DATE__-style macros without failing upstream's -Werror builds (SOURCE_DATE_EPOCH pins their value).
DATE_TIME_FLAGS = ("-Wdate-time", "-Wno-error=date-time")
# GCC: `f.c:2:28: warning: macro "__DATE__" might prevent ...`; Clang: `... expansion of date or time macro ...`.
_DATE_TIME_WARNING = re.compile(
    r"^(\S+?):\d+:\d+: (?:warning|error): .*\[(?:-Werror,)?-W(?:error=)?date-time\]"
)
_MACRO = re.compile(r'"(__\w+__)"')


@dataclass(frozen=True)
class PrefixMap:
    """One directory as the binary will name it."""

    directory: str
    name: str

    def flag(self) -> str:
        return f"-ffile-prefix-map={self.directory}={self.name}"


def prefix_maps(named_dirs: Mapping[str, str | Path]) -> list[PrefixMap]:
    """One map per directory (and per real path, where a symlink leads there), shortest first.

    GCC applies the last matching option, so a directory nested in another must come after it; Clang takes the
    longest match, which this order gives too.
    """
    maps: dict[str, PrefixMap] = {}
    for name, directory in named_dirs.items():
        for variant in {os.path.abspath(directory), os.path.realpath(directory)}:
            maps[variant] = PrefixMap(variant, name)
    return [maps[d] for d in sorted(maps, key=lambda d: (len(d), d))]


def compile_flags(maps: Iterable[PrefixMap], from_environment: str = "") -> str:
    """CMAKE_<LANG>_FLAGS: the user's CFLAGS/CXXFLAGS first (setting the variable would drop them), then ours.

    CMake pastes this string into shell command lines (Ninja and Make alike), so every map is quoted: a
    directory may hold a space, and quoting them all keeps the recorded arguments equal between caches.
    """
    ours = [_always_quoted(m.flag()) for m in maps] + list(DATE_TIME_FLAGS)
    return " ".join(part for part in (from_environment.strip(), *ours) if part)


def _always_quoted(word: str) -> str:
    """Like shlex.quote, but also for words that need no quotes."""
    return "'" + word.replace("'", "'\"'\"'") + "'"


def build_environment(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    return env


def normalized(args: Iterable[str], named_dirs: Mapping[str, str | Path]) -> list[str]:
    """Arguments with every named directory replaced by <name>: equal for equal inputs wherever the cache is."""
    replacements = sorted(
        {
            variant: name
            for name, directory in named_dirs.items()
            for variant in {os.path.abspath(directory), os.path.realpath(directory)}
        }.items(),
        key=lambda item: -len(item[0]),  # longest first: a nested directory before its parent
    )
    out = []
    for arg in args:
        for directory, name in replacements:
            arg = arg.replace(directory, f"<{name}>")
        out.append(arg)
    return out


def digest_of(items: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(items).encode()).hexdigest()


def date_time_uses(log_text: str) -> list[str]:
    """'file: __DATE__' for each -Wdate-time warning in a build log (deduplicated, in order)."""
    found: list[str] = []
    for line in log_text.splitlines():
        match = _DATE_TIME_WARNING.match(line)
        if match:
            macro = _MACRO.search(line)
            entry = f"{match.group(1)}: {macro.group(1) if macro else 'a date or time macro'}"
            if entry not in found:
                found.append(entry)
    return found
