"""Env archive rules: what extraction refuses (and `check` flags), extraction that never follows a link,
expansion limits, and a round trip of everything an env legitimately holds."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from stubforge.envs import archive
from stubforge.errors import EnvError


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _outside_files(root: Path, inside: Path) -> set[Path]:
    return {p for p in root.rglob("*") if inside not in p.parents and p != inside}


def pathmax_escape_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """The CVE-2025-4517 shape: links that make the resolved path longer than PATH_MAX, one that climbs out,
    then a file written through it."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    path = ""
    for step in steps:
        members.append((_info(os.path.join(path, comp), tarfile.DIRTYPE), b""))
        members.append((_info(os.path.join(path, step), tarfile.SYMTYPE, comp), b""))
        path = os.path.join(path, comp)
    link_path = os.path.join("/".join(steps), "l" * 254)
    members.append((_info(link_path, tarfile.SYMTYPE, "../" * len(steps)), b""))
    members.append((_info("escape", tarfile.SYMTYPE, link_path + "/" + "../" * 2 + "outside"), b""))
    members.append((_info("escape/pwned", size=5), b"owned"))
    return members


CHAIN = [
    (_info("a/b", tarfile.DIRTYPE), b""),
    (_info("a/b/c", tarfile.SYMTYPE, "../.."), b""),
    (_info("a/b/c/x", tarfile.SYMTYPE, ".."), b""),
    (_info("a/b/c/x/y", tarfile.SYMTYPE, ".."), b""),
    (_info("a/b/c/x/y/pwned", size=1), b"x"),
]


@pytest.mark.parametrize(
    ("members", "member", "words"),
    [
        (pathmax_escape_members(), "a/", "passes through the symbolic link"),
        (CHAIN, "a/b/c/x", "passes through the symbolic link 'a/b/c'"),
        ([(_info("../up", size=1), b"x")], "../up", "outside the env directory"),
        ([(_info("/abs", size=1), b"x")], "/abs", "outside the env directory"),
        ([(_info("lib/l", tarfile.SYMTYPE, "../../etc"), b"")], "lib/l", "points outside the env"),
        ([(_info("lib/l", tarfile.SYMTYPE, "/etc/passwd"), b"")], "lib/l", "points outside the env"),
        (
            [
                (_info("x", tarfile.SYMTYPE, "y/../.."), b""),
                (_info("y", tarfile.SYMTYPE, "."), b""),
            ],
            "x",
            "points outside the env",
        ),
        ([(_info("loop", tarfile.SYMTYPE, "loop/x"), b"")], "loop", "points outside the env"),
        ([(_info("h", tarfile.LNKTYPE, "/etc/passwd"), b"")], "h", "hard link"),
        ([(_info("h", tarfile.LNKTYPE, "nothing-before"), b"")], "h", "hard link"),
        ([(_info("dev", tarfile.CHRTYPE), b"")], "dev", "a device"),
        ([(_info("fifo", tarfile.FIFOTYPE), b"")], "fifo", "a FIFO"),
        (
            # A file, then a link of the same name, then a member through it: refused whatever the order.
            [
                (_info("lib", tarfile.DIRTYPE), b""),
                (_info("lib", tarfile.SYMTYPE, "."), b""),
                (_info("lib/z", size=1), b"z"),
            ],
            "lib/z",
            "passes through the symbolic link 'lib'",
        ),
    ],
)
def test_unsafe_members_are_refused_by_extraction_and_flagged_by_audit(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], member: str, words: str
) -> None:
    (tmp_path / "outside").mkdir()  # where the escape leads: the old extraction wrote outside/pwned here
    path = _write(tmp_path / "env.tar.gz", members)
    finding = archive.audit(m for m, _ in members)
    assert finding is not None and finding.member.startswith(member) and words in finding.reason
    dest = tmp_path / "work" / "dest"
    with pytest.raises(archive.UnsafeArchive) as caught:
        archive.extract(path, dest)
    assert "unsafe member" in caught.value.message and repr(finding.member) in caught.value.message
    assert "damaged" not in caught.value.message + caught.value.hint
    assert not dest.exists()
    assert list((tmp_path / "outside").iterdir()) == [] and not (tmp_path / "work" / "outside").exists()
    assert {p.name for p in tmp_path.rglob("pwned")} == set()


def test_extraction_never_follows_a_link_even_if_the_rules_missed_it(tmp_path: Path, monkeypatch) -> None:
    """Defence in depth: with the audit switched off, the kernel still refuses to walk through a link."""
    members = [(_info("lib", tarfile.SYMTYPE, str(tmp_path / "victim")), b""), (_info("lib/f", size=1), b"x")]
    (tmp_path / "victim").mkdir()
    path = _write(tmp_path / "env.tar.gz", members)
    monkeypatch.setattr(archive, "audit", lambda members: None)
    with pytest.raises(EnvError):
        archive.extract(path, tmp_path / "dest")
    assert list((tmp_path / "victim").iterdir()) == []
    assert not (tmp_path / "dest").exists()


def test_a_safe_env_round_trips(tmp_path: Path) -> None:
    exe = _info("bin/python3", size=4)
    exe.mode = 0o4755  # setuid is dropped
    ro = _info("share/ro", tarfile.DIRTYPE)
    ro.mode = 0o555
    members = [
        (_info("./", tarfile.DIRTYPE), b""),
        (_info("bin", tarfile.DIRTYPE), b""),
        (exe, b"\x7fELF"),
        (_info("bin/python", tarfile.SYMTYPE, "python3"), b""),
        (_info("lib/python3.8/site.py", size=3), b"abc"),
        (_info("lib/python3.8/site-link", tarfile.SYMTYPE, "../../bin/python3"), b""),
        (_info("lib/hard", tarfile.LNKTYPE, "lib/python3.8/site.py"), b""),
        (ro, b""),
        (_info("share/ro/file", size=2), b"ro"),
        (_info("lib/python3.8/site.py", size=3), b"new"),  # a repeated name replaces the earlier file
    ]
    path = _write(tmp_path / "env.tar.gz", members)
    dest = tmp_path / "dest"
    archive.extract(path, dest)
    assert (dest / "bin" / "python3").read_bytes() == b"\x7fELF"
    assert stat.S_IMODE((dest / "bin" / "python3").stat().st_mode) == 0o755
    assert os.readlink(dest / "bin" / "python") == "python3"
    assert (dest / "lib" / "python3.8" / "site.py").read_bytes() == b"new"
    assert (dest / "lib" / "hard").read_bytes() == b"abc"
    assert (dest / "lib" / "python3.8" / "site-link").resolve() == (dest / "bin" / "python3").resolve()
    assert (dest / "share" / "ro" / "file").read_bytes() == b"ro"
    assert stat.S_IMODE((dest / "share" / "ro").stat().st_mode) == 0o755  # owner keeps write: removable


def _gzip_bomb(path: Path, expanded: int) -> Path:
    """A tar.gz whose one member expands to `expanded` bytes of zeros, made of repeated gzip members (the
    format allows concatenation), so the test builds a 2 GB bomb in milliseconds."""
    info = _info("lib/blob", size=expanded)
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    chunk = 1 << 20
    zeros = gzip.compress(bytes(chunk), compresslevel=9)
    assert expanded % chunk == 0
    with open(path, "wb") as fh:
        fh.write(gzip.compress(header))
        for _ in range(expanded // chunk):
            fh.write(zeros)
        fh.write(gzip.compress(bytes(2 * tarfile.RECORDSIZE)))
    return path


def test_an_archive_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bomb = _gzip_bomb(tmp_path / "env.tar.gz", 2 << 30)
    assert bomb.stat().st_size < 3 << 20
    dest = tmp_path / "dest"
    with pytest.raises(archive.ArchiveTooLarge) as caught:
        archive.extract(bomb, dest)
    message = caught.value.message
    assert "expands to at least 2.1 GB" in message and "above the limit of 1.1 GB" in message
    assert "--max-env-size" in message + caught.value.hint
    assert not dest.exists()


def test_the_limit_can_be_raised_and_lowered(tmp_path: Path) -> None:
    small = _gzip_bomb(tmp_path / "env.tar.gz", 4 << 20)
    with pytest.raises(archive.ArchiveTooLarge, match=r"above the limit of 2\.1 MB \(the limit given"):
        archive.extract(small, tmp_path / "a", limits=archive.default_limits(small, archive.parse_size("2M")))
    archive.extract(small, tmp_path / "b", limits=archive.default_limits(small, archive.parse_size("8MiB")))
    assert (tmp_path / "b" / "lib" / "blob").stat().st_size == 4 << 20


def test_default_limit_grows_with_the_archive(tmp_path: Path) -> None:
    big = tmp_path / "big.tar.gz"
    with open(big, "wb") as fh:
        fh.truncate(100 << 20)
    assert archive.default_limits(big).max_bytes == 50 * (100 << 20)
    tiny = _write(tmp_path / "tiny.tar.gz", [(_info("f", size=1), b"x")])
    assert archive.default_limits(tiny).max_bytes == archive.FLOOR_BYTES


@pytest.mark.parametrize("text", ["", "-1", "lots", "0"])
def test_bad_sizes_are_named(text: str) -> None:
    with pytest.raises(EnvError, match="size"):
        archive.parse_size(text)


def test_a_truncated_archive_is_called_damaged(tmp_path: Path) -> None:
    path = _write(tmp_path / "env.tar.gz", [(_info("lib/f", size=100_000), os.urandom(100_000))])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EnvError, match="damaged or truncated") as caught:
        archive.extract(path, tmp_path / "dest")
    assert not isinstance(caught.value, archive.UnsafeArchive)
    assert not (tmp_path / "dest").exists()
