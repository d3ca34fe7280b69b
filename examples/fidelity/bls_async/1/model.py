"""bls_async: an async execute awaiting two add_sub calls at once (inputs as given, and swapped)."""

import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            swapped = [pb_utils.Tensor("INPUT0", b.as_numpy()), pb_utils.Tensor("INPUT1", a.as_numpy())]
            calls = [
                pb_utils.InferenceRequest(
                    model_name="add_sub", inputs=[a, b], requested_output_names=["OUTPUT1"]
                ),
                pb_utils.InferenceRequest(
                    model_name="add_sub", inputs=swapped, requested_output_names=["OUTPUT1"]
                ),
            ]
            first, second = await asyncio.gather(*[call.async_exec() for call in calls])
            for answer in (first, second):
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(
                            "DIFF", pb_utils.get_output_tensor_by_name(first, "OUTPUT1").as_numpy()
                        ),
                        pb_utils.Tensor(
                            "DIFF_SWAPPED", pb_utils.get_output_tensor_by_name(second, "OUTPUT1").as_numpy()
                        ),
                    ]
                )
            )
        return responses
