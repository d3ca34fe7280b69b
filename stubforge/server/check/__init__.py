"""`stubforge check`: the known pitfalls of a model repository, found from its files alone."""
