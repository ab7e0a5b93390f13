"""Running: schedules, checkpoints, the runner (one spec -> one record), executors, suites, tuning, tracking.

Imports ``core``, ``data``, ``train`` and ``forgetbench.strategies``."""
