"""Works until the client cancels: the client gets CANCELLED, and the model logs that it saw is_cancelled()."""

import time

import numpy as np
import triton_python_backend_utils as pb_utils

POLL_S = 0.05
LIMIT_S = 30.0


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            deadline = time.monotonic() + LIMIT_S
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(POLL_S)
            if request.is_cancelled():
                # The Logger reaches the server's log and the runner's model.logs: seen on both sides.
                pb_utils.Logger.log_info("cancellable: saw is_cancelled()")
                error = pb_utils.TritonError("cancelled by client", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                out = pb_utils.Tensor("OUTPUT0", np.array([LIMIT_S], dtype=np.float32))
                responses.append(pb_utils.InferenceResponse([out]))
        return responses
