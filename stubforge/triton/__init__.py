"""What Triton reads from a repository: config.pbtxt, EXECUTION_ENV_PATH, backend directories, and the resolver
that decides which backend, stub, env and Python serve each model."""
