"""Environment spec files (envs/*.toml): a Python version and the packages to install.

python = "3.8"
pip = ["numpy<2", "pillow"]
conda = []          # needs conda, mamba or micromamba on PATH
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stubforge.envs.create import EnvError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

_KEYS = {"python", "pip", "conda"}


@dataclass(frozen=True)
class EnvSpec:
    path: Path
    python: str
    pip: list[str] = field(default_factory=list)
    conda: list[str] = field(default_factory=list)


def load(path: Path) -> EnvSpec:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EnvError(f"{path}: no such spec file", hint="see envs/ for examples") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EnvError(
            f"{path}: not valid TOML ({exc})", hint="see envs/py38-numpy.toml for the format"
        ) from exc
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise EnvError(
            f"{path}: unknown keys {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(_KEYS))}"
        )
    python = data.get("python")
    if not isinstance(python, str) or not python:
        raise EnvError(f'{path}: python = "3.X" is required', hint='add a line such as python = "3.8"')
    lists = {}
    for key in ("pip", "conda"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise EnvError(f"{path}: {key} must be a list of strings", hint=f'{key} = ["numpy<2"]')
        lists[key] = list(value)
    spec = EnvSpec(path=path, python=python, pip=lists["pip"], conda=lists["conda"])
    if spec.conda:
        conda_tool(
            f"{path} asks for conda packages ({', '.join(spec.conda)})"
        )  # fail before creating anything
    return spec


def conda_tool(why: str = "the spec asks for conda packages") -> str:
    """The conda-like tool that creates envs with conda packages: micromamba, mamba or conda, on PATH."""
    for tool in ("micromamba", "mamba", "conda"):
        found = shutil.which(tool)
        if found:
            return found
    raise EnvError(
        f"{why}, but neither conda, mamba nor micromamba is installed",
        hint="install one of them, or move the packages to pip = [...]",
    )
