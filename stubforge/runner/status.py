"""Triton's error codes as a client sees them: the TRITONSERVER_Error code a model or the server sets, the HTTP
status and the gRPC status code each frontend turns it into (docs/triton-behaviour.md: "Error results and
codes"), and the error texts the runner writes the way tritonserver writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

# pb_utils.TritonError's numbers (TRITONSERVER_Error_Code) and their names.
CODE_NAMES = {
    0: "UNKNOWN",
    1: "INTERNAL",
    2: "NOT_FOUND",
    3: "INVALID_ARG",
    4: "UNAVAILABLE",
    5: "UNSUPPORTED",
    6: "ALREADY_EXISTS",
    7: "CANCELLED",
}

# The HTTP endpoint: codes without an HTTP counterpart answer 400.
HTTP_STATUS = {
    "INTERNAL": 500,
    "NOT_FOUND": 404,
    "UNAVAILABLE": 503,
    "UNSUPPORTED": 501,
    "UNKNOWN": 400,
    "INVALID_ARG": 400,
    "ALREADY_EXISTS": 400,
    "CANCELLED": 400,
}

# The gRPC endpoint (grpc.StatusCode names).
GRPC_STATUS = {
    "UNKNOWN": "UNKNOWN",
    "INTERNAL": "INTERNAL",
    "NOT_FOUND": "NOT_FOUND",
    "INVALID_ARG": "INVALID_ARGUMENT",
    "UNAVAILABLE": "UNAVAILABLE",
    "UNSUPPORTED": "UNIMPLEMENTED",
    "ALREADY_EXISTS": "ALREADY_EXISTS",
    "CANCELLED": "CANCELLED",
}


@dataclass(frozen=True)
class TritonStatus:
    """What a Triton client receives for a failed request: the code and the message, word for word."""

    code: str
    message: str

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    @property
    def grpc_status(self) -> str:
        return GRPC_STATUS.get(self.code, "UNKNOWN")

    def to_json(self) -> dict[str, str]:
        """The HTTP endpoint's error body."""
        return {"error": self.message}


def code_name(code: object) -> str:
    """A TritonError code (number or name) as its name; anything else is INTERNAL, TritonError's default."""
    if isinstance(code, int) and code in CODE_NAMES:
        return CODE_NAMES[code]
    if isinstance(code, str) and code in HTTP_STATUS:
        return code
    return "INTERNAL"


def execute_failed(instance: str, text: str) -> str:
    """An exception out of execute(), as the Python backend's stub reports it for every request of the batch."""
    return f"Failed to process the request(s) for model '{instance}', message: {text}"


def load_failed(model: str, version: str, text: str) -> str:
    """An exception out of initialize() or auto_complete_config(), as the model-load API reports it."""
    return f"load failed for model '{model}': version {version} is at UNAVAILABLE state: Internal: {text};\n"


SINGLE_RESPONSE = "expected a single response, got {count}"
CANCELLED_BY_CLIENT = "Locally cancelled by application!"
