"""forgetbench: a continual-learning benchmark harness for networks that share parameters.

The Python API is :mod:`benchmark.api`: ``from benchmark.api import run_suite, load_results``.
"""

__version__ = "0.1.0"
