"""Building Triton's stub from upstream sources: inputs (sources, pins), cmake driving, verification."""
