"""Answers each request with TritonError(code=<the code named in CODE>): the client gets that code."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "CODE").as_numpy()[0].decode()
            if hasattr(pb_utils.TritonError, name):
                error = pb_utils.TritonError("error code: " + name, getattr(pb_utils.TritonError, name))
            else:
                error = pb_utils.TritonError("unrecognized error code: " + name)
            responses.append(pb_utils.InferenceResponse(error=error))
        return responses
