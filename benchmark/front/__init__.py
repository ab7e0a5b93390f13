"""Front ends: the Python API, the CLI, the strategy/scenario contract checks, performance measurements.

May import every layer; nothing imports it (but the top-level ``forgetbench`` API)."""
