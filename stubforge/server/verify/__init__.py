"""`stubforge verify`: prove a model repository in a real tritonserver (session: the run; tritonserver: the
process; explain: what a failure means; report: what was found; synthetic: one request from a config)."""
