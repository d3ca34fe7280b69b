from __future__ import annotations

import io
from pathlib import Path

import pytest

from stubforge.core import releases
from stubforge.envs import archive
from stubforge.errors import ReleaseError
from stubforge.stubs import pins
from tests.conftest import FIXTURE_SOURCES


@pytest.mark.parametrize("spec", ["24.10", "r24.10", "2.51.0", " 24.10 "])
def test_release_specs(spec: str) -> None:
    assert releases.normalize(spec) == "r24.10"


@pytest.mark.parametrize(
    ("branch", "server", "pybind11", "boost", "url_variable", "cmake"),
    [
        ("r23.12", "2.41.0", "2.10.0", "1.79.0", False, "3.17"),
        ("r24.10", "2.51.0", "2.10.0", "1.79.0", False, "3.17"),
        ("r24.11", "2.52.0", "2.12.0", "1.79.0", False, "3.17"),
        ("r25.06", "2.59.0", "2.12.0", "1.79.0", False, "3.17"),
        ("r25.08", None, "2.12.0", "1.79.0", False, "3.31.8"),
        ("r25.11", None, "2.12.0", "1.80.0", True, "3.31.8"),
        ("r26.04", "2.68.0", "2.12.0", "1.80.0", True, "3.31.8"),
        ("r26.07", "2.71.0", "2.12.0", "1.80.0", True, "3.31.8"),
    ],
)
def test_release_table_matches_upstream_branches(
    branch: str, server: str | None, pybind11: str, boost: str, url_variable: bool, cmake: str
) -> None:
    release = releases.KNOWN[branch]
    assert (release.triton_version, release.pybind11, release.boost) == (server, pybind11, boost)
    assert release.boost_via_url_variable is url_variable
    assert release.cmake_minimum == cmake


@pytest.mark.parametrize("spec", ["24.1", "main", "2.99.0", "v24.10"])
def test_bad_release_specs(spec: str) -> None:
    with pytest.raises(ReleaseError) as info:
        releases.normalize(spec)
    assert info.value.hint


def test_unknown_release_uses_newest_older_knowledge_but_no_unity() -> None:
    release = releases.get("26.09")
    assert release.branch == "r26.09"
    assert release.triton_version is None
    assert release.boost_via_url_variable
    assert not release.unity_proven


def test_pins_read_from_fixture_cmakelists() -> None:
    read = pins.read(FIXTURE_SOURCES / "python_backend")
    assert read.project == "tritonpythonbackend"
    assert read.cmake_minimum == "3.17"
    assert read.declared["pybind11"].version == "2.10.0"
    assert read.declared["dlpack"].version == "0.8"
    assert read.boost is not None and read.boost.version == "1.79.0"
    assert read.boost.url_variable is None
    assert read.boost.sha256 and len(read.boost.sha256) == 64


def test_boost_url_variable_form() -> None:
    text = """
set(TRITON_BOOST_URL "https://archives.boost.io/release/1.80.0/source/boost_1_80_0.tar.gz" CACHE STRING "x")
ExternalProject_Add(
  boostorg
  URL ${TRITON_BOOST_URL}
  URL_HASH SHA256=4b2136f98bdd1f5857f1c3dea9ac2018effe65286cf251534b6ae20cc45e1847
  PREFIX "boost-src"
)
"""
    pin = pins.parse_boost(text)
    assert pin is not None
    assert pin.url_variable == "TRITON_BOOST_URL"
    assert pin.version == "1.80.0"
    assert pin.url.endswith("boost_1_80_0.tar.gz")


def test_googletest_pin_comes_from_common_as_a_commit_archive() -> None:
    decl = pins.googletest_pin(FIXTURE_SOURCES / "common")
    assert decl is not None
    assert pins.commit_of(decl) == "9406a60c7839052e4944ea4dbc8344762a89f9bd"


def test_too_old_cmake_names_what_to_install() -> None:
    from stubforge.errors import BuildError
    from stubforge.stubs import upstream

    with pytest.raises(BuildError) as info:
        upstream.find_cmake("99.0")
    assert "no CMake >= 99.0 found; found " in info.value.message
    assert "pip install 'cmake>=99.0'" in info.value.hint
    assert upstream.find_cmake("3.17").version_tuple >= (3, 17)


# --- Behaviours as fields, checked where they change (docs/triton-behaviour.md, "Newer releases") ---------------


@pytest.mark.parametrize(
    ("before", "after", "field", "old", "new"),
    [
        (
            "r25.07",
            "r25.08",
            "activation",
            releases.Activation.BASH_SOURCE_ACTIVATE,
            releases.Activation.EXECV_WITH_VARIABLES,
        ),
        ("r25.07", "r25.08", "hangs_on_dead_stub", True, False),
        ("r25.07", "r25.08", "name_rules", releases.BASH_NAME_RULES, releases.EXECV_NAME_RULES),
        ("r25.07", "r25.08", "cmake_minimum", "3.17", "3.31.8"),
        ("r26.05", "r26.06", "refuses_unsafe_archive_members", False, True),
        ("r24.10", "r24.11", "pybind11", "2.10.0", "2.12.0"),
        ("r24.10", "r24.11", "unity_proven", True, False),
        ("r25.10", "r25.11", "boost_via_url_variable", False, True),
        ("r25.10", "r25.11", "boost", "1.79.0", "1.80.0"),
    ],
)
def test_each_behaviour_changes_at_its_release(
    before: str, after: str, field: str, old: object, new: object
) -> None:
    assert getattr(releases.KNOWN[before], field) == old
    assert getattr(releases.KNOWN[after], field) == new


def test_r2410_against_r2508_in_full() -> None:
    old, new = releases.KNOWN["r24.10"], releases.KNOWN["r25.08"]
    assert old.activation.sources_activate and old.activation.probes_stub
    assert not new.activation.sources_activate and not new.activation.probes_stub
    assert old.hangs_on_dead_stub and not new.hangs_on_dead_stub
    # Reproduced in r24.10; no later branch changes the process-wide chdir of the extraction.
    assert old.parallel_extraction_race and new.parallel_extraction_race
    assert " " in old.name_rules.characters and " " not in new.name_rules.characters
    assert old.name_rules.offending("/models/my model;x") == [" ", ";"]
    assert new.name_rules.offending("/models/my model;x") == [";"]
    assert old.unity_proven and not new.unity_proven
    assert releases.KNOWN["r23.12"].unity_proven is False


def test_pybind11_and_the_numpy2_rule_follow_the_release() -> None:
    r2410, r2411 = releases.KNOWN["r24.10"], releases.KNOWN["r24.11"]
    assert not r2410.allows_numpy2 and r2411.allows_numpy2
    assert r2410.numpy2_breaks("2.0.2") and not r2410.numpy2_breaks("1.26.4")
    assert not r2411.numpy2_breaks("2.0.2")
    assert releases.numpy2_breaks("2.1", "2.11.1") and not releases.numpy2_breaks("2.1", "2.13.6")


def test_boost_url_mechanism() -> None:
    fixed, variable = releases.KNOWN["r24.10"], releases.KNOWN["r25.11"]
    assert fixed.boost_url.endswith("/1.79.0/source/boost_1_79_0.tar.gz") and not fixed.boost_via_url_variable
    assert variable.boost_tarball_name == "boost_1_80_0.tar.gz" and variable.boost_via_url_variable
    assert fixed.boost_sha256 != variable.boost_sha256


def test_one_default_and_as_release_takes_either() -> None:
    assert releases.DEFAULT is releases.default_release() is releases.KNOWN["r24.10"]
    assert releases.normalize(releases.DEFAULT_TRITON) == releases.DEFAULT.branch
    assert releases.as_release(releases.DEFAULT) is releases.DEFAULT
    assert releases.as_release("2.51.0") is releases.DEFAULT
    assert releases.normalize(releases.KNOWN["r25.08"]) == "r25.08"
    assert releases.get("25.08") is releases.as_release("r25.08")
    with pytest.raises(ReleaseError):
        releases.as_release("v25.08")


def test_unknown_releases_take_behaviours_from_the_newest_older_one() -> None:
    future = releases.as_release("27.01")
    assert future.activation is releases.Activation.EXECV_WITH_VARIABLES
    assert future.refuses_unsafe_archive_members and not future.hangs_on_dead_stub
    ancient = releases.as_release("22.01")
    assert ancient.hangs_on_dead_stub and ancient.activation.sources_activate


def test_first_release_with_a_behaviour() -> None:
    assert releases.first_release(lambda r: not r.hangs_on_dead_stub) == "r25.08"
    assert releases.first_release(lambda r: r.refuses_unsafe_archive_members) == "r26.06"
    with pytest.raises(ValueError):
        releases.first_release(lambda r: False)


def test_no_library_default_is_a_literal_release() -> None:
    """Every library default is releases.DEFAULT_TRITON (the CLI is checked by its own tests)."""
    import inspect

    from stubforge.envs import packenv
    from stubforge.runner import api
    from stubforge.server import check, install
    from stubforge.stubs import build

    defaults = [
        build.BuildOptions().triton,
        packenv.PackOptions().triton,
        inspect.signature(api.Model).parameters["triton"].default,
        inspect.signature(install.install_model_stub).parameters["triton"].default,
        inspect.signature(install.install_backend).parameters["triton"].default,
        inspect.signature(check.check).parameters["triton"].default,
    ]
    assert all(d is releases.DEFAULT_TRITON for d in defaults)


# --- Messages state the behaviour of the release in play ----------------------------------------------------------


def test_dead_stub_outcome_follows_the_release() -> None:
    assert releases.KNOWN["r24.10"].dead_stub_outcome() == "Triton r24.10 hangs on it"
    assert releases.KNOWN["r24.10"].dead_stub_outcome(at_load=True) == "Triton r24.10 will hang at load"
    for text in (
        releases.KNOWN["r25.08"].dead_stub_outcome(),
        releases.KNOWN["r25.08"].dead_stub_outcome(at_load=True),
    ):
        assert "r25.08" in text and "hang" not in text and "r24.10" not in text


def test_check_findings_under_2508_do_not_claim_r2410_behaviour(tmp_path: Path) -> None:
    from stubforge.server.check import ModelCheck, env, paths, repository

    r2410, r2508 = releases.as_release("24.10"), releases.as_release("25.08")
    spaced = tmp_path / "my repo" / "m"
    old, new = ModelCheck("m", str(spaced)), ModelCheck("m", str(spaced))
    paths.path_chars(old, r2410, spaced)
    paths.path_chars(new, r2508, spaced)
    assert (
        len(old.findings) == 1
        and "Triton r24.10 starts the stub through an unquoted bash" in old.findings[0].message
    )
    assert new.findings == []  # no shell from r25.08: a space is just a character
    model = ModelCheck("m", "x")
    paths.path_chars(model, r2508, tmp_path / "a;b")
    assert "Triton r25.08 rejects names containing it" in model.findings[0].message
    assert "r24.10" not in model.findings[0].message and "bash" not in model.findings[0].message

    hooks_old = env.hooks_message(tmp_path / "env", 2, r2410)
    hooks_new = env.hooks_message(tmp_path / "env", 2, r2508)
    assert "Triton r24.10 runs them" in hooks_old and "from r25.08 on" in hooks_old
    assert "Triton r25.08 does not source bin/activate" in hooks_new and "r24.10" not in hooks_new

    envs = [ModelCheck(n, n, env=str(tmp_path / f"{n}.tar.gz"), backend=n) for n in ("python", "python_3_8")]
    race = [f for f in repository.repository_findings(envs, r2508) if f.check == "parallel-envs"]
    assert race and "Triton r25.08 extracts them" in race[0].message and "r24.10" not in race[0].message


def test_name_rules_say_which_characters_stop_the_launcher() -> None:
    r2410, r2508 = releases.as_release("24.10"), releases.as_release("25.08")
    # bash -c, unquoted: a space or ';' always breaks the command; a '*' mid-path is kept unless a glob matches.
    assert r2410.name_rules.breaks("/m/a b;c*d") == [" ", ";"]
    assert r2410.name_rules.offending("/m/a b;c*d") == [" ", "*", ";"]
    # execve: every character it refuses fails the load; a space is just a character.
    assert r2508.name_rules.breaks("/m/a b;c*d") == ["*", ";"]
    assert r2508.name_rules.breaking <= r2508.name_rules.characters
    assert r2410.name_rules.breaking <= r2410.name_rules.characters


def test_verify_dead_stub_message_follows_the_server_release() -> None:
    from stubforge.server.verify import explain, session

    assert "(the Triton r24.10 hang)" in explain.dead_stub_message("m", session.release_of("2.51.0"))
    newer = explain.dead_stub_message("m", releases.KNOWN["r26.04"])
    assert "r26.04" in newer and "forever" not in newer and "r24.10" not in newer
    unknown = explain.dead_stub_message("m", session.release_of("9.99.0"))
    assert "releases before r25.08 wait forever" in unknown
    assert session.release_of(None) is None


def test_runner_messages_follow_the_release(tmp_path: Path) -> None:
    import tarfile

    from stubforge.runner.launcher import envmanager
    from stubforge.runner.launcher import stub as launcher

    spec = launcher.LaunchSpec(tmp_path / "stub", tmp_path / "1" / "model.py", tmp_path, "m")
    assert spec.release is releases.DEFAULT
    assert "numpy<2 for Triton r24.10's stubs" in launcher._hint_for("No module named 'numpy'", spec)
    newer = launcher.LaunchSpec(
        tmp_path / "stub", tmp_path / "1" / "model.py", tmp_path, "m", release=releases.KNOWN["r25.08"]
    )
    hint = launcher._hint_for("No module named 'numpy'", newer)
    assert "numpy<2" not in hint and "r24.10" not in hint

    member = tarfile.TarInfo("../evil")
    member.size = 1
    with tarfile.open(tmp_path / "env.tar.gz", "w:gz") as tar:
        tar.addfile(member, io.BytesIO(b"x"))
    hints = {}
    for key, release in (("old", releases.KNOWN["r24.10"]), ("new", releases.KNOWN["r26.06"]), ("any", None)):
        with pytest.raises(archive.UnsafeArchive) as info:
            envmanager.safe_extract(tmp_path / "env.tar.gz", tmp_path / f"dest-{key}", release)
        hints[key] = info.value.hint
    assert "Triton r24.10 extracts it anyway" in hints["old"]
    assert "Triton r26.06 refuses to extract it" in hints["new"] and "r24.10" not in hints["new"]
    assert "Triton r26.06 and newer refuse it too, older releases write the member" in hints["any"]


def test_launch_command_follows_the_activation(tmp_path: Path) -> None:
    from stubforge.runner.launcher import stub as launcher

    def spec(branch: str) -> launcher.LaunchSpec:
        return launcher.LaunchSpec(
            tmp_path / "stub",
            tmp_path / "1" / "model.py",
            tmp_path,
            "m",
            env_dir=tmp_path / "env",
            release=releases.KNOWN[branch],
            base_env={"PATH": "/usr/bin", "PYTHONHOME": "/x"},
        )

    command, env = launcher.command_for(spec("r25.07"), ["stub", "a"])
    assert command[:2] == ["bash", "-c"] and "source" in command[2] and env["PYTHONHOME"] == "/x"
    command, env = launcher.command_for(spec("r25.08"), ["stub", "a"])
    assert command == ["stub", "a"] and env["VIRTUAL_ENV"] == str(tmp_path / "env")
    assert env["PATH"].startswith(str(tmp_path / "env" / "bin")) and "PYTHONHOME" not in env
