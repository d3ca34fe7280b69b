"""no_config: no config.pbtxt at all. The server names the model after its directory and picks the python
backend from model.py; the model declares its tensors and batching; the server then fills in what
dynamic_batching leaves out (preferred_batch_size)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.add_output({"name": "CONFIG", "data_type": "TYPE_STRING", "dims": [1]})
        auto_complete_model_config.set_max_batch_size(8)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def initialize(self, args):
        config = json.loads(args["model_config"])
        seen = {
            "name": config.get("name"),
            "backend": config.get("backend"),
            "max_batch_size": config.get("max_batch_size"),
            "preferred_batch_size": config.get("dynamic_batching", {}).get("preferred_batch_size"),
            "version_policy": config.get("version_policy"),
            "model_name": args["model_name"],
        }
        self.seen = json.dumps(seen, sort_keys=True).encode()

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            seen = np.array([[self.seen]] * len(x), dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("CONFIG", seen)])
            )
        return responses
