"""params: echoes INPUT0 and answers request.parameters() exactly as the model receives it (a JSON string)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            echo = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            params = np.array([request.parameters().encode("utf-8")], dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", echo), pb_utils.Tensor("PARAMS", params)]
                )
            )
        return responses
