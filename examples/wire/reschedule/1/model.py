"""python_backend's request rescheduling: the first execute() of a request reschedules it, the second answers
with how many times it ran (RUNS = [2])."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Runs so far per sequence: a rescheduled request comes back as a new request object.
        self.runs = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            key = request.correlation_id()
            self.runs[key] = self.runs.get(key, 0) + 1
            if self.runs[key] == 1:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                responses.append(None)
            else:
                out = pb_utils.Tensor("RUNS", np.array([self.runs.pop(key)], dtype=np.int32))
                responses.append(pb_utils.InferenceResponse([out]))
        return responses
