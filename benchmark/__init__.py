"""forgetbench: a continual-learning benchmark harness for networks that share parameters."""

__version__ = "0.1.0"
