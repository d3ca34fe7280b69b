"""bls_thread (decoupled): execute() returns at once; a thread of the model makes the BLS call to add_sub after
that and sends its sum, then the final flag (BLS after execute returned, as Triton allows it)."""

import threading

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self._answer, args=(request,))
            thread.start()
            self.threads.append(thread)
        return None

    def _answer(self, request):
        sender = request.get_response_sender()
        inputs = [
            pb_utils.get_input_tensor_by_name(request, "INPUT0"),
            pb_utils.get_input_tensor_by_name(request, "INPUT1"),
        ]
        answer = pb_utils.InferenceRequest(
            model_name="add_sub", inputs=inputs, requested_output_names=["OUTPUT0"]
        ).exec()
        if answer.has_error():
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(answer.error().message())))
        else:
            total = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", total)]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join()
