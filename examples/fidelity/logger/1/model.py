"""logger: pb_utils.Logger with its level constants, as python_backend's examples use them."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        logger = pb_utils.Logger
        logger.log("fidelity-logger info", logger.INFO)
        logger.log("fidelity-logger warning", logger.WARNING)
        logger.log("fidelity-logger error", logger.ERROR)
        logger.log("fidelity-logger verbose", logger.VERBOSE)
        logger.log_info("fidelity-logger log_info")
        logger.log("fidelity-logger default level")

    def execute(self, requests):
        logger = pb_utils.Logger
        levels = [logger.INFO, logger.WARNING, logger.ERROR, logger.LogLevel.VERBOSE]
        responses = []
        for _ in requests:
            logger.log_warn("fidelity-logger execute")
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("LEVELS", np.array([int(v) for v in levels], dtype=np.int32)),
                        pb_utils.Tensor(
                            "NAMES", np.array([str(v).encode() for v in levels], dtype=np.object_)
                        ),
                    ]
                )
            )
        return responses
