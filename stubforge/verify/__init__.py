"""Prove a model repository in a real tritonserver."""
