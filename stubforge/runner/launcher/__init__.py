"""The parent side of the Python backend: environments, stub launch, health (TRITON_FACTS §1–§5)."""
