"""Stub-side Python of the harness stub: this directory is the stub's python-lib dir (argv 6)."""
