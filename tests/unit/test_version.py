"""The version is written once (stubforge.__version__); the package metadata and the CLI read it from there."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import stubforge

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_takes_the_version_from_the_package() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', text, re.M)
    assert re.search(r'^version = \{ attr = "stubforge.__version__" \}$', text, re.M)
    assert not re.search(r'^version = "', text, re.M)  # no second copy in [project]


def test_installed_metadata_and_cli_report_the_package_version() -> None:
    assert importlib.metadata.version("stubforge") == stubforge.__version__
    # Through the entry module, whatever the CLI's group is called inside stubforge.cli.
    proc = subprocess.run(
        [sys.executable, "-m", "stubforge", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert stubforge.__version__ in proc.stdout
