"""The parent side of the Python backend: environments, stub launch, health (docs/triton-behaviour.md: "The
stub process and its probe"; "How the embedded interpreter finds its environment"; "EXECUTION_ENV_PATH and
extraction"; "Backend names and python_3_X directories"; "Health, failures and lifecycle")."""
