"""``forgetbench`` command line.

Exit status: 0 every run ok; 1 some runs failed, or some run the suite was asked for diverged or collapsed (the others
are kept; a calibration probe or tuning trial that diverged is an outcome of the search and counted apart); 2 invalid input
(bad config, unknown name, missing data while offline), in which case nothing is run or written.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from forgetbench.benchmark.core.config import ConfigError, TuneSpec, load_config
from forgetbench.benchmark.core.stop import EXIT_INTERRUPTED
from forgetbench.benchmark.core.store import DiskFull, ResultFolder

EXIT_OK, EXIT_RUNS_FAILED, EXIT_INVALID = 0, 1, 2
REPO_ROOT = Path(__file__).resolve().parents[2]  # benchmark/front/cli.py -> the checkout
DEFAULT_CONFIG = "configs/demo.yaml"


def _default_config_path() -> Path:
    local = Path(DEFAULT_CONFIG)
    return local if local.exists() else REPO_ROOT / DEFAULT_CONFIG


def _parse_seeds(text: str) -> list[int]:
    from forgetbench.benchmark.core.training import MAX_SEED

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None
    outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if outside:
        raise argparse.ArgumentTypeError(f"--seeds: a seed is an integer in 0..{MAX_SEED}, got {outside}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError("--seeds needs at least one seed and no repeats")
    return seeds


def _data_root(arg: str | None) -> Path:
    from forgetbench.benchmark.data.datasets import default_data_root

    return (Path(arg) if arg else default_data_root()).expanduser().resolve()


ESTIMATE_PRINTED_FROM = 60.0  # seconds: `run` prints its estimate first for a suite expected to take longer


def _until_decided(args: argparse.Namespace) -> dict[str, int] | None:
    """``--seeds-until-decided --max-seeds N [--seeds-step K]`` as the rule run_suite takes (None: off)."""
    if not args.seeds_until_decided:
        if args.max_seeds is not None or args.seeds_step is not None:
            raise ConfigError("--max-seeds / --seeds-step: only with --seeds-until-decided")
        return None
    rule = {"max": args.max_seeds if args.max_seeds is not None else 20}
    return rule | ({"step": args.seeds_step} if args.seeds_step is not None else {})


def cmd_run(args: argparse.Namespace) -> int:
    from forgetbench.benchmark.front.api import estimate_suite, run_suite

    config = args.config or _default_config_path()
    if args.estimate or not args.quiet:
        found = estimate_suite(
            config,
            args.out,
            data_root=_data_root(args.data_root),
            seeds=args.seeds,
            executor=args.executor,
            workers=args.workers,
            until_decided=_until_decided(args),
            always=args.estimate,
        )
        if found is not None and (args.estimate or found.wall_seconds > ESTIMATE_PRINTED_FROM):
            print("\n".join(found.lines()), flush=True)
        if args.estimate:
            return EXIT_OK
    results = run_suite(
        config,
        args.out,
        data_root=_data_root(args.data_root),
        seeds=args.seeds,
        fresh=args.fresh,
        progress=not args.quiet,
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        retries=args.retries,
        storage=args.storage,
        until_decided=_until_decided(args),
    )
    print(results.summary_text())
    tuning_file = results.outcome.tuning if results.outcome is not None else None
    if tuning_file is not None:
        from forgetbench.reports.tables import format_tuning

        print(f"\ntuning ({tuning_file}):")
        print(format_tuning(json.loads(tuning_file.read_text())))
    print(
        f"\n{len(results.ran)} run(s) executed, {len(results.skipped)} skipped (already complete), "
        f"{len(results.failed)} not ok. Results in {results.out}/"
    )
    if results.diverged:
        print(
            f"diverged={len(results.diverged)}: calibration probes, tuning trials or a tuned point's neighbours "
            "that diverged or collapsed: outcomes, not errors (those strengths are too strong for this optimiser and "
            "learning rate); they score below every finished run, are never chosen and are on no front"
        )
    from forgetbench.reports.decisions import DECISIONS_PREFIX
    from forgetbench.reports.verdict import EDGE_PREFIX, IDLE_PREFIX, TRADE_PREFIX

    shown = (EDGE_PREFIX, DECISIONS_PREFIX, TRADE_PREFIX, IDLE_PREFIX)
    lines = {
        scenario: "\n    ".join([v[0], *(line for line in v[1:] if line.startswith(shown))])
        for scenario, v in results.verdicts().items()
        if v
    }
    if lines:
        print(
            "\nVerdict (forgetting at matched plasticity where a method ran at several strengths, else at each "
            "strength with LA beside it; every pair decided: A < B, A > B, equivalent or undecided, each claim read off "
            "its pair's interval, the chance of any false claim in a verdict at most its alpha):"
        )
        for scenario, line in lines.items():
            print(f"  {scenario}: {line}")
    if not args.no_report:
        report = results.report(command=_command_line(args))
        print(f"\nReport: {report.resolve().as_uri()}")
    return EXIT_RUNS_FAILED if results.failed else EXIT_OK


def _command_line(args: argparse.Namespace) -> str:
    import shlex

    return shlex.join(["forgetbench", *args.argv])


class _ReportStopped(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_report_stopped(signum: int, frame) -> None:
    raise _ReportStopped(signum)


def cmd_table(args: argparse.Namespace) -> int:
    """A study table over result folders, as Markdown (:mod:`forgetbench.reports.study_tables`)."""
    from forgetbench.benchmark.front.api import load_results
    from forgetbench.reports.table_kinds import study_table

    from forgetbench.benchmark.core.metric_registry import METRICS

    asked = {"--metrics": args.metrics or [], "--compare": [args.compare] if args.compare else []}
    for flag, metrics in asked.items():
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"{flag}: unknown metric(s) {', '.join(unknown)}; allowed: {', '.join(METRICS)}")
    results = load_results(*args.results)  # a missing folder is a ConfigError: exit 2, named
    if not results.records:
        raise ConfigError(
            f"{', '.join(args.results)}: no readable run records (expected OUT/runs/<run_id>/result.json)"
        )
    options = {"metrics": args.metrics, "compare": args.compare, "naive": args.naive, "from_epoch_on": args.from_epoch}
    text = study_table(args.kind, results.records, results.folders, **options)
    if text is None:
        raise ConfigError(f"{', '.join(args.results)}: no run the {args.kind} table reads (no row to show)")
    print(text)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    import signal
    import time

    # a stop signal unwinds at once: the report's files are written atomically and together, so what was there stays
    previous = {sig: signal.signal(sig, _raise_report_stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    folders = [Path(args.results_dir), *map(Path, args.more_dirs)]
    target = Path(args.output) if args.output else ResultFolder(folders[0]) / ResultFolder.REPORT  # write_report's
    started = time.time_ns()
    skipped: list[tuple[str, str]] = []
    try:
        import importlib

        from forgetbench.reports.html import ReportError, unknown_metrics, write_report

        for module in args.imports:  # modules that register metrics (register_metric) the runs were written with
            try:
                importlib.import_module(module)
            except ImportError as exc:
                print(f"forgetbench: error: --import {module}: {exc}", file=sys.stderr)
                return EXIT_INVALID
        for sentence in unknown_metrics(folders):
            print(f"forgetbench: warning: {sentence}", file=sys.stderr)
        try:
            path = write_report(
                folders,
                Path(args.output) if args.output else None,
                command=_command_line(args),
                skipped=skipped,
                figures=Path(args.figures) if args.figures else None,
                strategies=args.strategies,
            )
        except ReportError as exc:
            print(f"forgetbench: error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    except _ReportStopped as stopped:
        name = signal.Signals(stopped.signum).name
        if target.is_file() and target.stat().st_mtime_ns >= started:
            print(f"forgetbench: report stopped by {name} after it was written: {target} is complete", file=sys.stderr)
        elif target.is_file():
            print(
                f"forgetbench: report stopped by {name}; the previous report {target} and its tables are intact "
                "(nothing was written)",
                file=sys.stderr,
            )
        else:
            print(f"forgetbench: report stopped by {name}; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if skipped:
        print(
            f"Skipped {len(skipped)} result file(s) that are not readable run records of this suite (each named above, and in "
            "the report)"
        )
    print(f"Report: {path}\nSummary: {path.parent / 'summary.csv'}")
    if args.figures:
        print(f"Figures: {args.figures} (one PNG per figure of the report)")
    return EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    """Decide every pair of a per-seed table (reports/table_decisions.py): sentences, and the table to --out."""
    from forgetbench.benchmark.core.store import atomic_write_bytes
    from forgetbench.reports.table_decisions import TableError, decide, read_table, sentences

    try:
        frame = decide(read_table(Path(args.table)), args.margin, args.alpha, args.direction, args.baseline)
    except TableError as exc:
        raise ConfigError(f"{args.table}: {exc}") from None
    for line in sentences(frame, args.alpha):
        print(line)
    if args.out:
        atomic_write_bytes(Path(args.out), frame.to_csv(index=False).encode())
        print(f"Decisions: {args.out}")
    return EXIT_OK


REPRODUCE_DIR = "configs/reproduce"


def _reproduction_configs(names: list[str], directory: str | None) -> list[Path]:
    folder = (
        Path(directory)
        if directory
        else (Path(REPRODUCE_DIR) if Path(REPRODUCE_DIR).is_dir() else REPO_ROOT / REPRODUCE_DIR)
    )
    available = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    if not available:
        raise ConfigError(f"--dir: no reproduction configs (*.yaml) in {folder}")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"reproduce: unknown reproduction(s) {unknown}; available: {', '.join(available)}")
    return [available[n] for n in names] if names else list(available.values())


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run reproduction suites and compare each with its published figures; 0 only if every row passes."""
    from forgetbench.benchmark.front.api import run_suite
    from forgetbench.benchmark.run.suite import preflight
    from forgetbench.reports.reproduce import format_row, reproduction_rows
    from forgetbench.reports.summary import runs_long, summary_table

    paths = _reproduction_configs(args.names, args.dir)
    root = _data_root(args.data_root)
    suites = {}
    for path in paths:  # every config and its data checked before anything runs
        suite = load_config(path)
        if suite.reproduce is None:
            raise ConfigError(f"{path}: reproduce: missing; a reproduction suite names its published figures there")
        preflight(suite, root)
        suites[path.stem] = suite
    seeds = list(range(args.seeds)) if args.seeds else None
    out = Path(args.out) if args.out else Path("results") / "reproduce"
    lines, outcomes = [], []
    for name, suite in suites.items():
        results = run_suite(
            suite,
            out / name,
            data_root=root,
            seeds=seeds,
            progress=not args.quiet,
            executor=args.executor,
            workers=args.workers,
        )
        results.report(command=_command_line(args))
        summary = summary_table(runs_long(results.records))
        published = suite.reproduce.model_dump() if suite.reproduce is not None else {}  # checked above
        rows = reproduction_rows(summary, published, suite.scenarios[0].display_name)
        for row in rows.to_dict("records"):
            lines.append(format_row(row, name))
            outcomes.append(row["passed"])
    print("\n".join(lines))
    print(f"\n{sum(outcomes)}/{len(outcomes)} reproduction row(s) pass. Results and reports in {out}/")
    return EXIT_OK if all(outcomes) else EXIT_RUNS_FAILED


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Probe each strategy's strength over decades on a validation split; write OUT/calibration.json."""
    from forgetbench.benchmark.front.api import calibrate_suite
    from forgetbench.benchmark.run.calibrate import CALIBRATION_FILE, format_calibration

    suite = load_config(args.config)
    out = Path(args.out) if args.out else Path("results") / suite.name
    result = calibrate_suite(
        suite,
        out,
        data_root=_data_root(args.data_root),
        seed=args.seed,
        decades=args.decades,
        fraction=args.fraction,
        objective=args.objective,
        fresh=args.fresh,
        show_progress=not args.quiet,
        executor=args.executor,
        workers=args.workers,
    )
    print(format_calibration(result))
    failed = [p for e in result["entries"] for p in e["probes"] if p["status"] not in ("ok", "diverged", "collapsed")]
    diverged = sum(p["status"] in ("diverged", "collapsed") for e in result["entries"] for p in e["probes"])
    if diverged:
        print(f"\ndiverged={diverged}: probes too strong for this optimiser; they bracket the peak from above")
    print(f"\nCalibration: {out / CALIBRATION_FILE}")
    return EXIT_RUNS_FAILED if failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    suite = load_config(args.config)  # first: a config refused here is refused before torch is imported

    from forgetbench.benchmark.core.config import refused_pairs
    from forgetbench.benchmark.run.spec import expand_suite
    from forgetbench.benchmark.run.suite import preflight

    if args.show_params and args.skip_data:
        raise ConfigError("--show-params builds each scenario, which reads its data: drop --skip-data")
    preflight(suite, _data_root(args.data_root) if args.data_root is not None or not args.skip_data else None)
    for (scenario, strategy), why in refused_pairs(suite).items():
        print(f"refused at config time, not run: {strategy} on {scenario}: {why}")
    runs = len(expand_suite(suite))
    from forgetbench.benchmark.run.tuning import plan_tuning

    studies = plan_tuning(suite)
    # trials + final seeds at the chosen point and its neighbours
    runs += sum(s.tune.trials * len(s.seeds) + len(suite.seeds) * (1 + len(s.tune.neighbours)) for s in studies)
    auto = any(how == "auto" for s in studies for how in s.tune.params.values())
    print(
        f"{args.config}: valid suite {suite.name!r}, {runs} run(s)"
        + (" and the calibration probes of its `auto` ranges" if auto else "")
    )
    if args.show_params:
        from forgetbench.benchmark.run.spec import RunSpec
        from forgetbench.benchmark.run.assemble import build_scenario
        from forgetbench.reports.tables import format_parameter_sets, parameter_sets

        for spec in suite.scenarios:
            run = RunSpec(suite.name, spec, suite.strategies[0], suite.seeds[0], suite.training, "cpu")
            built = build_scenario(run, _data_root(args.data_root))
            print(
                f"\nscenario {spec.display_name!r} (seed {suite.seeds[0]}): parameters each task's model uses "
                "(names as strategies see them)"
            )
            print(
                format_parameter_sets(
                    parameter_sets(built.model, [t.used_params for t in built.tasks], [t.name for t in built.tasks])
                )
            )
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from forgetbench.benchmark.core.components import DATASETS, SCENARIOS, STRATEGIES

    registries = {"strategies": STRATEGIES, "scenarios": SCENARIOS, "datasets": DATASETS}
    kinds = [args.kind] if args.kind else list(registries)
    for kind in kinds:
        print(f"{kind}:")
        # a name registered only to say why it cannot run (an Avalanche class that needs its own model) is not listed
        entries = [e for e in registries[kind].listing() if not e.unavailable]
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            print(f"  {entry.name:<{width}}  {entry.description}")
        if kind == "strategies":
            print(f"  ({len(entries)} strategies)")
    return EXIT_OK


def _parse_measurements(text: str) -> tuple[str, ...]:
    from forgetbench.benchmark.perf.measurements import measurement_names

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    allowed = measurement_names()
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--only: unknown measurement(s) {', '.join(unknown) or '(none given)'}; allowed: {', '.join(allowed)}"
        )
    return names


def cmd_perf(args: argparse.Namespace) -> int:
    import json

    import torch

    from forgetbench.benchmark.data.datasets import DataMissingError
    from forgetbench.benchmark.perf.measure import DeviceMissingError, PerfOptions, format_table, run_perf
    from forgetbench.benchmark.perf.measurements import default_names, measurement_params

    only = args.only or tuple(default_names())
    params = measurement_params(list(only), args.settings)  # a bad --set: exit 2, nothing run
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    opts = PerfOptions(
        data_root=_data_root(args.data_root),
        repeats=args.repeats,
        dataset=args.dataset,
        only=only,
        params=params,
        quick=args.quick,
        device=args.device,
        model=args.model,
    )
    opts.training = opts.training.model_copy(update={"precision": args.precision, "channels_last": args.channels_last})
    progress = None if args.json else (lambda name: print(f"measuring {name} ...", file=sys.stderr))
    try:
        result = run_perf(opts, progress)
    except (DataMissingError, DeviceMissingError) as exc:
        print(f"forgetbench: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return EXIT_OK


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
    p.add_argument("--seeds", type=_parse_seeds, help="override the suite's seeds, e.g. 0,1,2")
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
    p.add_argument("--fresh", action="store_true", help="rerun runs that are already complete")
    p.add_argument("--no-report", action="store_true", help="do not write OUT/report.html at the end")
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
    p.add_argument("-o", "--output", help="report file (default: RESULTS_DIR/report.html); summary.csv goes beside it")
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
        "--direction", choices=["lower", "higher"], default="lower", help="which values are better (default lower)"
    )
    p.add_argument("--baseline", default="naive", help="the method compared first (default naive, where present)")
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
        type=_parse_measurements,
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
# modules takes 0.4-0.5 s here, a fifth of `validate`). The others (run, calibrate, reproduce, perf) keep it: their
# executors, worker pools and Ray clean up at exit.
QUICK_EXIT_COMMANDS = frozenset({"validate", "list", "table", "report", "decide"})


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
    command of :data:`QUICK_EXIT_COMMANDS`, once the standard streams and logging are flushed)."""
    import logging
    import os

    code, command = _dispatch(None)
    if command in QUICK_EXIT_COMMANDS:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _dispatch(argv: list[str] | None) -> tuple[int, str]:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the report quotes the command
    from forgetbench.benchmark.core.references import add_search_folder

    add_search_folder(Path.cwd())  # as `python -m` would: a console script does not search the working folder
    previous = None if args.command == "report" else _stop_on_sigterm()  # report sets its own from its first line
    try:
        if args.plugin_imports:
            from forgetbench.benchmark.core.config import import_plugins

            import_plugins(args.plugin_imports, "--import")
        return args.func(args), args.command
    except ConfigError as exc:
        print(f"forgetbench: error: {exc}", file=sys.stderr)
        return EXIT_INVALID, args.command
    except DiskFull as exc:
        print(f"forgetbench: error: {exc}", file=sys.stderr)
        return EXIT_RUNS_FAILED, args.command
    except OSError as exc:  # the environment refused a write (read-only folder, a directory in the way, ...)
        if exc.filename is None or exc.strerror is None:
            raise
        print(
            f"forgetbench: error: cannot write {exc.filename}: {exc.strerror}; nothing of it was written and the "
            "files beside it are as they were",
            file=sys.stderr,
        )
        return EXIT_RUNS_FAILED, args.command
    except KeyboardInterrupt:
        print("forgetbench: interrupted; completed runs are kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED, args.command
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    console_main()
