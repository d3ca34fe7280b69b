"""Runner side: Triton's Python-backend parent reimplemented (launcher, IPC, health) with stubforge's own stub."""
