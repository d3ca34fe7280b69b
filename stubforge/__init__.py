"""stubforge: Triton python_backend stubs and execution environments for any CPython."""

__version__ = "0.1.0"
