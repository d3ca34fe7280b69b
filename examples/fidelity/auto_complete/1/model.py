"""auto_complete: config.pbtxt names only the backend; the model declares its tensors and batching."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]})
        auto_complete_model_config.add_input({"name": "SCALE", "data_type": "TYPE_FP64", "dims": [2]})
        auto_complete_model_config.add_output({"name": "UPPER", "data_type": "TYPE_STRING", "dims": [1]})
        auto_complete_model_config.add_output({"name": "SCALED", "data_type": "TYPE_FP64", "dims": [2]})
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def initialize(self, args):
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            scale = pb_utils.get_input_tensor_by_name(request, "SCALE").as_numpy()
            upper = np.array([[t.upper() for t in row] for row in text], dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("UPPER", upper),
                        pb_utils.Tensor("SCALED", scale * self.config["max_batch_size"]),
                    ]
                )
            )
        return responses
