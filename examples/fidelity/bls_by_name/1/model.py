"""bls_by_name: the callee's name comes from a BYTES tensor (as python_backend's bls example does), the request
carries parameters; also the error texts of a BLS call asking for an output the callee lacks, of one to a model
the server does not know, and of a plain exec() on a decoupled model."""

import numpy as np
import triton_python_backend_utils as pb_utils

PARAMETERS = {"scale": 2, "tag": '\u00e9t\u00e9 "q"', "on": True, "neg": -7}


def _text(value):
    return np.array([value.encode("utf-8")], dtype=np.object_)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "MODEL").as_numpy()[0]  # bytes
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            call = pb_utils.InferenceRequest(
                model_name=name,
                inputs=[data],
                requested_output_names=[b"OUTPUT0", "PARAMS"],
                parameters=PARAMETERS,
            )
            answer = call.exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            nope = pb_utils.InferenceRequest(
                model_name=name, inputs=[data], requested_output_names=["NOPE"]
            ).exec()
            square = pb_utils.InferenceRequest(
                model_name="square",
                inputs=[pb_utils.Tensor("IN", np.array([2], dtype=np.int32))],
                requested_output_names=["OUT"],
            ).exec()
            unknown = pb_utils.InferenceRequest(
                model_name=b"no_such_model", inputs=[data], requested_output_names=["OUTPUT0"]
            ).exec()
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("UNKNOWN_ERROR", _text(unknown.error().message())),
                        pb_utils.Tensor(
                            "ECHO", pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
                        ),
                        pb_utils.Tensor(
                            "PARAMS", pb_utils.get_output_tensor_by_name(answer, "PARAMS").as_numpy()
                        ),
                        pb_utils.Tensor("CALLER_PARAMS", _text(call.parameters())),
                        pb_utils.Tensor(
                            "NOPE_ERROR", _text(nope.error().message() if nope.has_error() else "")
                        ),
                        pb_utils.Tensor(
                            "DECOUPLED_ERROR", _text(square.error().message() if square.has_error() else "")
                        ),
                    ]
                )
            )
        return responses
