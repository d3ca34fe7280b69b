"""bls_sync: asks add_sub (BLS, blocking) and returns its sum, plus a BLS call to a missing model's error text."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [
                pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                pb_utils.get_input_tensor_by_name(request, "INPUT1"),
            ]
            answer = pb_utils.InferenceRequest(
                model_name="add_sub", inputs=inputs, requested_output_names=["OUTPUT0"]
            ).exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            total = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            missing = pb_utils.InferenceRequest(
                model_name="no_such_model", inputs=inputs, requested_output_names=["OUTPUT0"]
            ).exec()
            flag = np.array([1 if missing.has_error() else 0], dtype=np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("SUM", total), pb_utils.Tensor("MISSING_IS_ERROR", flag)]
                )
            )
        return responses
