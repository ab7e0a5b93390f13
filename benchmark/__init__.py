"""forgetbench's harness, in layer folders (each imports only from the ones before it):

    core   registries, config, the run record, store, metrics and statistics
    data   datasets, corpora, models and scenarios
    train  the training template and the harness strategies extend
    run    schedule, checkpoints, the runner, executors, suites, tracking
    front  the Python API, the CLI, contract checks, performance measurements

(``strategies`` sits between ``train`` and ``run``, ``reports`` between ``run`` and ``front``.) Installed as
``forgetbench.benchmark``; the public API is ``import forgetbench``.
"""

__version__ = "0.1.0"

if __name__ == "benchmark":  # the pre-layers import name, from a checkout: point it at the new modules
    from forgetbench.benchmark.legacy import alias_old_name

    alias_old_name(__name__)
