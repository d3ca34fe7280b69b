"""Answers as tritonserver's HTTP endpoint writes them: KServe v2 inference response JSON, byte for byte.

`stubforge run --json` prints these so that its output diffs against `curl .../v2/models/<m>/infer`
(docs/triton-behaviour.md: "Responses, final flags and rescheduling" describes the server's JSON). The server
writes its JSON with RapidJSON: compact, BYTES elements as raw strings (bytes that are not UTF-8 stay raw, there
is no base64), doubles in RapidJSON's shortest form. The text is bytes, not str, for that reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stubforge.runner.runtime import _stubforge_wire as wire
from stubforge.runner.status import TritonStatus

FP16_REFUSED = "sending FP16 data via JSON is not supported. Please use the binary data format for output"

_SHORT_ESCAPES = {
    0x08: b"\\b",
    0x09: b"\\t",
    0x0A: b"\\n",
    0x0C: b"\\f",
    0x0D: b"\\r",
    0x22: b'\\"',
    0x5C: b"\\\\",
}


class Raw:
    """A JSON value already written (a nested document)."""

    def __init__(self, text: bytes) -> None:
        self.text = text


def string(value: bytes | str) -> bytes:
    """A JSON string as RapidJSON's Writer escapes it: `"` and `\\`, control characters (short forms where JSON
    has them, else \\u00XX); every other byte, UTF-8 or not, as it is."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = bytearray(b'"')
    for byte in data:
        if byte in _SHORT_ESCAPES:
            out += _SHORT_ESCAPES[byte]
        elif byte < 0x20:
            out += b"\\u%04X" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def double(value: float) -> bytes:
    """A double as RapidJSON writes it (Writer::WriteDouble with its Prettify rules) from the shortest
    round-trip digits: 1.0, 1e-7, 1e22, 10000000272564224.0, 0.000009999999747378752, Infinity, NaN.
    (RapidJSON's Grisu2 can differ from the shortest digits in the last place for a few values.)"""
    if math.isnan(value):
        return b"NaN"
    if math.isinf(value):
        return b"Infinity" if value > 0 else b"-Infinity"
    if value == 0:
        return b"-0.0" if math.copysign(1.0, value) < 0 else b"0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.d1d2... * 10^(point): where the decimal point sits relative to the digits
    point = len(whole.lstrip("0")) if whole.strip("0") else -(len(fraction) - len(fraction.lstrip("0")))
    point += int(exponent) if exponent else 0
    digits = digits.rstrip("0") or "0"
    length = len(digits)
    k = point - length  # digits * 10^k
    kk = length + k
    if k >= 0 and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return (sign + text).encode()


def dumps(value: Any) -> bytes:
    """Compact JSON, keys in the order given, written as the server's RapidJSON writes them."""
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, (int, np.integer)):
        return str(int(value)).encode()
    if isinstance(value, (float, np.floating)):
        return double(float(value))
    if isinstance(value, (bytes, str)):
        return string(value)
    if isinstance(value, dict):
        return b"{" + b",".join(string(str(k)) + b":" + dumps(v) for k, v in value.items()) + b"}"
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    return string(str(value))


def datatype(array: np.ndarray) -> str:
    if wire._is_bytes(array):
        return "BYTES"
    return wire._triton_dtype(array.dtype)


def output(name: str, array: np.ndarray) -> dict[str, Any]:
    """One entry of `outputs`: name, datatype, shape, data flat in row-major order."""
    kind = datatype(array)
    flat = array.reshape(-1)
    if kind == "BYTES":
        data: list[Any] = [
            item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogateescape") for item in flat
        ]
    elif kind == "BOOL":
        data = [bool(v) for v in flat]
    elif kind in ("FP32", "FP64"):
        data = [float(v) for v in flat]
    else:
        data = [int(v) for v in flat]
    return {"name": name, "datatype": kind, "shape": [int(d) for d in array.shape], "data": data}


def response(model: str, version: str, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The body of a successful infer, or Triton's error body when an output has no JSON form (FP16)."""
    if any(datatype(a) == "FP16" for a in outputs.values()):
        return error(TritonStatus("INVALID_ARG", FP16_REFUSED))
    return {
        "model_name": model,
        "model_version": version,
        "outputs": [output(name, array) for name, array in outputs.items()],
    }


def error(status: TritonStatus) -> dict[str, Any]:
    return {"error": status.message}
