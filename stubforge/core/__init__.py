"""Facts every side shares: Triton releases, targets, interpreters, ELF, the cache, safe file writes."""
