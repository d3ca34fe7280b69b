"""verify's pure parts: synthetic inputs from a config, log excerpts, explanations, the numpy/pybind11 rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stubforge.core import releases
from stubforge.core.cache import STUB_NAME as STUB
from stubforge.server.verify import session as run
from stubforge.server.verify import synthetic
from stubforge.server.verify.report import ModelReport
from stubforge.server.verify.stubmodes import StubModes


def test_inputs_follow_dtypes_dims_and_batching() -> None:
    config = {
        "max_batch_size": 8,
        "input": [
            {"name": "IMG", "data_type": "TYPE_UINT8", "dims": ["-1", "3"]},
            {"name": "TEXT", "data_type": "TYPE_STRING", "dims": ["2"]},
            {"name": "FLAG", "data_type": "TYPE_BOOL", "dims": ["1"]},
            {"name": "HALF", "data_type": "TYPE_FP16", "dims": ["4"]},
        ],
    }
    built = {i.name: i for i in synthetic.inputs_for(config)}
    assert built["IMG"].data.shape == (1, 1, 3) and built["IMG"].data.dtype == np.uint8
    assert built["IMG"].datatype == "UINT8"
    assert built["TEXT"].datatype == "BYTES" and built["TEXT"].data.tolist() == [[b"stubforge", b"stubforge"]]
    assert built["FLAG"].data.dtype == np.bool_ and built["FLAG"].data.shape == (1, 1)
    assert built["HALF"].data.dtype == np.float16 and built["HALF"].data.tolist() == [[1, 2, 3, 4]]


def test_no_batch_dimension_without_max_batch_size() -> None:
    config = {"input": [{"name": "X", "data_type": "TYPE_FP32", "dims": ["-1", "-1"]}]}
    (x,) = synthetic.inputs_for(config)
    assert x.data.shape == (1, 1) and x.datatype == "FP32"


def test_unsupported_dtype_is_named() -> None:
    with pytest.raises(synthetic.UnsupportedInput, match="BF"):
        synthetic.inputs_for({"input": [{"name": "B", "data_type": "TYPE_BF16", "dims": ["1"]}]})


LOG = """I1122 04:02:21.334709 19884 model_lifecycle.cc:472] "loading: bad:1"
I1122 04:02:21.334801 19884 model_config_utils.cc:1] "model config:"
instance_group {
  count: 1
}
backend: "python"
W1122 04:02:21.4 19884 model_lifecycle.cc:111] "ignore version directory 'env'"
/repo/bad/triton_python_backend_stub: error while loading shared libraries: libpython3.8.so.1.0: cannot open \
shared object file: No such file or directory
"""


def test_excerpt_keeps_warnings_errors_and_stub_output_only() -> None:
    excerpt = run.excerpt_of(LOG).splitlines()
    assert excerpt[0].startswith("W1122")
    assert "libpython3.8.so.1.0" in excerpt[1]
    assert len(excerpt) == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (LOG, "pack-env --python 3.8 --model"),
        ("Fatal Python error: init_fs_encoding: failed to get the Python codec", "another Python version"),
        ("ModuleNotFoundError: No module named 'numpy'", "install numpy<2 there"),
        (
            "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.2 as it may crash",
            "numpy<2",
        ),
        ("E1122 unable to find backend library for backend 'python_3_9'", "install backend"),
        ("unexpected directory name 'a' for model 'b', directory name must", "must equal the directory name"),
    ],
)
def test_explain_maps_log_text_to_a_fix(text: str, needle: str) -> None:
    hint = run.explain(text)
    assert hint is not None and needle in hint


def test_explain_is_silent_on_unknown_text() -> None:
    assert run.explain("I1122 all good") is None


@pytest.mark.parametrize(
    ("version", "than", "older"),
    [("2.10.0", "2.12", True), ("2.12.0", "2.12", False), ("2.13.6", "2.12", False), ("1.26.4", "2", True)],
)
def test_version_order(version: str, than: str, older: bool) -> None:
    assert releases.older(version, than) is older


def test_a_server_missing_the_wheels_libraries_gets_the_libs_hint(tmp_path: Path) -> None:
    from stubforge.server.verify.tritonserver import exit_hint

    log = (
        "tritonserver: error while loading shared libraries: libcudart-09529672.so.12.6.77: cannot open shared "
        "object file: No such file or directory\n"
    )
    hint = exit_hint(127, log, tmp_path / "server.log")
    assert "nvidia_pytriton.libs" in hint and "LD_LIBRARY_PATH" in hint and "libcudart-09529672" in hint
    other = exit_hint(127, log.replace("libcudart-09529672.so.12.6.77", "libfoo.so.1"), tmp_path / "s.log")
    assert "libfoo.so.1" in other and "nvidia_pytriton" not in other
    assert str(tmp_path / "server.log") in exit_hint(1, "error: creating server", tmp_path / "server.log")


def test_stub_modes_the_server_changed_are_restored_and_reported(tmp_path: Path) -> None:
    repo, backends = tmp_path / "repo", tmp_path / "backends"
    for stub in (repo / "a" / STUB, repo / "b" / STUB, backends / "python_3_10" / STUB):
        stub.parent.mkdir(parents=True)
        stub.write_bytes(b"\x7fELF")
        stub.chmod(0o755)
    modes = StubModes(repo, ["a", "b", "c"], backends)
    # What r24.10 does to a stub whose no-argument probe failed.
    (repo / "a" / STUB).chmod(0o100)
    (backends / "python_3_10" / STUB).chmod(0o100)
    reports = {
        "a": ModelReport("a", backend="python"),
        "b": ModelReport("b", backend="python"),
        "c": ModelReport("c", backend="python_3_10"),
    }
    restored = modes.restore(reports)
    assert sorted(restored) == sorted([str(repo / "a" / STUB), str(backends / "python_3_10" / STUB)])
    assert all(
        (p / STUB).stat().st_mode & 0o777 == 0o755 for p in (repo / "a", repo / "b", backends / "python_3_10")
    )
    assert "from mode 0755 to 0100 (mode 0755 restored)" in reports["a"].warnings[0]
    assert "Failed to give execute permission" in reports["c"].warnings[0]
    assert reports["b"].warnings == []
