"""The parent side of stubforge's shared-memory IPC with its harness stub."""
