"""pyback: a Python-based backend. Serves every model with backend: "pyback"; each model's settings are in
<model>/<version>/model.json, found through pb_utils.get_model_dir()."""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        with open(os.path.join(pb_utils.get_model_dir(), "model.json")) as fh:
            self.factor = float(json.load(fh)["factor"])
        here = os.path.dirname(os.path.abspath(__file__))
        self.where = [
            os.path.relpath(pb_utils.get_model_dir(), args["model_repository"]).encode(),
            str(here in sys.path).encode(),
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUT", (x * self.factor).astype(np.float32)),
                        pb_utils.Tensor("WHERE", np.array(self.where, dtype=np.object_)),
                    ]
                )
            )
        return responses
