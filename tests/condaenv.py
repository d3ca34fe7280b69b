"""A prefix shaped like a real conda environment, for conda-pack (no conda exists on these machines).

What conda-pack reads is what conda writes: conda-meta/<name>-<version>-<build>.json records with `files` and
`link.source` pointing into a package cache whose info/files lists the package's files, plus conda-meta/history.
The python "package" (extracted into a package cache and hard-linked into the env, as conda does) is a
relocatable copy of a real pyenv CPython with its pip (conda-forge's python depends on pip); pip-installed
packages are unmanaged files, as in a real env after `pip install`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from stubforge.core import pythons
from stubforge.envs import create


def _record(meta: Path, pkgs: Path, prefix: Path, name: str, version: str, files: list[str]) -> None:
    build = f"{name}-{version}-h0_0"
    pkg = pkgs / build
    pkg.mkdir(parents=True)
    for rel in files:  # conda extracts each package into its cache and hard-links from there into envs
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        src = prefix / rel
        if src.is_symlink():
            (pkg / rel).symlink_to(os.readlink(src))
        else:
            os.link(src, pkg / rel)
    (pkg / "info").mkdir()
    (pkg / "info" / "files").write_text("".join(f + "\n" for f in files))
    (pkg / "info" / "index.json").write_text(json.dumps({"name": name, "version": version}))
    (meta / f"{build}.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": version,
                "build": "h0_0",
                "url": f"https://conda.anaconda.org/conda-forge/linux-64/{build}.conda",
                "files": files,
                "link": {"source": str(pkg), "type": 1},
            }
        )
    )


def _files(prefix: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), prefix) for d, _dirs, names in os.walk(prefix) for f in names
    )


def make_conda_prefix(
    root: Path,
    interp: pythons.Interpreter,
    pip_packages: list[str],
    prefix: Path | None = None,
    conda_packages: tuple[str, ...] = (),
) -> Path:
    prefix = prefix or root / "condaenv"
    pkgs = root / "pkgs"
    prefix.mkdir(parents=True)
    create.copy_interpreter(interp, prefix)
    (prefix / "bin" / "activate").unlink()  # conda envs have no bin/activate; conda-pack adds its own
    meta = prefix / "conda-meta"
    meta.mkdir()
    _record(
        meta,
        pkgs,
        prefix,
        "python",
        interp.version,
        [f for f in _files(prefix) if not f.startswith("conda-meta")],
    )
    site = prefix / "lib" / f"python{interp.minor}" / "site-packages"
    pip_dir = create.base_pip(interp)
    before = set(_files(prefix))
    shutil.copytree(pip_dir, site / "pip")
    for dist in pip_dir.parent.glob("pip-*.dist-info"):
        shutil.copytree(dist, site / dist.name)
    _record(meta, pkgs, prefix, "pip", "0", sorted(set(_files(prefix)) - before))
    for package in conda_packages:  # a conda package that ships only metadata: enough for the shape
        name, _, version = package.partition("=")
        _record(meta, pkgs, prefix, name, version or "1.0", [])
    (meta / "history").write_text("")
    if pip_packages:
        create.pip_install(prefix, interp, pip_packages, [], [], root / "pip.log")
    return prefix
