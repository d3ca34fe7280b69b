"""Execution environments for EXECUTION_ENV_PATH: create, pack, inspect."""
