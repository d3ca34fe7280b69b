"""Decoupled: one response, then an exception before the final flag: the stream ends with Triton's error."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            out = pb_utils.Tensor("OUTPUT0", np.array([2.0], dtype=np.float32))
            sender.send(pb_utils.InferenceResponse([out]))
        raise RuntimeError("before the final flag")
