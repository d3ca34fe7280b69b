"""bls_decoupled: exec(decoupled=True) on the decoupled model square; counts its responses (square sends the
final flag alone: an empty last response), the empty ones, and a second pass over the same iterator."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "N")
            stream = pb_utils.InferenceRequest(
                model_name="square",
                inputs=[pb_utils.Tensor("IN", n.as_numpy())],
                requested_output_names=["OUT"],
            ).exec(decoupled=True)
            count, empty, values = 0, 0, []
            for response in stream:
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                count += 1
                if not response.output_tensors():
                    empty += 1
                    continue
                values.extend(pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy().tolist())
            again = sum(1 for _ in stream)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("COUNTS", np.array([count, empty, again], dtype=np.int32)),
                        pb_utils.Tensor("VALUES", np.array(values, dtype=np.int32)),
                    ]
                )
            )
        return responses
