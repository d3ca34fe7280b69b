"""The pure parts of the runner's Triton fidelity: JSON as the HTTP endpoint writes it, codes and statuses, and
who gets which answer after an execute() (values from tritonserver 2.51's own answers)."""

from __future__ import annotations

import numpy as np
import pytest

from stubforge.runner import kserve, outcomes, status
from stubforge.runner.launcher.stub import ModelError
from stubforge.runner.protocol import StreamedResponse


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, b"1.5"),
        (float(np.float32(0.1)), b"0.10000000149011612"),
        (float(np.float32(1e-7)), b"1.0000000116860974e-7"),
        (float(np.float32(1e16)), b"10000000272564224.0"),
        (-0.0, b"-0.0"),
        (0.0, b"0.0"),
        (float(np.float32(123456789.0)), b"123456792.0"),
        (float(np.float32(1e-5)), b"0.000009999999747378752"),
        (float("inf"), b"Infinity"),
        (float("nan"), b"NaN"),
        (1e22, b"1e22"),
        (1e-7, b"1e-7"),
        (5e-324, b"5e-324"),
        (1e100, b"1e100"),
        (-2.5, b"-2.5"),
        (6.0, b"6.0"),
        (100.0, b"100.0"),
        (0.001234, b"0.001234"),
    ],
)
def test_doubles_as_the_server_writes_them(value: float, text: bytes) -> None:
    assert kserve.double(value) == text


def test_bytes_are_written_raw_with_rapidjson_escapes() -> None:
    data = [b"TRITON", b"\xff\xfe\x00x", '\u00e9"\\/\n\t\x01\x7f'.encode(), b""]
    assert kserve.dumps(data) == b'["TRITON","\xff\xfe\\u0000x","\xc3\xa9\\"\\\\/\\n\\t\\u0001\x7f",""]'


def test_response_body_and_fp16_refusal() -> None:
    body = kserve.response(
        "m", "1", {"S": np.array([[b"a"], [b"b"]], dtype=np.object_), "B": np.array([True])}
    )
    assert kserve.dumps(body) == (
        b'{"model_name":"m","model_version":"1","outputs":[{"name":"S","datatype":"BYTES","shape":[2,1],'
        b'"data":["a","b"]},{"name":"B","datatype":"BOOL","shape":[1],"data":[true]}]}'
    )
    refused = kserve.response("m", "1", {"H": np.zeros(2, np.float16)})
    assert refused == {"error": kserve.FP16_REFUSED}


def test_codes_to_http_and_grpc() -> None:
    assert status.code_name(2) == "NOT_FOUND" and status.code_name(99) == "INTERNAL"
    assert status.TritonStatus("UNSUPPORTED", "x").http_status == 501
    assert status.TritonStatus("UNSUPPORTED", "x").grpc_status == "UNIMPLEMENTED"
    assert status.TritonStatus("CANCELLED", "x").http_status == 400


def _tensors(_specs: list) -> dict:
    return {"OUT": np.array([1])}


def test_unary_two_responses_is_tritons_error() -> None:
    sent = [StreamedResponse(0, {"OUT": np.array([1])}, 0, None)]
    failure = outcomes.Failure(status.TritonStatus("INTERNAL", "Failed ..."), {"type": "X"}, [False])
    [answer] = outcomes.unary("m", 1, sent, None, failure, _tensors)
    assert isinstance(answer, ModelError) and answer.status.message == "expected a single response, got 2"


def test_unary_sent_then_closed_error_only_logged() -> None:
    sent = [StreamedResponse(0, {"OUT": np.array([1])}, 1, None)]
    failure = outcomes.Failure(status.TritonStatus("INTERNAL", "Failed ..."), {"type": "X"}, [True])
    [answer] = outcomes.unary("m", 1, sent, None, failure, _tensors)
    assert isinstance(answer, dict) and answer["OUT"].tolist() == [1]


def test_unary_rescheduled_and_no_response() -> None:
    reply = {"responses": [{"rescheduled": True}, {"no_response": True}, {"outputs": [], "error": None}]}
    answers = outcomes.unary("m", 3, [], reply, None, _tensors)
    assert answers[0] is outcomes.RESCHEDULED
    assert isinstance(answers[1], ModelError) and outcomes.HANGS in answers[1].message
    assert isinstance(answers[2], dict)


def test_decoupled_error_after_final_goes_to_the_log() -> None:
    logs: list[dict[str, str]] = []
    failure = outcomes.Failure(status.TritonStatus("INTERNAL", "Failed after"), {}, [True])
    assert outcomes.decoupled(0, [], failure, logs) == []
    assert logs == [{"level": "ERROR", "message": "Failed after"}]
    before = outcomes.Failure(status.TritonStatus("INTERNAL", "Failed before"), {}, [False])
    [item] = outcomes.decoupled(0, [], before, logs)
    assert item.final and item.error is not None and item.error.message == "Failed before"
