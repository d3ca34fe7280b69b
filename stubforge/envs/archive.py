"""Env archives: one set of rules for what is safe, used by extraction (the runner) and by `stubforge check`.

A member is refused, and nothing at all is written, when its name is absolute, empty or contains `..`; when its
path passes through a symbolic link of the archive (Triton r26.06 and newer refuse these too); when it is a
symbolic link that is absolute or resolves, through the archive's own links, outside the archive's root; when it
is a hard link to anything but an earlier regular file; when it is a device, FIFO or other special file; when it
does not fit the tree the earlier members made (a path below a file, a directory over a link, a file over a
directory); or when the archive expands beyond its size or member limits. Names are compared as the kernel
sees them ('a//b', 'a/./b' and 'a/b' are one path).

Extraction does not rely on tarfile's filters (their realpath checks have been bypassed with paths longer than
PATH_MAX): every directory is opened relative to its parent's descriptor with O_NOFOLLOW and every file created
with O_EXCL|O_NOFOLLOW, so even a rule missed here cannot make the kernel follow a link out of the destination.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stubforge.core.releases import Release, first_release
from stubforge.errors import EnvError
from stubforge.triton.envinfo import READ_ERRORS, open_archive

# The default expansion limit: this many times the archive's size, and never less than FLOOR_BYTES. A packed
# env expands 2-5x; a gzip of zeros a thousand times.
EXPANSION_RATIO = 50
FLOOR_BYTES = 1 << 30
MAX_MEMBERS = 1_000_000
# Left free on the destination's file system after extraction.
FREE_SPACE_MARGIN = 64 << 20
# Link resolution steps before a chain of links counts as a loop (the kernel's own limit is 40).
MAX_LINK_HOPS = 40


class UnsafeArchive(EnvError):
    """A member that could write outside the destination, or a member type an env never needs."""


class ArchiveTooLarge(EnvError):
    """The archive expands beyond a size or member-count limit."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_members: int = MAX_MEMBERS
    # Why max_bytes is what it is, for the error message.
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """Why an archive is refused: the member and a sentence a user can act on."""

    member: str
    reason: str


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """'2G', '500M', '1.5GB', '123' (bytes) -> bytes."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    for suffix, factor in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if value.endswith(suffix):
            value, scale = value[:-1], factor
            break
    try:
        number = float(value)
    except ValueError:
        raise EnvError(
            f"{text!r} is not a size", hint="give a number of bytes or a size like 500M, 4G"
        ) from None
    if number <= 0:
        raise EnvError(f"{text!r} is not a positive size", hint="give a size like 500M or 4G")
    return int(number * scale)


def default_limits(archive: Path, max_bytes: int | None = None) -> Limits:
    """The expansion limit for one archive: --max-env-size when given, else EXPANSION_RATIO times its size
    with a floor of FLOOR_BYTES."""
    if max_bytes is not None:
        return Limits(max_bytes=max_bytes, reason="the limit given (--max-env-size)")
    size = archive.stat().st_size
    ratio_limit = size * EXPANSION_RATIO
    if ratio_limit >= FLOOR_BYTES:
        return Limits(
            max_bytes=ratio_limit,
            reason=f"{EXPANSION_RATIO}x the archive's {human_bytes(size)}; raise it with --max-env-size",
        )
    return Limits(
        max_bytes=FLOOR_BYTES,
        reason=f"the default for archives under {human_bytes(FLOOR_BYTES // EXPANSION_RATIO)}; "
        "raise it with --max-env-size",
    )


def _clean_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def _path(name: str) -> str:
    """The path a member name lands on: 'a//b', './a/./b/' and 'a/b' are the same file to the kernel."""
    return "/".join(_parts(_clean_name(name)))


class _HopBudget:
    """Link expansions left for one resolution. The kernel allows MAX_LINK_HOPS per path lookup in total, not
    per nesting level; a per-level count lets links that each name the previous one several times
    ('l2 -> l1/l1', 'l3 -> l2/l2', ...) take exponential time to audit."""

    def __init__(self) -> None:
        self.left = MAX_LINK_HOPS

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _resolve(
    start: list[str], target: str, links: dict[str, str], budget: _HopBudget | None = None
) -> list[str] | None:
    """Where `target`, read in directory `start`, leads inside the archive; None when it leaves the root
    (or loops). Links of the archive are followed as the kernel would."""
    if target.startswith("/"):
        return None
    budget = budget or _HopBudget()
    stack = list(start)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        here = "/".join(stack)
        if here in links:
            if not budget.take():
                return None
            resolved = _resolve(stack[:-1], links[here], links, budget)
            if resolved is None:
                return None
            stack = resolved
    return stack


def audit(members: Iterable[tarfile.TarInfo]) -> Finding | None:
    """The first reason to refuse these members, or None. Looks at names, types and link targets only."""
    members = list(members)
    links = {_path(m.name): m.linkname for m in members if m.issym()}
    files: set[str] = set()
    for member in members:
        name = _clean_name(member.name)
        parts = _parts(name)
        if member.name.startswith("/") or os.path.isabs(member.name):
            return Finding(
                member.name, "it would be written outside the env directory (its path is absolute)"
            )
        if ".." in name.split("/"):
            return Finding(
                member.name, "it would be written outside the env directory (its path climbs out with '..')"
            )
        if not parts:
            if member.isdir():
                continue  # the archive's own root, "./"
            return Finding(member.name, "it has no name")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in links:
                return Finding(
                    member.name,
                    f"its path passes through the symbolic link {prefix!r} -> {links[prefix]!r}: writing it "
                    "would follow the link",
                )
        if member.issym():
            if not member.linkname:
                return Finding(member.name, "it is a link with an empty target")
            if member.linkname.startswith("/"):
                return Finding(
                    member.name,
                    f"it is a link that points outside the env (to the absolute path {member.linkname!r})",
                )
            if _resolve(parts[:-1], member.linkname, links) is None:
                return Finding(
                    member.name, f"it is a link that points outside the env (to {member.linkname!r})"
                )
        elif member.islnk():
            target = _path(member.linkname)
            if target not in files:
                return Finding(
                    member.name,
                    f"it is a hard link to {member.linkname!r}, which is not an earlier regular file of the "
                    "archive",
                )
        elif member.isfile():
            files.add("/".join(parts))
        elif not member.isdir():
            kind = "a FIFO" if member.isfifo() else "a device" if member.isdev() else "a special file"
            return Finding(member.name, f"it is {kind}; an env holds only files, directories and links")
    return _conflict(members)


_KIND_WORDS = {"dir": "a directory", "file": "a regular file", "link": "a symbolic link"}


def _conflict(members: list[tarfile.TarInfo]) -> Finding | None:
    """The first member that does not fit the tree the earlier members made, in archive order: a path below a
    file, a directory where a file or link is, anything but a directory where a directory is, a hard link to
    what is by then no regular file (a symbolic link would be linked as is, its relative target read from
    another directory). Extraction cannot write these faithfully, so check names them instead of the runner
    failing half-way. Members through links were refused before, by audit's first pass."""
    state: dict[str, str] = {}  # path -> "dir", "file" or "link", as extraction leaves it so far
    for member in members:
        parts = _parts(_clean_name(member.name))
        if not parts:
            continue  # the root: audit allowed only a directory there
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            kind = state.setdefault(prefix, "dir")
            if kind != "dir":
                return Finding(
                    member.name, f"its parent {prefix!r} is {_KIND_WORDS[kind]} earlier in the archive"
                )
        path = "/".join(parts)
        existing = state.get(path)
        if member.isdir():
            if existing not in (None, "dir"):
                return Finding(
                    member.name, f"it is a directory where the archive already has {_KIND_WORDS[existing]}"
                )
            state[path] = "dir"
            continue
        if existing == "dir":
            return Finding(member.name, "it would replace the directory of the same name")
        if member.islnk():
            target = _path(member.linkname)
            if target == path:
                return Finding(member.name, "it is a hard link to itself")
            if state.get(target) != "file":
                what = _KIND_WORDS.get(state.get(target, ""), "nothing")
                return Finding(
                    member.name,
                    f"it is a hard link to {member.linkname!r}, which is {what} at that point of the archive",
                )
        state[path] = "link" if member.issym() else "file"
    return None


def read_members(
    archive: Path, *, limits: Limits | None = None, dest: Path | None = None
) -> list[tarfile.TarInfo]:
    """The member list, with Triton's words when the file is not tar or gzip and a clear word when damaged.

    With `limits`, reading stops at the first header that takes the archive past them (a bomb is refused
    before it is decompressed in full), and with `dest` the expanded size must also fit the free space there.
    """
    try:
        with open(archive, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise EnvError(
            f"{archive}: cannot read ({exc.strerror})", hint="check the path and its permissions"
        ) from exc
    if not (head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"):
        raise EnvError(
            f"{archive}: archive_read_open_filename() failed. (Triton reads only tar and tar.gz)",
            hint="repack it as .tar.gz (stubforge pack-env -o NAME.tar.gz)",
        )
    free = shutil.disk_usage(dest.parent).free - FREE_SPACE_MARGIN if dest is not None else None
    members: list[tarfile.TarInfo] = []
    total = 0
    try:
        with open_archive(archive) as tar:
            while (member := tar.next()) is not None:
                members.append(member)
                if member.isfile():
                    total += member.size
                if limits is not None:
                    _check_limits(archive, len(members), total, limits)
                if free is not None and dest is not None and total > free:
                    raise ArchiveTooLarge(
                        f"{archive}: expands to at least {human_bytes(total)} but only "
                        f"{human_bytes(free + FREE_SPACE_MARGIN)} is free on the file system of {dest.parent}",
                        hint="nothing was extracted; free some space there, or set TMPDIR to a larger file system",
                    )
    except READ_ERRORS as exc:
        raise EnvError(
            f"{archive}: the archive is damaged or truncated ({exc})",
            hint="pack it again with stubforge pack-env",
        ) from exc
    return members


def total_bytes(members: Iterable[tarfile.TarInfo]) -> int:
    return sum(m.size for m in members if m.isfile())


def _check_limits(archive: Path, count: int, total: int, limits: Limits) -> None:
    if count > limits.max_members:
        raise ArchiveTooLarge(
            f"{archive}: more than {limits.max_members:,} members, above the limit",
            hint="nothing was extracted; an env this large is not one stubforge packed: check where the "
            "archive came from",
        )
    if total > limits.max_bytes:
        raise ArchiveTooLarge(
            f"{archive}: expands to at least {human_bytes(total)}, above the limit of "
            f"{human_bytes(limits.max_bytes)} ({limits.reason})",
            hint="nothing was extracted; an archive that expands this much is likely an archive bomb. If the "
            "env really is this large, pass --max-env-size with a larger size",
        )


def _opendir(root_fd: int, parts: list[str]) -> int:
    """A descriptor for root/parts, creating missing directories; never follows a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _parent_of(root_fd: int, parts: list[str]) -> Iterator[int]:
    fd = _opendir(root_fd, parts[:-1])
    try:
        yield fd
    finally:
        os.close(fd)


def _remove_existing(name: str, dir_fd: int) -> None:
    """Make room for a member that repeats an earlier name (tar replaces it); never removes a directory."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(name)
    os.unlink(name, dir_fd=dir_fd)


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int, dir_modes: list[tuple[list[str], int, float]]
) -> None:
    parts = _parts(_clean_name(member.name))
    if member.isdir():
        os.close(_opendir(root_fd, parts))
        dir_modes.append((parts, member.mode & 0o777, member.mtime))
        return
    with _parent_of(root_fd, parts) as parent:
        leaf = parts[-1]
        _remove_existing(leaf, parent)
        if member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
        elif member.islnk():
            src = _parts(_clean_name(member.linkname))
            with _parent_of(root_fd, src) as src_parent:
                os.link(src[-1], leaf, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(leaf, flags, 0o600, dir_fd=parent)
            try:
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a data stream
                while chunk := source.read(1 << 20):
                    _write_all(fd, chunk)
                # setuid/setgid/sticky bits are never kept: an env needs none of them.
                os.fchmod(fd, member.mode & 0o777)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def unsafe_hint(release: Release | None = None) -> str:
    """What to do about an unsafe archive, and what Triton (the release in play, or every release) does."""
    if release is not None:
        outcome = release.unsafe_archive_outcome()
    else:
        since = first_release(lambda r: r.refuses_unsafe_archive_members)
        outcome = f"Triton {since} and newer refuse it too, older releases write the member wherever it leads"
    return f"nothing was extracted ({outcome}); rebuild the env with stubforge pack-env"


def extract(
    archive: Path, dest: Path, *, limits: Limits | None = None, release: Release | None = None
) -> None:
    """Extract `archive` into `dest`, which must not exist yet. On any failure `dest` is removed.
    `release` only words the hint of an unsafe archive."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    members = read_members(archive, limits=limits or default_limits(archive), dest=dest)
    finding = audit(members)
    if finding is not None:
        raise UnsafeArchive(
            f"{archive}: unsafe member {finding.member!r}: {finding.reason}",
            hint=unsafe_hint(release),
        )
    os.mkdir(dest, 0o700)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    dir_modes: list[tuple[list[str], int, float]] = []
    try:
        with open_archive(archive) as tar:
            for member in members:
                if _parts(_clean_name(member.name)):
                    _write_member(tar, member, root_fd, dir_modes)
        # Directory modes and times last (deepest first), so read-only directories could be filled; the owner
        # keeps write permission so the extraction can be removed again.
        for parts, mode, mtime in sorted(dir_modes, key=lambda d: -len(d[0])):
            fd = _opendir(root_fd, parts)
            try:
                os.fchmod(fd, mode | 0o700)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    except READ_ERRORS as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise EnvError(
            f"{archive}: cannot extract ({exc})", hint="the archive is damaged or truncated; pack it again"
        ) from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        os.close(root_fd)
