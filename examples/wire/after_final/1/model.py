"""Decoupled: one response, the final flag, then an exception. The stream ends normally; the error is only logged."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            out = pb_utils.Tensor("OUTPUT0", np.array([2.0], dtype=np.float32))
            sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        raise RuntimeError("after the final flag")
