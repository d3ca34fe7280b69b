"""execute() raises: every request fails with Triton's 'Failed to process the request(s)' text and its frames."""


def helper(count):
    raise ValueError("boom " + str(count))


class TritonPythonModel:
    def execute(self, requests):
        return [helper(len(requests))]
