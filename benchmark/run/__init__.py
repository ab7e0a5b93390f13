"""Running: schedules, checkpoints, the runner (one spec -> one record), executors, suites, selection, tracking.

Imports ``core``, ``data``, ``train`` and ``forgetbench.strategies``."""
