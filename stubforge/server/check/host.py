"""Rules on this host for a model without an env: path-python, user-site.

The host's PATH and ~/.local are this machine's, not necessarily the server's: both rules only warn.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from stubforge.server.check.report import WARN, ModelCheck


def path_python(check: ModelCheck) -> None:
    """A model without an env runs in the first python3 on the server's PATH: this host's (docs/triton-behaviour.md,
    "How the embedded interpreter finds its environment")."""
    python = shutil.which("python3")
    if not python or not check.stub_python:
        return
    probe = (
        "import sys, importlib.util as u\n"
        "print('%d.%d' % sys.version_info[:2], 1 if u.find_spec('numpy') else 0)"
    )
    try:
        out = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=30, check=False, cwd="/"
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return
    if len(out) != 2:
        return
    version, has_numpy = out[0], out[1] == "1"
    if version != check.stub_python:
        check.add(
            WARN,
            "path-python",
            f"no env: the stub (Python {check.stub_python}) will use the first python3 on the "
            f"server's PATH; here that is {python} (Python {version}): \"No module named 'encodings'\" or "
            "'numpy'",
            f"give the model an env (stubforge pack-env --python {check.stub_python} --model "
            f"{check.path}), or put a Python {check.stub_python} first on the server's PATH",
        )
    elif not has_numpy:
        check.add(
            WARN,
            "path-python",
            f"no env: the stub will import numpy from {python}, which has none: \"No module named 'numpy'\"",
            f"pip install 'numpy<2' for {python}, or give the model an env",
        )


def user_site(check: ModelCheck, minor: str | None) -> None:
    if not minor:
        return
    site = Path.home() / ".local" / "lib" / f"python{minor}" / "site-packages"
    if site.is_dir() and any(site.iterdir()) and not os.environ.get("PYTHONNOUSERSITE"):
        check.add(
            WARN,
            "user-site",
            f"{site} exists: the stub's Python {minor} also imports from it, on this host only",
            "start tritonserver with PYTHONNOUSERSITE=1",
        )
