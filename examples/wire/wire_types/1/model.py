"""Outputs of every JSON-able kind, with the awkward values of Triton's HTTP JSON: BYTES that are not UTF-8,
control characters, doubles that need an exponent or a long fraction, infinities and NaN."""

import numpy as np
import triton_python_backend_utils as pb_utils

STRINGS = [b"TRITON", b"\xff\xfe\x00x", '\u00e9"\\/\n\t\x01\x7f'.encode(), b""]
FLOATS = [1.5, 0.1, 1e-7, 1e16, -0.0, 123456789.0, 1e-5, float("inf"), float("nan")]
DOUBLES = [0.1, 1e22, 1e-7, 5e-324, 1e100, -2.5]


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().sum())
            tensors = [
                pb_utils.Tensor("S", np.array([*STRINGS, str(n).encode()], dtype=np.object_)),
                pb_utils.Tensor("F", np.array([*FLOATS, n], dtype=np.float32)),
                pb_utils.Tensor("D", np.array([*DOUBLES, n / 4], dtype=np.float64)),
                pb_utils.Tensor("B", np.array([True, False, n > 0])),
                pb_utils.Tensor("I", np.array([[1, -2], [2**40, n]], dtype=np.int64)),
                pb_utils.Tensor("U", np.array([0, 255, n % 256], dtype=np.uint8)),
            ]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses
