"""The one progress reporter: text lines with elapsed time, nothing when quiet, typed events when collected."""

from __future__ import annotations

import io
import re

import pytest

from stubforge import progress


def test_text_lines_carry_label_elapsed_step_and_detail() -> None:
    out = io.StringIO()
    top = progress.TextProgress("pack-env", out)
    top.step("copy", "Python 3.8 from /x")
    top.step("validate")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[pack-env +\d+\.\ds\] copy Python 3\.8 from /x", lines[0])
    assert re.fullmatch(r"\[pack-env +\d+\.\ds\] validate", lines[1])  # no trailing space without detail


def test_text_task_has_its_own_label_and_clock_and_drops_repeats() -> None:
    out = io.StringIO()
    child = progress.TextProgress("", out).task("py3.8")
    child.step("build", "1/3 compile a")
    child.step("build", "1/3 compile a")
    child.step("build", "2/3 compile b")
    assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == [
        "build 1/3 compile a",
        "build 2/3 compile b",
    ]
    assert out.getvalue().startswith("[py3.8 ")


def test_text_defaults_to_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    progress.TextProgress().step("configure")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.rstrip().endswith("s] configure")


def test_quiet_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress.QUIET.step("configure", "x")
    progress.QUIET.task("py3.8").step("done")
    assert capsys.readouterr() == ("", "")
    assert progress.reporter(quiet=True) is progress.QUIET
    assert isinstance(progress.reporter(label="verify"), progress.TextProgress)


def test_event_log_collects_for_json() -> None:
    log = progress.EventLog()
    log.step("check", "/repo")
    log.task("py3.10").step("verify")
    assert log.steps() == ["check", "verify"]
    data = log.to_list()
    assert [(e["task"], e["step"], e["detail"]) for e in data] == [
        ("", "check", "/repo"),
        ("py3.10", "verify", ""),
    ]
    assert all(isinstance(e["elapsed"], float) and e["elapsed"] >= 0 for e in data)


def test_implementations_satisfy_the_protocol() -> None:
    def use(reporter: progress.Progress) -> None:
        reporter.task("t").step("s")

    for reporter in (progress.QUIET, progress.TextProgress(stream=io.StringIO()), progress.EventLog()):
        use(reporter)
