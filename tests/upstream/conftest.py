from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def upstream_sources() -> Path:
    """Real python_backend r24.10 inputs laid out for `sources import` (never committed)."""
    value = os.environ.get("STUBFORGE_UPSTREAM_SOURCES")
    if not value:
        pytest.skip("set STUBFORGE_UPSTREAM_SOURCES to a directory of real r24.10 sources to run these")
    path = Path(value)
    if not (path / "python_backend" / "CMakeLists.txt").is_file():
        pytest.fail(f"STUBFORGE_UPSTREAM_SOURCES={path} has no python_backend/CMakeLists.txt")
    return path
