"""Existing conda environments, packed with conda-pack used as a library.

conda-pack lays the env out in a scratch directory (its no-archive format, with its own bin/activate and
conda-unpack); it is validated there as Triton will start it, and only then written as stubforge's
deterministic tar.gz (or kept as a directory). conda-pack's failure messages become errors that say what to
do (docs/triton-behaviour.md: "EXECUTION_ENV_PATH and extraction"; "What users run into").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from stubforge.envs.create import EnvError

CONDA_TOOLS = ("conda", "mamba", "micromamba")


def prefix_for_name(name: str) -> Path:
    """Resolve `--name` the way conda does; needs a conda-like tool on PATH."""
    import subprocess

    tool = next((t for t in CONDA_TOOLS if shutil.which(t)), None)
    if tool is None:
        raise EnvError(
            f"--name {name} needs conda, mamba or micromamba on PATH to find the environment",
            hint="pass the environment's directory with --prefix instead",
        )
    proc = subprocess.run(
        [tool, "env", "list", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        envs = json.loads(proc.stdout).get("envs", [])
    except ValueError:
        envs = []
    for env in envs:
        if os.path.basename(env) == name:
            return Path(env)
    raise EnvError(
        f"no conda environment named {name!r}",
        hint=f"`{tool} env list` shows the names; or pass --prefix",
        details="\n".join(envs),
    )


def python_version(prefix: Path) -> str:
    """The python version conda recorded for the prefix."""
    records = sorted((prefix / "conda-meta").glob("python-[0-9]*.json"))
    for record in records:
        try:
            meta = json.loads(record.read_text())
        except ValueError:
            continue
        if meta.get("name") == "python":
            return str(meta["version"])
    raise EnvError(
        f"{prefix} has no python package in conda-meta",
        hint="install python into the environment (conda install python=3.X)",
    )


def check_prefix(prefix: Path) -> None:
    if not prefix.exists():
        raise EnvError(f"--prefix {prefix}: no such directory", hint="pass the environment's directory")
    if not (prefix / "conda-meta").is_dir():
        raise EnvError(
            f"--prefix {prefix} is not a conda environment (no conda-meta/)",
            hint="for a plain CPython or venv use --python or --venv; for conda, pass the env's prefix",
        )


def pack_to_directory(prefix: Path, dest: Path, log: Path, *, bytecode: bool = True) -> None:
    """conda-pack prefix straight into dest (its no-archive format: no tar written and read back).
    bytecode=False: no *.pyc laid out (an archive leaves them out anyway; conda-pack rewrites the prefix
    inside each one, which makes them the bulk of the files it writes)."""
    import conda_pack

    check_prefix(prefix)
    history = prefix / "conda-meta" / "history"
    created_history = False
    if not history.exists():
        # conda-pack 0.9.2 on Python 3.11 crashes at the very end ("mtime may not be None") without it.
        history.touch()
        created_history = True
    try:
        with open(log, "a") as out:
            out.write(f"conda-pack {conda_pack.__version__} --prefix {prefix} -> {dest}\n")
        conda_pack.pack(
            prefix=str(prefix),
            output=str(dest),
            format="no-archive",
            force=True,
            verbose=False,
            filters=None if bytecode else [("exclude", "*.pyc")],
        )
    except conda_pack.CondaPackException as exc:
        raise _explain(prefix, str(exc)) from exc
    finally:
        if created_history:
            history.unlink()
    # conda-pack 0.9's no-archive writer leaves an empty mkstemp file at the top: it is not part of the env,
    # and its random name would make two packs of one env differ.
    for entry in dest.iterdir():
        stray = entry.name.startswith("tmp") and entry.is_file() and entry.stat().st_size == 0
        if stray and not (prefix / entry.name).exists():
            entry.unlink()


def _explain(prefix: Path, message: str) -> EnvError:
    text = message.strip()
    if "deleted/overwritten" in text:
        return EnvError(
            f"conda-pack refuses {prefix}: pip replaced or removed files that conda installed",
            hint="reinstall the clobbered packages with one tool only (e.g. `pip uninstall X` then "
            "`conda install X`), check with `conda list`",
            details=text,
        )
    if "editable" in text.lower():
        return EnvError(
            f"conda-pack refuses {prefix}: it has editable (pip install -e) packages",
            hint="install them normally (`pip install .`), an editable install points outside the env",
            details=text,
        )
    if "multiple versions of python" in text:
        return EnvError(f"{prefix} has two python packages in conda-meta", hint="repair the environment")
    return EnvError(f"conda-pack could not pack {prefix}", hint="see the details", details=text)
