"""Stub-side Python of the runner's stub: this directory is the stub's python-lib dir (argv 6)."""
