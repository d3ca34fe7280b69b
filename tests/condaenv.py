"""A prefix shaped like a real conda environment, for conda-pack (no conda exists on these machines).

What conda-pack reads is what conda writes: conda-meta/<name>-<version>-<build>.json records with `files` and
`link.source` pointing into a package cache whose info/files lists the package's files, plus conda-meta/history.
The python "package" (extracted into a package cache and hard-linked into the env, as conda does) is a
relocatable copy of a real pyenv CPython; pip-installed packages are unmanaged files, as in a real env after
`pip install`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from stubforge import pythons
from stubforge.envs import create


def make_conda_prefix(root: Path, interp: pythons.Interpreter, pip_packages: list[str]) -> Path:
    prefix = root / "condaenv"
    prefix.mkdir(parents=True)
    create.copy_interpreter(interp, prefix)
    (prefix / "bin" / "activate").unlink()  # conda envs have no bin/activate; conda-pack adds its own
    files = sorted(
        os.path.relpath(os.path.join(d, f), prefix) for d, _dirs, names in os.walk(prefix) for f in names
    )
    build = f"python-{interp.version}-h0_0"
    pkg = root / "pkgs" / build
    # conda extracts each package into its cache and hard-links from there into envs.
    shutil.copytree(prefix, pkg, symlinks=True, copy_function=os.link)
    (pkg / "info").mkdir(parents=True)
    (pkg / "info" / "files").write_text("\n".join(files) + "\n")
    (pkg / "info" / "index.json").write_text(json.dumps({"name": "python", "version": interp.version}))
    meta = prefix / "conda-meta"
    meta.mkdir()
    (meta / f"{build}.json").write_text(
        json.dumps(
            {
                "name": "python",
                "version": interp.version,
                "build": "h0_0",
                "url": f"https://conda.anaconda.org/conda-forge/linux-64/{build}.conda",
                "files": files,
                "link": {"source": str(pkg), "type": 1},
            }
        )
    )
    (meta / "history").write_text("")
    if pip_packages:
        log = root / "pip.log"
        create.pip_install(prefix, interp, pip_packages, [], [], log)
    return prefix
