"""Request checks with Triton r24.10's exact wording (core/src/infer_request.cc)."""

from __future__ import annotations

import pytest

from stubforge.runner.requests import InferenceError, check

CONFIG = {
    "name": "m",
    "max_batch_size": 0,
    "input": [
        {"name": "A", "data_type": "TYPE_FP32", "dims": [-1, 3]},
        {"name": "B", "data_type": "TYPE_STRING", "dims": [1]},
    ],
}
BATCHED = {
    "name": "b",
    "max_batch_size": 4,
    "input": [{"name": "X", "data_type": "TYPE_INT32", "dims": [2], "reshape": {"shape": [1, 2]}}],
}


@pytest.mark.parametrize(
    ("config", "inputs", "message"),
    [
        (
            CONFIG,
            {"A": ("FP32", [2, 3]), "B": ("BYTES", [1]), "C": ("FP32", [1])},
            # tritonserver 2.51 word for word: the count comes first, the inputs last-added first, a bare `]`
            "[request id: <id_unknown>] expected 2 inputs but got 3 inputs for model 'm'. Got input(s) "
            "['C','B','A'], but missing required input(s) ]. Please provide all required input(s).",
        ),
        (
            CONFIG,
            {"A": ("FP32", [2, 3]), "C": ("FP32", [1])},
            "unexpected inference input 'C' for model 'm'",
        ),
        (
            CONFIG,
            {"A": ("FP32", [2, 3])},
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'm'. Got input(s) ['A'], but "
            "missing required input(s) ['B']. Please provide all required input(s).",
        ),
        (
            CONFIG,
            {"A": ("FP64", [2, 3]), "B": ("BYTES", [1])},
            "[request id: <id_unknown>] inference input 'A' data-type is 'FP64', but model 'm' expects 'FP32'",
        ),
        (
            CONFIG,
            {"A": ("FP32", [2, 4]), "B": ("BYTES", [1])},
            "[request id: <id_unknown>] unexpected shape for input 'A' for model 'm'. Expected [-1,3], got [2,4]. ",
        ),
        (
            BATCHED,
            {"X": ("INT32", [5, 2])},
            "[request id: <id_unknown>] inference request batch-size must be <= 4 for 'b'",
        ),
        (
            BATCHED,
            {"X": ("INT32", [])},
            "[request id: <id_unknown>] input 'X' has no shape but model requires batch dimension for 'b'",
        ),
        (
            BATCHED,
            {"X": ("INT32", [2])},
            "[request id: <id_unknown>] unexpected shape for input 'X' for model 'b'. Expected [-1,2], got [2]. NOTE: "
            "Setting a non-zero max_batch_size",
        ),
    ],
)
def test_triton_wording(config: dict, inputs: dict, message: str) -> None:
    with pytest.raises(InferenceError) as info:
        check(config, inputs)
    assert info.value.message.startswith(message)
    assert info.value.status.code == "INVALID_ARG" and info.value.status.http_status == 400


def test_valid_requests_and_reshape() -> None:
    assert check(CONFIG, {"A": ("FP32", [5, 3]), "B": ("BYTES", [1])}) == {"A": [5, 3], "B": [1]}
    assert check(BATCHED, {"X": ("INT32", [3, 2])}) == {"X": [3, 1, 2]}
    optional = {
        "name": "o",
        "input": [
            {"name": "A", "data_type": "TYPE_FP32", "dims": [1]},
            {"name": "B", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
        ],
    }
    assert check(optional, {"A": ("FP32", [1])}) == {"A": [1]}
