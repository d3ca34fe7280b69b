"""Property-based fuzzing of env archive extraction (issue 12, "Also").

Hypothesis builds tar member lists an attacker or a careless packer could produce: regular files, directories,
symbolic links whose targets are made of `..`, `.`, names of other members and absolute paths, hard links,
repeated names, `./` prefixes, `//` and `/./` inside names, deep nesting, 255-character components, FIFOs and
devices. Each list is written with tarfile into a tar.gz in a fresh directory that also holds sentinel
directories named "outside" (where `../outside` and `../../outside` lead from the destination), and then:

(a) `archive.extract` succeeds or raises EnvError, never another exception, and nothing outside the destination
    exists or changed afterwards (the sentinels' contents included);
(b) on failure the destination does not exist;
(c) `archive.audit` (what `stubforge check` runs) finds nothing exactly when extraction does not raise
    UnsafeArchive, so check and the runner agree;
(d) after a successful extraction every path under the destination resolves inside it;
(e) what audit accepts extracts (the archives are well-formed, so any other failure is a refusal check missed).

Examples are bounded so the file runs in seconds; with the CI environment variable set the run is
derandomized (the same examples every time, so a CI failure reproduces locally with CI=1).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from stubforge.envs import archive
from stubforge.errors import EnvError

# ------------------------------------------------------------------------------------------ settings

IN_CI = bool(os.environ.get("CI"))
settings.register_profile(
    "stubforge-fuzz",
    max_examples=int(os.environ.get("STUBFORGE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=IN_CI,
    # A derandomized run has nothing to replay from a database, and CI machines keep none.
    database=None if IN_CI else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("stubforge-fuzz")

# ------------------------------------------------------------------------------------------ strategies

# Where relative and absolute link targets may lead outside the destination (tmp/work/dest): placeholders are
# replaced with the real paths of the fresh directory when the archive is written.
OUTSIDE_ABS = "\0OUTSIDE\0"
TMP_ABS = "\0TMP\0"

# A small pool, so that names repeat, prefix each other and pass through each other's links often.
COMPONENTS = ["a", "b", "lib", "outside", "x" * 255, "d" * 247, "é"]
KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    target: str = ""
    data: bytes = b""


component = st.sampled_from(COMPONENTS)
separator = st.sampled_from(["/", "/", "/", "/", "//", "/./"])


@st.composite
def member_name(draw: st.DrawFn, pool: list[str], hostile: bool = True) -> str:
    """A member name: mostly plain relative paths, sometimes with `./`, `//`, `..`, absolute or empty."""
    if pool and draw(st.booleans()):
        base = draw(st.sampled_from(pool))  # a repeated name, or one below an earlier member
        if draw(st.booleans()):
            return base
        parts = [base, *draw(st.lists(component, min_size=1, max_size=3))]
    else:
        parts = draw(st.lists(component, min_size=1, max_size=6))
    if hostile and draw(st.integers(0, 19)) == 0:
        parts.insert(draw(st.integers(0, len(parts))), "..")
    name = parts[0]
    for part in parts[1:]:
        name += draw(separator) + part
    prefixes = ["", "", "", "", "", "", "./", "././", ".//"] + (["/", ".", "./."] if hostile else [])
    prefix = draw(st.sampled_from(prefixes))
    if prefix in (".", "./."):  # the archive's root itself (or a name glued to it)
        return prefix + draw(st.sampled_from(["", "/", name]))
    suffix = draw(st.sampled_from(["", "", "", "/"]))
    return prefix + name + suffix


@st.composite
def link_target(draw: st.DrawFn, pool: list[str], depth: int, hostile: bool = True) -> str:
    """A symlink target made of `..`, `.`, names of other members, pool components and absolute paths.

    Not hostile: at most `depth` leading `..` (the link's own depth), so the target looks like one that stays
    inside, and only the archive's other links can make it leave."""
    if hostile:
        parts = draw(st.lists(st.sampled_from(["..", ".", *COMPONENTS, *pool]), max_size=6))
    else:
        ups = [".."] * draw(st.integers(0, depth))
        parts = ups + draw(st.lists(st.sampled_from([".", *COMPONENTS, *pool]), min_size=1, max_size=3))
    target = "/".join(parts)
    start = draw(
        st.sampled_from(["", "", "", "", "", "", "", "/", OUTSIDE_ABS, TMP_ABS] if hostile else [""])
    )
    if start:
        target = start + ("/" + target if target else "")
    return target


# Weighted: most members are what an env holds; devices and FIFOs are rare.
KIND_WEIGHTS = ["file"] * 7 + ["dir"] * 5 + ["symlink"] * 5 + ["hardlink"] * 2
SPECIAL_KINDS = ["fifo", "chardev", "blockdev"]


@st.composite
def members(draw: st.DrawFn) -> list[Member]:
    # Half of the lists are hostile throughout; the others look like envs (no absolute or `..` names, no
    # devices), so that extraction also succeeds often and (d) is exercised, links and repeats included.
    hostile = draw(st.booleans())
    out: list[Member] = []
    pool: list[str] = []
    files: list[str] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(KIND_WEIGHTS))
        if hostile and draw(st.integers(0, 9)) == 0:
            kind = draw(st.sampled_from(SPECIAL_KINDS))
        name = draw(member_name(pool, hostile))
        target = ""
        if kind == "symlink":
            depth = len([p for p in name.split("/") if p not in ("", ".")]) - 1
            target = draw(link_target(pool, max(depth, 0), hostile))
        elif kind == "hardlink":
            if files and (not hostile or draw(st.integers(0, 3))):
                target = draw(st.sampled_from(files))  # an earlier file, the legitimate case
            else:
                target = draw(member_name(pool, hostile))
        data = draw(st.binary(max_size=8)) if kind == "file" else b""
        out.append(Member(name, kind, target, data))
        clean = name.strip("/")
        if clean and clean not in pool:
            pool.append(clean)
        if kind == "file":
            files.append(name)
    return out


@st.composite
def deep_members(draw: st.DrawFn) -> list[Member]:
    """A deep directory chain with links along it (the PATH_MAX family), then members through it."""
    hostile = draw(st.booleans())
    depth = draw(st.integers(2, 12))
    comp = draw(st.sampled_from(["d" * 247, "n", "x" * 255]))
    out: list[Member] = []
    path = ""
    for step in range(depth):
        path = f"{path}/{comp}" if path else comp
        out.append(Member(path, "dir"))
        if draw(st.booleans()):
            target = draw(link_target([comp, f"l{step}"], step + 1, hostile))
            out.append(Member(f"{path}/l{step}", "symlink", target))
    return out + draw(members())


member_lists = st.one_of(members(), deep_members())

# ------------------------------------------------------------------------------------------ harness


def _real(text: str, tmp: Path) -> str:
    return text.replace(OUTSIDE_ABS, str(tmp / "outside")).replace(TMP_ABS, str(tmp))


def write_archive(path: Path, items: list[Member], tmp: Path) -> None:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for item in items:
            info = tarfile.TarInfo(_real(item.name, tmp))
            info.type = KINDS[item.kind]
            info.linkname = _real(item.target, tmp)
            info.mode = 0o755 if item.kind == "dir" else 0o644
            info.size = len(item.data)
            tar.addfile(info, io.BytesIO(item.data) if item.kind == "file" else None)


def _entries(root: Path, skip: set[str]) -> Iterator[tuple[str, tuple[object, ...]]]:
    """Every entry below root (links not followed) with what identifies its content."""
    for entry in os.scandir(root):
        if entry.path in skip:
            continue
        info = entry.stat(follow_symlinks=False)
        mode = stat.S_IMODE(info.st_mode)
        if entry.is_symlink():
            yield entry.path, ("link", os.readlink(entry.path))
        elif entry.is_dir(follow_symlinks=False):
            yield entry.path, ("dir", mode)
            yield from _entries(Path(entry.path), skip)
        elif entry.is_file(follow_symlinks=False):
            digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
            yield entry.path, ("file", mode, info.st_nlink, info.st_mtime_ns, digest)
        else:
            yield entry.path, ("other", info.st_mode, info.st_rdev)


def snapshot(root: Path, *skip: Path) -> dict[str, tuple[object, ...]]:
    return dict(_entries(root, {str(p) for p in skip}))


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + os.sep)


@dataclass
class Outcome:
    error: EnvError | None
    finding: archive.Finding | None


def check_properties(items: list[Member]) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="sf-fuzz-") as name:
        tmp = Path(os.path.realpath(name))
        # Sentinels where escapes lead: tmp/outside from absolute targets and ../../outside, tmp/work/outside
        # from ../outside; each holds a file and a directory whose contents must survive.
        for sentinel in (tmp / "outside", tmp / "work" / "outside"):
            (sentinel / "sub").mkdir(parents=True)
            (sentinel / "keep").write_bytes(b"sentinel")
            (sentinel / "sub" / "inner").write_bytes(b"inner")
        path = tmp / "env.tar.gz"
        write_archive(path, items, tmp)
        dest = tmp / "work" / "dest"
        before = snapshot(tmp, dest, path)

        finding = archive.audit(archive.read_members(path))
        error: EnvError | None = None
        try:
            archive.extract(path, dest)
        except EnvError as exc:  # (a) anything else propagates and fails the test with its traceback
            error = exc

        assert snapshot(tmp, dest, path) == before, "(a) something outside dest was created or changed"
        if error is not None:
            assert not os.path.lexists(dest), "(b) a failed extraction left dest behind"
        # (c) check flags exactly what extraction refuses as unsafe ...
        assert (finding is None) == (not isinstance(error, archive.UnsafeArchive)), (finding, error)
        # (e) ... and what check accepts extracts: tarfile wrote this archive, so it is not damaged, and a
        # failure half-way (called "damaged") would be a refusal check did not announce.
        assert finding is not None or error is None, error
        if error is None:
            root = str(dest)
            for walked, dirs, files in os.walk(dest):
                for entry in dirs + files:
                    full = os.path.join(walked, entry)
                    real = os.path.realpath(full)
                    assert _inside(real, root), f"(d) {full} resolves to {real}, outside dest"
        return Outcome(error, finding)


# ------------------------------------------------------------------------------------------ properties


@FUZZ
@given(items=member_lists)
@example(items=[Member("a", "dir"), Member("a/l", "symlink", "../.."), Member("a/l/pwned", "file")])
@example(items=[Member("l", "symlink", OUTSIDE_ABS), Member("l/keep", "file", data=b"x")])
@example(items=[Member("./", "dir"), Member("bin/python3", "file", data=b"\x7fELF")])
def test_extraction_never_escapes_and_check_agrees(items: list[Member]) -> None:
    outcome = check_properties(items)
    # Shown by --hypothesis-show-statistics: the mix of outcomes the examples reach.
    event("extracted" if outcome.error is None else type(outcome.error).__name__)


def test_the_harness_sees_an_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The properties can fail: with the rules and the no-follow writes switched off, tarfile's plain
    extraction writes through a link into the sentinel and the snapshot comparison notices."""

    def unsafe_extract(path: Path, dest: Path, **_: object) -> None:
        with tarfile.open(path) as tar:
            if hasattr(tarfile, "fully_trusted_filter"):  # Python 3.14 refuses links by default
                tar.extractall(dest, filter="fully_trusted")
            else:
                tar.extractall(dest)

    monkeypatch.setattr(archive, "extract", unsafe_extract)
    monkeypatch.setattr(archive, "audit", lambda members: None)
    with pytest.raises(AssertionError, match=r"\(a\) something outside dest"):
        check_properties([Member("l", "symlink", "../outside"), Member("l/pwned", "file", data=b"x")])


# ------------------------------------------------------------------------------------------ regressions
# Examples that failed the properties above before stubforge/envs/archive.py was fixed, kept verbatim.


@pytest.mark.parametrize(
    ("items", "member", "words"),
    [
        # (d): a hard link to what is by then a symbolic link copies the link, whose relative target is then
        # read from the hard link's directory: dest/h -> ../x led to work/x.
        (
            [
                Member("a/f", "file", data=b"x"),
                Member("a/f", "symlink", "../x"),
                Member("h", "hardlink", "a/f"),
            ],
            "h",
            "which is a symbolic link at that point",
        ),
        # (d): links were looked up by their spelled name, so 'a//l' was not seen when 'x' resolved through
        # 'a/l': audit thought x -> a, the kernel goes a/l -> (root) -> .. (outside).
        (
            [Member("a", "dir"), Member("a//l", "symlink", ".."), Member("x", "symlink", "a/l/..")],
            "x",
            "points outside the env (to 'a/l/..')",
        ),
        # (e), and issue 12 item 2's symptom: through 'a/./l' the path passes a link check did not see, and
        # the runner called the archive damaged.
        (
            [Member("a/./l", "symlink", "."), Member("a/l/f", "file")],
            "a/l/f",
            "passes through the symbolic link 'a/l'",
        ),
        # (e): members that do not fit the tree the earlier ones made failed half-way as "damaged".
        ([Member("l", "symlink", "")], "l", "empty target"),
        ([Member("l", "symlink", "a"), Member("l", "dir")], "l", "where the archive already has a symbolic"),
        ([Member("a", "file"), Member("a/b", "file")], "a/b", "its parent 'a' is a regular file"),
        ([Member("a/b", "file"), Member("a", "file")], "a", "would replace the directory"),
        ([Member("h", "file", data=b"x"), Member("h", "hardlink", "h")], "h", "hard link to itself"),
    ],
)
def test_regression_example_fails_no_more(items: list[Member], member: str, words: str) -> None:
    outcome = check_properties(items)
    assert isinstance(outcome.error, archive.UnsafeArchive)
    assert outcome.finding is not None and outcome.finding.member == member
    assert words in outcome.finding.reason
    assert "damaged" not in outcome.error.message + outcome.error.hint


def test_link_fan_out_is_audited_within_the_kernel_hop_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Links naming the previous link twice ('l1 -> l0/l0', 'l2 -> l1/l1', ...) took 2**n steps to audit:
    the hop limit counted nesting, not expansions, so a 40-link archive kept `check` and `run` busy for
    ever. The kernel stops after 40 expansions per lookup (ELOOP), and so does the audit now."""
    links = [tarfile.TarInfo("l0")]
    links[0].type, links[0].linkname = tarfile.SYMTYPE, "."
    for i in range(1, 40):
        info = tarfile.TarInfo(f"l{i}")
        info.type, info.linkname = tarfile.SYMTYPE, f"l{i - 1}/l{i - 1}"
        links.append(info)
    calls = 0
    resolve = archive._resolve

    def counting(*args: object) -> object:
        nonlocal calls
        calls += 1
        assert calls < 100_000, "the audit expands links exponentially"
        return resolve(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(archive, "_resolve", counting)
    finding = archive.audit(links)
    # l4's target 'l3/l3' takes 2 * 15 = 30 expansions, l5's 'l4/l4' 62: more than the kernel follows, so l5
    # is refused as a loop.
    assert finding is not None and finding.member == "l5" and "points outside" in finding.reason
