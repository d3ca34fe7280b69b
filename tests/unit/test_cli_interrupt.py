"""An interrupted command says what it left, in its own terms (not a build's 'nothing was cached')."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stubforge import api
from stubforge.cli import cli


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("function", "argv", "words"),
    [
        (
            "set_env_path",
            ["param", "{model}", "{model}/env.tar.gz", "--write"],
            "config.pbtxt was left as it was",
        ),
        ("pack_env", ["pack-env", "--python", "3.8", "-o", "{model}/e.tar.gz"], "no output was written"),
        ("build_stubs", ["build", "--python", "3.8"], "nothing was cached"),
    ],
)
def test_interrupted_commands_name_what_they_left(
    function: str, argv: list[str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    monkeypatch.setattr(api, function, _interrupt)
    result = CliRunner().invoke(cli, [a.format(model=model) for a in argv])
    assert result.exit_code == 130, result.output
    assert f"error: interrupted; {words}" in result.output
