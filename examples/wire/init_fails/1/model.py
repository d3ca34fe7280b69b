"""initialize() raises: the model does not load (Triton: 'load failed ... Internal: ...')."""


class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("cannot start")

    def execute(self, requests):
        return []
