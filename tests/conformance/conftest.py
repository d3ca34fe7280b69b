"""The conformance suite's fixtures: the real tritonserver of the e2e tests, Triton's own models from outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import world  # noqa: F401 - the real server, shared with the e2e tests


@pytest.fixture(scope="session")
def triton_models() -> Path:
    """A directory of Triton's own Python models (qa/python_models of server r24.10, python_backend's examples),
    never committed: see docs/testing.md."""
    value = os.environ.get("STUBFORGE_CONFORMANCE_MODELS")
    if not value:
        pytest.skip(
            "set STUBFORGE_CONFORMANCE_MODELS to a directory of Triton's Python test models to run these"
        )
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"STUBFORGE_CONFORMANCE_MODELS={path} is not a directory")
    return path
