"""What each ``forgetbench`` command does, given its parsed arguments (:mod:`forgetbench.benchmark.front.cli` builds
the parser and dispatches): run, reproduce, report, table, decide, calibrate, validate, list, perf. Each returns
the process's exit status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from forgetbench.benchmark.core.config import ConfigError, load_config
from forgetbench.benchmark.core.stop import EXIT_INTERRUPTED
from forgetbench.benchmark.core.store import ResultFolder

EXIT_OK, EXIT_RUNS_FAILED, EXIT_INVALID = 0, 1, 2  # every run ok; some failed; invalid input (nothing ran)


REPO_ROOT = Path(__file__).resolve().parents[2]  # benchmark/front/cli.py -> the checkout


DEFAULT_CONFIG = "configs/demo.yaml"


def default_config_path() -> Path:
    local = Path(DEFAULT_CONFIG)
    return local if local.exists() else REPO_ROOT / DEFAULT_CONFIG


def parse_seeds(text: str) -> list[int]:
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

    config = args.config or default_config_path()
    # what the estimate and the run are both told: the suite, where, which seeds, on what
    suite = dict(
        data_root=_data_root(args.data_root),
        seeds=args.seeds,
        executor=args.executor,
        workers=args.workers,
        until_decided=_until_decided(args),
        batch_seeds=None if args.batch_seeds is None else args.batch_seeds == "on",
    )
    if args.estimate or not args.quiet:
        command = args.estimate and args.own_process  # the console script, not main() in a caller's process
        found = estimate_suite(
            config, args.out, always=args.estimate, new_process=args.estimate, command=command, **suite
        )
        if found is not None and (args.estimate or found.wall_seconds > ESTIMATE_PRINTED_FROM):
            print("\n".join(found.lines()), flush=True)
        if args.estimate:
            return EXIT_OK
    results = run_suite(
        config,
        args.out,
        fresh=args.fresh,
        progress=not args.quiet,
        address=args.address,
        retries=args.retries,
        storage=args.storage,
        **suite,
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
            "that diverged or collapsed: outcomes, not errors (strengths this optimiser and learning rate cannot train; "
            "`forgetbench calibrate` says at which end); they score below every finished run, are never chosen and "
            "are on no front"
        )
    from forgetbench.reports.decisions import DECISIONS_PREFIX
    from forgetbench.reports.search_verdict import EDGE_PREFIX
    from forgetbench.reports.verdict import IDLE_PREFIX, TRADE_PREFIX

    shown = (EDGE_PREFIX, DECISIONS_PREFIX, TRADE_PREFIX, IDLE_PREFIX)
    lines = {
        scenario: "\n    ".join([v[0], *(line for line in v[1:] if line.startswith(shown))])
        for scenario, v in results.verdicts().items()
        if v
    }
    if lines:
        print(
            "\nVerdict (forgetting at matched plasticity where a method ran at several strengths, else at each "
            "strength with LA beside it; every pair decided about its mean difference: A < B, A > B, equivalent or "
            "undecided, the chance of any false claim in a verdict at most its alpha):"
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


_STOPS_RECEIVED: list[int] = []  # the stop signals the report received (an import they interrupt may mangle them)


def _raise_report_stopped(signum: int, frame) -> None:
    _STOPS_RECEIVED.append(signum)
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
    options["missing"] = results.missing  # planned runs with no record: counted where a table counts runs
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
    _STOPS_RECEIVED.clear()
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
    except BaseException as exc:  # noqa: BLE001 - a stop signal, or what an import it interrupted made of it
        if not isinstance(exc, _ReportStopped) and not _STOPS_RECEIVED:
            raise
        # a stop landing inside a C extension's import (numpy's) can surface as another error: the stop it was
        name = signal.Signals(exc.signum if isinstance(exc, _ReportStopped) else _STOPS_RECEIVED[-1]).name
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
            f"Skipped {len(skipped)} result file(s) that are not readable run records of this suite, or planned runs "
            "with no record (each named above, and in the report)"
        )
    print(f"Report: {path}\nSummary: {ResultFolder(folders[0]) / 'summary.csv'}")
    if args.figures:
        print(f"Figures: {args.figures} (one PNG per figure of the report)")
    return EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    """Decide every pair of a per-seed table (reports/table_decisions.py): sentences, and the table to --out. Every
    check, the output path's included, comes before the work; a stop signal ends it writing nothing."""
    from forgetbench.benchmark.core.store import atomic_write_bytes
    from forgetbench.reports.table_decisions import TableError, decide, read_table, sentences

    out = Path(args.out) if args.out else None
    if out is not None:
        _check_decisions_out(Path(args.table), out)
    try:
        frame = decide(
            read_table(Path(args.table)),
            args.margin,
            args.alpha,
            args.direction,
            args.baseline,
            max_seeds=getattr(args, "max_seeds", None),
        )
    except TableError as exc:
        raise ConfigError(f"{args.table}: {exc}") from None
    except KeyboardInterrupt as exc:  # SIGTERM (StopRequested) or Ctrl-C: decide keeps no partial state
        name = "a stop signal" if not str(exc) else str(exc)
        print(f"forgetbench: decide stopped by {name}; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in sentences(frame, args.alpha, direction=args.direction):
        print(line)
    if out is not None:
        atomic_write_bytes(out, frame.to_csv(index=False).encode())
        print(f"Decisions: {out}")
    return EXIT_OK


def _check_decisions_out(table: Path, out: Path) -> None:
    """--out must be a file path beside an existing folder, and not the table it decides."""
    if out.exists() and table.exists() and out.resolve() == table.resolve():
        raise ConfigError(f"--out: {out} is the table being decided; name another file for the decisions")
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a directory; name a file (decisions.csv)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise ConfigError(f"--out: {out}: its folder {parent} {what}")


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
    from forgetbench.benchmark.run.preflight import preflight
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
    from forgetbench.benchmark.core.calibration import divergence_lines

    diverged = sum(p["status"] in ("diverged", "collapsed") for e in result["entries"] for p in e["probes"])
    if diverged:
        print(f"\ndiverged={diverged}: " + "; ".join(divergence_lines(result["entries"])))
    print(f"\nCalibration: {out / CALIBRATION_FILE}")
    return EXIT_RUNS_FAILED if failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    suite = load_config(args.config)  # first: a config refused here is refused before torch is imported

    from forgetbench.benchmark.core.config import refused_pairs
    from forgetbench.benchmark.run.spec import expand_suite
    from forgetbench.benchmark.run.preflight import preflight

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


def parse_measurements(text: str) -> tuple[str, ...]:
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

    from forgetbench.benchmark.perf.measurements import default_names, measurement_params

    only = args.only or tuple(default_names())
    # a bad --set: exit 2, nothing run, before the harness's imports (Avalanche's are most of 10 s here)
    params = measurement_params(list(only), args.settings)

    import torch

    from forgetbench.benchmark.data.datasets import DataMissingError
    from forgetbench.benchmark.perf.measure import DeviceMissingError, PerfOptions, format_table, run_perf

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
