"""`stubforge verify`: prove a model repository in a real tritonserver."""
