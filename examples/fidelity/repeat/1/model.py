"""repeat (decoupled): one response per element of IN, each with the element and its index, sent from a
worker thread after execute() has returned; then the final flag."""

import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.workers = []

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().copy()
            sender = request.get_response_sender()
            worker = threading.Thread(target=self.stream, args=(values, sender))
            worker.start()
            self.workers.append(worker)
        return None

    def stream(self, values, sender):
        for index, value in enumerate(values):
            sender.send(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUT", np.array([value], dtype=np.int32)),
                        pb_utils.Tensor("IDX", np.array([index], dtype=np.uint32)),
                    ]
                )
            )
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for worker in self.workers:
            worker.join()
