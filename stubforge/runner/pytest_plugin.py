"""pytest plugin (entry point `pytest11`): run models in stubforge's runner from your tests.

    def test_add_sub(stubforge_model):
        model = stubforge_model("models/add_sub")
        out = model.infer({"INPUT0": a, "INPUT1": b})

    def test_pipeline(stubforge_repository):
        repo = stubforge_repository("models")
        out = repo.model("ensemble_py").infer(...)

    def test_versions(stubforge_model, stubforge_python):   # once per --stubforge-python version
        model = stubforge_model("models/add_sub", python=stubforge_python)

Every model loaded through these fixtures is closed (stub stopped, shared memory gone) when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the runner (numpy, posix_ipc) is imported only by tests that use these fixtures
    from stubforge.runner import api as harness


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stubforge")
    group.addoption(
        "--stubforge-python",
        action="store",
        default=None,
        help="Comma-separated Python versions for tests using the stubforge_python fixture (e.g. 3.8,3.10).",
    )
    group.addoption(
        "--stubforge-triton", action="store", default=None, help="Triton release whose launcher to imitate."
    )
    parser.addini("stubforge_python", "Default Python versions for stubforge_python (comma-separated).")


def _versions(config: pytest.Config) -> list[str]:
    raw = config.getoption("--stubforge-python") or config.getini("stubforge_python") or ""
    return [v.strip() for v in str(raw).split(",") if v.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stubforge_python" in metafunc.fixturenames:
        versions = _versions(metafunc.config)
        if not versions:
            versions = [None]  # type: ignore[list-item]  # the deployment decides
        metafunc.parametrize("stubforge_python", versions, ids=[v or "deployment" for v in versions])


@pytest.fixture
def stubforge_python(request: pytest.FixtureRequest) -> str | None:
    """The Python version of this parametrization (None: the model's stub or env decides)."""
    return getattr(request, "param", None)


def _defaults(config: pytest.Config, options: dict[str, Any]) -> dict[str, Any]:
    triton = config.getoption("--stubforge-triton")
    if triton and "triton" not in options:
        options = dict(options, triton=triton)
    return options


@pytest.fixture
def stubforge_model(request: pytest.FixtureRequest) -> Iterator[Callable[..., harness.Model]]:
    """Load a model directory in the runner: stubforge_model(path, python=..., **harness.load options)."""
    loaded: list[harness.Model] = []

    def load(model_dir: str | Path, **options: Any) -> harness.Model:
        from stubforge.runner import api as harness

        model = harness.load(model_dir, **_defaults(request.config, options))
        loaded.append(model)
        return model

    yield load
    for model in loaded:
        model.close()


@pytest.fixture
def stubforge_repository(request: pytest.FixtureRequest) -> Iterator[Callable[..., harness.Repository]]:
    """A model repository whose models load on first use: stubforge_repository(path).model(name)."""
    opened: list[harness.Repository] = []

    def open_repository(root: str | Path, **options: Any) -> harness.Repository:
        from stubforge.runner import api as harness

        repository = harness.Repository(root, **_defaults(request.config, options))
        opened.append(repository)
        return repository

    yield open_repository
    for repository in opened:
        repository.close()
