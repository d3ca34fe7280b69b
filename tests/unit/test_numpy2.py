from __future__ import annotations

import dataclasses

from stubforge.stubs.build import artifact_key, numpy2_warning
from tests.conftest import interpreter


def test_python313_needs_pybind11_213() -> None:
    py = dataclasses.replace(interpreter("3.8"), version="3.13.0", numpy=None)
    assert "--pybind11 2.13.6" in (numpy2_warning(py, "2.10.0") or "")
    assert "--pybind11 2.13.6" in (numpy2_warning(py, "2.12.0") or "")
    assert numpy2_warning(py, "2.13.6") is None


def test_installed_numpy2_warns_for_old_pybind11() -> None:
    py = dataclasses.replace(interpreter("3.8"), numpy="2.0.2")
    warning = numpy2_warning(py, "2.10.0")
    assert warning and "numpy 2.0.2" in warning and "--pybind11 2.12.0" in warning
    assert numpy2_warning(py, "2.12.0") is None
    assert numpy2_warning(dataclasses.replace(py, numpy="1.24.4"), "2.10.0") is None
    assert numpy2_warning(dataclasses.replace(py, numpy=None), "2.10.0") is None


def test_artifact_key_parts() -> None:
    py = interpreter("3.10")
    key = artifact_key("r24.10", py, False, "2.10.0", "1.79.0", arch="aarch64")
    assert key == "r24.10-cp310-aarch64-cpu-pybind11_2.10.0-boost_1.79.0"
    gpu = artifact_key("r24.10", py, True, "2.12.0", "1.74.0", arch="x86_64")
    assert gpu == "r24.10-cp310-x86_64-gpu-pybind11_2.12.0-boost_1.74.0"
    extra = artifact_key("r24.10", py, False, "2.10.0", "1.79.0", arch="x86_64", cmake_args=("-DX=1",))
    assert extra.startswith("r24.10-cp310-x86_64-cpu-pybind11_2.10.0-boost_1.79.0-x") and len(extra) > len(
        key
    )
