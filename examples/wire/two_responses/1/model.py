"""A model that is not decoupled sends two responses: the client sees 'expected a single response, got 2'."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            out = pb_utils.Tensor("OUTPUT0", np.array([1.0], dtype=np.float32))
            sender.send(pb_utils.InferenceResponse([out]))
            sender.send(
                pb_utils.InferenceResponse([out]), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            )
        return None
