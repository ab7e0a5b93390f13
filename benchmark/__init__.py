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

if __name__ == "benchmark":  # this checkout's folder imported by its own name (the repository root on sys.path)
    raise ImportError(
        "`benchmark` is a folder of forgetbench's checkout, not an import name: use `import forgetbench` "
        "(the public API) or `forgetbench.benchmark.<layer>.<module>` "
        "(e.g. `forgetbench.benchmark.front.api`)"
    )
