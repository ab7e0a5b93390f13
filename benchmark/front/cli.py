"""``forgetbench`` command line.

Exit status: 0 every run ok; 1 some runs failed, or some run the suite was asked for diverged or collapsed (the others
are kept; a calibration probe or tuning trial that diverged is an outcome of the search and counted apart); 2 invalid input
(bad config, unknown name, missing data while offline), in which case nothing is run or written.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from forgetbench.benchmark.core.config import ConfigError, TuneSpec
from forgetbench.benchmark.core.stop import EXIT_INTERRUPTED
from forgetbench.benchmark.core.store import DiskFull
from forgetbench.benchmark.front.commands import (
    DEFAULT_CONFIG,
    EXIT_INVALID,
    EXIT_RUNS_FAILED,
    parse_seeds,
    cmd_run,
    cmd_table,
    cmd_report,
    cmd_decide,
    REPRODUCE_DIR,
    cmd_reproduce,
    cmd_calibrate,
    cmd_validate,
    cmd_list,
    parse_measurements,
    cmd_perf,
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _shared_options() -> tuple[argparse.ArgumentParser, ...]:
    """The options several commands share, declared once: data, progress, execution (argparse parent parsers)."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-root", help="data folder (default: $FORGETBENCH_DATA or ~/.cache/forgetbench)")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--quiet", action="store_true", help="no progress bar")
    execution = argparse.ArgumentParser(add_help=False)
    execution.add_argument(
        "--executor",
        choices=["local", "process", "ray", "auto"],
        default="local",
        help="where runs execute: this process (default), worker processes, Ray tasks, or auto (worker processes "
        "where there is more than one core, else this process)",
    )
    execution.add_argument(
        "--workers", type=int, help="parallel runs (process: default = cores; ray: cap on runs in flight)"
    )
    return data, progress, execution


def _add_run(sub, data, progress, execution) -> None:
    """The ``run`` command and its options."""
    p = sub.add_parser(
        "run", parents=[data, progress, execution], help="run every (scenario x strategy x seed) of a suite"
    )
    p.add_argument("config", nargs="?", help=f"suite YAML (default: {DEFAULT_CONFIG})")
    p.add_argument("--out", help="output folder (default: results/<suite name>)")
    p.add_argument("--seeds", type=parse_seeds, help="override the suite's seeds, e.g. 0,1,2")
    p.add_argument(
        "--seeds-until-decided",
        action="store_true",
        help="after the suite's seeds, add seeds in rounds to the strategies of undecided pairs until every pair is "
        "decided or --max-seeds is reached (as seeds: {start, max} in the config)",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the plan (every run, probes and trials included) and its expected wall and memory, measured from "
        "one shortened run per scenario and strategy, and stop (run prints it first when it plans 50 runs or more "
        "and expects over a minute)",
    )
    p.add_argument("--max-seeds", type=_positive_int, help="with --seeds-until-decided: the budget (default 20)")
    p.add_argument(
        "--seeds-step", type=_positive_int, help="with --seeds-until-decided: seeds a round adds (default 1)"
    )
    p.add_argument(
        "--batch-seeds",
        choices=["on", "off"],
        help="on: one run's seeds train as one stacked model where each seed keeps its own run's numbers; off: every "
        "seed trains alone (default: the suite's batch_seeds, on)",
    )
    p.add_argument("--fresh", action="store_true", help="rerun runs that are already complete")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="skip the report at the end: OUT/report.html and its tables (summary.csv, comparisons.csv, decisions.csv); "
        "`forgetbench report OUT` writes them later",
    )
    p.add_argument("--address", help="ray only: cluster to join (auto, ray://host:port); default starts a local Ray")
    p.add_argument("--retries", type=int, default=0, help="rerun failed runs up to this many times (default 0)")
    p.add_argument(
        "--storage",
        help="database URL of the tuning studies (`tune:` entries), any Optuna supports, "
        "e.g. postgresql://host/db (default: SQLite in OUT/tuning/study.db)",
    )
    p.set_defaults(func=cmd_run)


def _add_reproduce(sub, data, progress, execution) -> None:
    """The ``reproduce`` command and its options."""
    p = sub.add_parser(
        "reproduce",
        parents=[data, progress, execution],
        help="run the reproductions of published results and check them",
    )
    p.add_argument("names", nargs="*", help=f"reproductions to run (file stems in {REPRODUCE_DIR}/; default: all)")
    p.add_argument("--dir", help=f"folder of reproduction configs (default: {REPRODUCE_DIR})")
    p.add_argument("--seeds", type=_positive_int, help="run seeds 0..N-1 instead of each config's own")
    p.add_argument("--out", help="output folder (default: results/reproduce; one sub-folder per reproduction)")
    p.set_defaults(func=cmd_reproduce)


def _add_report(sub, data, progress, execution) -> None:
    """The ``report`` command and its options."""
    p = sub.add_parser("report", help="write the HTML report and summary.csv of result folders")
    p.add_argument("results_dir", help="a `run --out` folder; the report goes here by default")
    p.add_argument("more_dirs", nargs="*", help="more result folders to include")
    p.add_argument(
        "-o",
        "--output",
        help="report file (default: RESULTS_DIR/report.html); its tables (summary.csv, ...) go into RESULTS_DIR",
    )
    p.add_argument(
        "--figures",
        metavar="DIR",
        help="also write every figure of the report into DIR as a PNG (<scenario>-<figure>.png, "
        "frontier-<scenario>.png), for a paper or a page",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        metavar="LABEL",
        help="only these strategy labels' runs (e.g. naive and the strengths a page compares)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): one that registers metrics (register_metric) the runs "
        "were written with; the working folder is searched",
    )
    p.set_defaults(func=cmd_report)


def _add_decide(sub, data, progress, execution) -> None:
    """The ``decide`` command and its options."""
    p = sub.add_parser(
        "decide",
        help="decide every pair of a per-seed table (columns method, seed, value; optional scenario, order) as the "
        "report decides a results folder's: A < B, A > B, equivalent or undecided, any false claim at most alpha",
    )
    p.add_argument("table", help="CSV with columns method, seed, value (optional: scenario, order)")
    p.add_argument(
        "--margin", type=float, default=0.0, help="equivalence margin, in the values' unit (default 0: none)"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="the chance of any false claim (default 0.05)")
    p.add_argument(
        "--direction",
        choices=["lower", "higher"],
        default="lower",
        help="which values are better (default lower): a claim names the better method first (A < B where lower is "
        "better, A > B where higher is); the decisions are the same either way",
    )
    p.add_argument(
        "--baseline", help="the method compared first, one of the table's (default: naive, where the table has it)"
    )
    p.add_argument(
        "--max-seeds",
        type=_positive_int,
        help="with an order column (seeds added in rounds): the most seeds the rounds could have added, their planned "
        "budget (default: the most seeds a method has in the table)",
    )
    p.add_argument("--out", help="write the decisions as CSV here")
    p.set_defaults(func=cmd_decide)


def _add_table(sub, data, progress, execution) -> None:
    """The ``table`` command and its options."""
    from forgetbench.reports.table_kinds import TABLES  # names only: listing the kinds imports no pandas

    p = sub.add_parser(
        "table",
        help="print a study table over result folders as Markdown ("
        + "; ".join(f"{kind}: {table.summary}" for kind, table in TABLES.items()).replace("%", "%%")
        + ")",
    )
    p.add_argument("kind", choices=list(TABLES), help="which table")
    p.add_argument("results", nargs="+", help="result folders (`run --out`), read as one")
    p.add_argument("--metrics", nargs="+", help="interval: the metric keys of its columns (default ACC forgetting LA)")
    p.add_argument("--compare", help="interval: the metric paired against naive by seed (default forgetting)")
    p.add_argument("--naive", help="strength: the baseline's strategy label (default naive)")
    p.add_argument(
        "--from-epoch",
        type=int,
        help="strength: err2 - err1 over the search epochs from this one (0-based) on, e.g. the first with the "
        "penalty on (default: the scenario's measure_from_epoch)",
    )
    p.set_defaults(func=cmd_table)


def _add_calibrate(sub, data, progress, execution) -> None:
    """The ``calibrate`` command and its options."""
    p = sub.add_parser(
        "calibrate",
        parents=[data, progress, execution],
        help="probe each strategy's strength over decades until the objective has peaked: the bracket around "
        "its peak is tuning's default range (OUT/calibration.json)",
    )
    p.add_argument("config", help="suite YAML")
    p.add_argument("--out", help="output folder (default: results/<suite name>, beside the suite's own runs)")
    p.add_argument("--seed", type=int, help="the probes' seed (default: the suite's first)")
    decades, objective, fraction = (TuneSpec.model_fields[key] for key in ("decades", "objective", "fraction"))
    p.add_argument(
        "--decades",
        type=int,
        default=decades.default,
        help=f"probe 10^-N .. 10^N times each strength, one probe per decade (default {decades.default}: "
        f"{2 * decades.default + 1} probes), then a decade at a time beyond an end where the objective still rises "
        "(at most 3 more decades each way)",
    )
    p.add_argument(
        "--objective",
        choices=typing.get_args(objective.annotation),
        default=objective.default,
        help=f"what the probes are ranked by, as tuning's objective (default {objective.default}; forgetting is "
        "minimised)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=fraction.default,
        help=f"share of each task's training data held out to evaluate the probes (default {fraction.default})",
    )
    p.add_argument("--fresh", action="store_true", help="rerun probes that are already complete")
    p.set_defaults(func=cmd_calibrate)


def _add_validate(sub, data, progress, execution) -> None:
    """The ``validate`` command and its options."""
    p = sub.add_parser("validate", help="check a suite config and exit, running nothing")
    p.add_argument("config", help="suite YAML to check")
    p.add_argument("--data-root", help="also check that the data is there (default root if omitted)")
    p.add_argument("--skip-data", action="store_true", help="do not check that the data is present")
    p.add_argument(
        "--show-params",
        action="store_true",
        help="build each scenario and list every task's used, shared and private parameters",
    )
    p.set_defaults(func=cmd_validate)


def _add_list(sub, data, progress, execution) -> None:
    """The ``list`` command and its options."""
    p = sub.add_parser("list", help="list registered strategies, scenarios or datasets")
    p.add_argument(
        "kind", nargs="?", choices=["strategies", "scenarios", "datasets"], help="what to list (default: all)"
    )
    p.set_defaults(func=cmd_list)


def _add_perf(sub, data, progress, execution) -> None:
    """The ``perf`` command and its options."""
    from forgetbench.benchmark.perf.measurements import measurement_names  # module names only: none is imported

    p = sub.add_parser(
        "perf", parents=[data], help="measure the harness against a plain PyTorch loop, and regularizer costs"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--repeats", type=_positive_int, default=5, help="repeats per measurement (medians; default 5)")
    p.add_argument(
        "--only",
        type=parse_measurements,
        help="comma-separated measurements, run in the order named: "
        + ", ".join(measurement_names())
        + " (default: those registered with default=True, the sections of forgetbench.benchmark.perf; each "
        "documented in its module, forgetbench.benchmark.perf.measurements.NAME)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a probe's param (repeatable; YAML values, e.g. --set strategies=[naive,supsup])",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        choices=["mnist", "fashion_mnist", "digits"],
        help="dataset of the workloads (default: real MNIST from the data root)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch intra-op threads for both sides (default 1: stable on a shared machine)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; figures meaningless)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both sides train (default cpu)")
    p.add_argument(
        "--model",
        choices=["mlp", "cnn", "resnet18", "minilm"],
        help="the workload of every section (default: mlp, plus cnn in harness_vs_plain; minilm: "
        "configs/text_bbc.yaml's task-IL scenario, 256 documents per task, batches of 32)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16: forward and loss under bf16 autocast on both sides (default fp32)",
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last inputs and conv weights on both sides")
    p.set_defaults(func=cmd_perf)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forgetbench",
        description="Continual-learning benchmark harness for networks that share parameters.",
    )
    parser.add_argument(
        "--import",
        dest="plugin_imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before the command (repeatable): a plug-in's strategies, scenarios or metrics, found "
        "in the working folder or on PYTHONPATH (a suite can say `imports: [MODULE]` instead)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    shared = _shared_options()  # data, progress, execution
    for add in (
        _add_run,
        _add_reproduce,
        _add_report,
        _add_table,
        _add_decide,
        _add_calibrate,
        _add_validate,
        _add_list,
        _add_perf,
    ):
        add(sub, *shared)
    return parser


# Commands that only read configs or results and have written and closed whatever they write by the time they
# return: the console script ends their process without the interpreter's teardown (tearing down torch's and pandas'
# modules takes 0.4-0.5 s here, a fifth of `validate`; 1.9 s after `run --estimate`, which ends so too: it measures
# in this process and starts no worker). The others (run, calibrate, reproduce, perf) keep it: their executors,
# worker pools and Ray clean up at exit.
QUICK_EXIT_COMMANDS = frozenset({"validate", "list", "table", "report", "decide"})


def _ends_quickly(args: argparse.Namespace) -> bool:
    return args.command in QUICK_EXIT_COMMANDS or (args.command == "run" and bool(args.estimate))


def _stop_on_sigterm() -> typing.Any:
    """SIGTERM before a command installs its own stop handling (while a config is read, a factory builds, ...) ends
    the command as Ctrl-C does, with the same status (130), instead of killing it (143). Returns the handler to
    restore (None: none was changed)."""
    import signal
    import threading

    from forgetbench.benchmark.core.stop import StopRequested

    def stop(signum: int, frame) -> None:
        raise StopRequested(signum)

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        return signal.signal(signal.SIGTERM, stop)
    return None


def main(argv: list[str] | None = None) -> int:
    """The CLI, in this process: parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit status."""
    return _dispatch(argv)[0]


def console_main() -> None:
    """The ``forgetbench`` console script: :func:`main`, then exit (without the interpreter's teardown after a
    command of :data:`QUICK_EXIT_COMMANDS` or ``run --estimate``, once the standard streams and logging are
    flushed). The command is this process: ``run --estimate`` counts its budget from the process's start."""
    import logging
    import os

    code, quick = _dispatch(None, own_process=True)
    if quick:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _dispatch(argv: list[str] | None, own_process: bool = False) -> tuple[int, bool]:
    """The command's exit status, and whether its process may end without the interpreter's teardown."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the report quotes the command
    args.own_process = own_process
    return _command(args), _ends_quickly(args)


def _command(args: argparse.Namespace) -> int:
    from forgetbench.benchmark.core.references import add_search_folder

    add_search_folder(Path.cwd())  # as `python -m` would: a console script does not search the working folder
    previous = None if args.command == "report" else _stop_on_sigterm()  # report sets its own from its first line
    try:
        if args.plugin_imports:
            from forgetbench.benchmark.core.config import import_plugins

            import_plugins(args.plugin_imports, "--import")
        return args.func(args)
    except ConfigError as exc:
        print(f"forgetbench: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except DiskFull as exc:
        print(f"forgetbench: error: {exc}", file=sys.stderr)
        return EXIT_RUNS_FAILED
    except OSError as exc:  # the environment refused a write (read-only folder, a directory in the way, ...)
        if exc.filename is None or exc.strerror is None:
            raise
        print(
            f"forgetbench: error: cannot write {exc.filename}: {exc.strerror}; nothing of it was written and the "
            "files beside it are as they were",
            file=sys.stderr,
        )
        return EXIT_RUNS_FAILED
    except KeyboardInterrupt:
        print("forgetbench: interrupted; completed runs are kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    console_main()
