"""The pieces of a reproducible build: prefix maps, recorded arguments, date/time macros."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from stubforge.stubs import reproducible


def test_prefix_maps_put_nested_directories_last(tmp_path: Path) -> None:
    outer = tmp_path / "cache"
    inner = outer / "sources" / "python_backend"
    inner.mkdir(parents=True)
    maps = reproducible.prefix_maps({"python_backend": inner, ".": outer})
    assert [m.directory for m in maps] == [str(outer), str(inner)]  # GCC: the last match wins
    assert maps[-1].flag() == f"-ffile-prefix-map={inner}=python_backend"


def test_prefix_maps_cover_the_real_path_of_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    maps = reproducible.prefix_maps({".": link})
    assert {m.directory for m in maps} == {str(link), str(real)}
    assert {m.name for m in maps} == {"."}


def test_compile_flags_keep_the_users_flags_first() -> None:
    maps = [reproducible.PrefixMap("/b", ".")]
    assert reproducible.compile_flags(maps, " -march=native ") == (
        "-march=native '-ffile-prefix-map=/b=.' -Wdate-time -Wno-error=date-time"
    )
    assert reproducible.compile_flags(maps).startswith("'-ffile-prefix-map=/b=.'")


def test_compile_flags_are_shell_words_whatever_the_directory(tmp_path: Path) -> None:
    odd = tmp_path / "my cache" / "it's here"
    flags = reproducible.compile_flags([reproducible.PrefixMap(str(odd), ".")])
    assert shlex.split(flags)[0] == f"-ffile-prefix-map={odd}=."


def test_normalized_replaces_nested_directories_first() -> None:
    names = {"build": "/c/builds/k", "python_backend": "/c/sources/pb", "all": "/c"}
    args = ["-S", "/c/sources/pb", "-B", "/c/builds/k", "-DX=/c/other", "-DY=plain"]
    assert reproducible.normalized(args, names) == [
        "-S",
        "<python_backend>",
        "-B",
        "<build>",
        "-DX=<all>/other",
        "-DY=plain",
    ]


def test_build_environment_pins_source_date_epoch_unless_set() -> None:
    assert reproducible.build_environment({})["SOURCE_DATE_EPOCH"] == "0"
    assert reproducible.build_environment({"SOURCE_DATE_EPOCH": "1700000000"})["SOURCE_DATE_EPOCH"] == (
        "1700000000"
    )


def test_date_time_uses_from_real_compiler_output(tmp_path: Path) -> None:
    source = tmp_path / "when.c"
    source.write_text('const char* when(void) { return __DATE__ " " __TIME__; }\n')
    flags = list(reproducible.DATE_TIME_FLAGS)
    proc = subprocess.run(
        ["cc", "-c", *flags, "-Werror", str(source), "-o", str(tmp_path / "when.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr  # reported, not fatal under upstream's -Werror
    uses = reproducible.date_time_uses(proc.stderr)
    assert uses and all(u.startswith(f"{source}: ") for u in uses)
    assert f"{source}: __DATE__" in uses


@pytest.mark.parametrize(
    "line",
    [
        "/b/x.cc:3:10: error: expansion of date or time macro is not reproducible [-Werror,-Wdate-time]",
        "/b/x.cc:3:10: warning: expansion of date or time macro is not reproducible [-Wdate-time]",
    ],
)
def test_date_time_uses_reads_clang_wording(line: str) -> None:
    assert reproducible.date_time_uses(line) == ["/b/x.cc: a date or time macro"]


def test_same_epoch_same_date(tmp_path: Path) -> None:
    source = tmp_path / "when.c"
    source.write_text("const char* when(void) { return __DATE__; }\n")
    env = reproducible.build_environment({"PATH": "/usr/bin:/bin"})
    outputs = []
    for n in range(2):
        out = tmp_path / f"when{n}.o"
        subprocess.run(["cc", "-c", str(source), "-o", str(out)], env=env, check=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert b"Jan  1 1970" in outputs[0]
