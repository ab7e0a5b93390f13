"""The training template (Avalanche, lean) and the harness strategies extend.

Imports ``core`` and ``data``; ``forgetbench.strategies`` builds on it."""
