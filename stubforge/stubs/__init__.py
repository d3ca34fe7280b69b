"""Build side: upstream sources, pins, CMake, probing and caching Triton's stub; the runner's own stub."""
