from __future__ import annotations

from pathlib import Path

import pytest

from stubforge.envs import spec
from stubforge.envs.create import EnvError

ENVS = Path(__file__).resolve().parents[2] / "envs"


@pytest.mark.parametrize(("name", "python"), [("py38-numpy.toml", "3.8"), ("py310-numpy.toml", "3.10")])
def test_bundled_specs_load(name: str, python: str) -> None:
    loaded = spec.load(ENVS / name)
    assert loaded.python == python
    assert any(p.startswith("numpy") for p in loaded.pip)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('pip = ["numpy"]\n', 'python = "3.X" is required'),
        ('python = "3.8"\npip = "numpy"\n', "pip must be a list of strings"),
        ('python = "3.8"\npackages = []\n', "unknown keys packages"),
        ('python = "3.8"\npip = [\n', "not valid TOML"),
        ('python = "3.8"\nconda = ["libstdcxx-ng"]\n', "conda packages"),
    ],
)
def test_bad_specs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "env.toml"
    path.write_text(text)
    with pytest.raises(EnvError) as info:
        spec.load(path)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint


def test_missing_spec(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="no such spec file"):
        spec.load(tmp_path / "nope.toml")


def test_requirement_names() -> None:
    from stubforge.envs.inspect import requirement_names

    given = [
        "numpy<2",
        "brokenpkg @ file:///x",
        "/tmp/x",
        "./y",
        "https://x/y.whl",
        "Pillow[a]>=9",
        "-e .",
        "six",
    ]
    assert requirement_names(given) == ["numpy", "brokenpkg", "pillow", "six"]
