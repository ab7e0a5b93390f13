"""The Python API: what ``forgetbench run`` / ``forgetbench report`` do, for a script or a notebook.

    from forgetbench.benchmark.front.api import run_suite, load_results

    results = run_suite("configs/demo.yaml", out="results/demo")   # or a dict, or a SuiteConfig
    results.summary()          # the table `forgetbench run` prints (a DataFrame)
    results.frame()            # tidy: one row per (ok run, metric)
    results.verdicts()         # scenario -> the verdict sentences
    results.report()           # writes OUT/report.html (+ summary.csv, comparisons.csv); returns its path
    load_results("results/demo").frame()                          # any results folder(s)

Validation is the CLI's: a bad config raises :class:`~forgetbench.benchmark.core.config.ConfigError` naming the
field, before anything runs or is written. A run that fails is recorded as failed and the suite goes
on: ``results.failed`` lists them and ``results.exit_code`` is what the CLI would exit with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

from forgetbench.benchmark.core.config import ConfigError, SuiteConfig, load_config, resolve_config
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.store import MissingRun, ResultFolder, ResultScan

if TYPE_CHECKING:  # the runner (torch, Avalanche) is imported when a suite runs, never to read results
    from forgetbench.benchmark.run.suite import SuiteOutcome


def as_suite(config: str | Path | Mapping[str, Any] | SuiteConfig) -> SuiteConfig:
    """A validated suite from a YAML path, a raw mapping (as the YAML would parse) or a SuiteConfig."""
    if isinstance(config, SuiteConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    if isinstance(config, Mapping):
        return resolve_config(dict(config))
    raise ConfigError(f"config: expected a YAML path, a mapping or a SuiteConfig, got {type(config).__name__}")


@dataclass
class Results:
    """Result records of one or more results folders, with the views the CLI and the report show."""

    folders: list[Path]
    outcome: SuiteOutcome | None = None  # what run_suite did (ran, skipped, failed); None when loaded

    @property
    def out(self) -> Path:
        return self.folders[0]

    @property
    def ran(self) -> list[str]:
        return self.outcome.ran if self.outcome else []

    @property
    def skipped(self) -> list[str]:
        return self.outcome.skipped if self.outcome else []

    @property
    def failed(self) -> list[str]:
        """Runs the suite was asked for that failed, diverged or collapsed, and calibration or tuning runs that
        failed (``run_suite`` only)."""
        return self.outcome.failed if self.outcome else []

    @property
    def diverged(self) -> list[str]:
        """Calibration probes, tuning trials and a tuned point's neighbours that diverged or collapsed:
        outcomes of the search for a strength (too strong for this optimiser), not failures; they do not change the
        exit status."""
        return self.outcome.diverged if self.outcome else []

    @property
    def exit_code(self) -> int:
        """0 every run ok, 1 some runs failed, diverged or collapsed (the CLI's exit status)."""
        return self.outcome.exit_code if self.outcome else 0

    @cached_property
    def _scan(self) -> ResultScan:
        """The folders read once: records, skipped files, each run's metrics."""
        from forgetbench.reports.summary import load_records

        return load_records(*self.folders)

    @property
    def missing(self) -> list[MissingRun]:
        """Runs a folder's plan holds that have no record to read (deleted, replaced by a link, not run yet): each
        is named when the folders are read and counts as not ok in :meth:`summary`."""
        return self._scan.missing

    @property
    def _metrics(self) -> Mapping[str, Mapping[str, float]]:
        """Run id -> its metrics, measured once as the records were read."""
        metrics: Mapping[str, Mapping[str, float]] = self._scan.metrics
        return metrics

    @cached_property
    def records(self) -> list[RunRecord]:
        """The result records (read from disk once, typed: ``record.accuracy_matrix``, ``record.timing.steps``;
        ``record.to_dict()`` is the JSON form), in suite order when the suite is known."""
        records: list[RunRecord] = self._scan.records
        if self.outcome is None:
            return records
        by_id = {r.run_id: r for r in records}
        return [by_id[i] for i in self.outcome.run_ids if i in by_id]

    @property
    def environment_differences(self) -> list[str]:
        """Sentences naming what differs, besides the seed, between runs that are averaged or paired together
        (thread count, device, versions, commit, ...): empty when they are comparable. Also logged as
        warnings when the records are read."""
        from forgetbench.reports.environment import environment_differences

        return environment_differences(self.records)

    def frame(self) -> pd.DataFrame:
        """Tidy metrics: scenario, strategy, strategy_name, seed, metric, value; one row per (ok run, metric)."""
        from forgetbench.reports.summary import runs_long

        return runs_long(self.records, self._metrics)

    def summary(self) -> pd.DataFrame:
        """Per (scenario, strategy): runs ok / not ok and ``<metric>_mean``, ``<metric>_std`` over seeds of each
        metric of the terminal table (ACC, forgetting, LA, train time, and any registered with ``terminal``)."""
        from forgetbench.reports.tables import overview

        return overview(self.records, self._metrics, self._scan.missing)

    def summary_text(self) -> str:
        """:meth:`summary` as the terminal table ``forgetbench run`` prints."""
        from forgetbench.reports.tables import format_overview

        return format_overview(self.summary())

    def verdicts(self) -> dict[str, list[str]]:
        """Scenario label -> its verdict sentences (see :mod:`forgetbench.reports.verdict`)."""
        from forgetbench.reports.verdict import verdicts

        return verdicts(self.records, computed=self._metrics, tuning=self.tuning_studies, options=self._options)

    @property
    def _options(self) -> Any:
        """How the verdicts decide (the folders' ``verdict`` options; group-sequential where seeds were added in
        rounds)."""
        from forgetbench.reports.decisions import options_of

        return options_of(self.folders)  # a bad or mixed setting: DecisionSettingsError, one line naming it

    def decisions(self) -> pd.DataFrame:
        """Every pair every verdict compares, one row each: scenario, level (each strength alone, or a matched
        plasticity level), metric, unit (points for an accuracy metric: the report's unit), first, second, outcome
        (less: first < second, greater, equivalent, undecided: about the mean difference), diff (first - second,
        the mean over the paired seeds), ci_low, ci_high and ci_level (the pair's interval at the level its claim
        was tested at: it agrees with the outcome), p_value (the pair's own), p_adjusted and p_equivalence_adjusted
        (Holm's: the smallest family-wise alpha at which each claim would be made), n and seeds (paired, in the
        order they were run), family (m), margin, method (fixed seeds or rounds), planned (under rounds: the seeds
        they could reach), decided_at (the seed count the outcome was reached at), more_seeds, note. The numbers of the report's decisions table (:mod:`forgetbench.reports.decisions`); a bad or mixed
        verdict setting in the folders is a ``DecisionSettingsError`` naming it."""
        from forgetbench.reports.verdict import decisions_frame

        return decisions_frame(self.records, self._metrics, self._options)

    def improvement(self) -> pd.DataFrame:
        """The probability that one method forgets less than another, across the scenarios (at matched plasticity
        where a scenario has a front, else at each strength), with its stratified-bootstrap 95% interval: first,
        second, probability, ci_low, ci_high, scenarios (:func:`forgetbench.reports.decisions.probability_of_improvement`)."""
        from forgetbench.reports.verdict import improvement_frame

        return improvement_frame(self.records, self._metrics)

    @property
    def tuning_studies(self) -> list[dict[str, Any]]:
        """The studies of every folder's ``tuning.json`` (empty where a folder tuned nothing)."""
        from forgetbench.reports.summary import tuning_studies

        return tuning_studies(self.folders)

    def frontier(self) -> pd.DataFrame:
        """Every ok run's frontier point (scenario, method, setting, value, seed, plasticity, forgetting, on_front,
        axes, plasticity_metric): the rows of the report's ``frontier.csv`` for these runs
        (:func:`forgetbench.reports.frontier.frontier_frame`)."""
        from forgetbench.reports.frontier import frontier_frame

        return frontier_frame(self.records, self._metrics)

    def matched(self, level: float | None = None) -> pd.DataFrame:
        """Forgetting at matched plasticity, per scenario with a front (a method at two or more strengths beside
        naive), method and plasticity level (naive's LA minus ``level`` points; default the report's 1, 2 and 5):
        mean, 95% interval, seeds reached, per-seed values; the numbers of the report's matched-plasticity tables
        (:func:`forgetbench.reports.frontier.matched_plasticity`)."""
        from forgetbench.reports import frontier as FT

        points = self.frontier()
        drops = FT.DROPS if level is None else (float(level),)
        frames = [
            FT.matched_plasticity(points, scenario, drops)
            for scenario in dict.fromkeys(points.scenario)
            if FT.has_frontier(points, scenario)
        ]
        columns = ["scenario", "method", "drop", "mean", "ci_low", "ci_high", "n", "seeds", "per_seed"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def report(
        self, path: str | Path | None = None, command: str | None = None, figures: str | Path | None = None
    ) -> Path:
        """Write the HTML report (default ``OUT/report.html``, or ``path``) and its tables (summary.csv, ...) into OUT;
        ``figures``: a folder to write each of its figures into as a PNG as well."""
        from forgetbench.reports.html import write_report

        return write_report(
            self.folders, Path(path) if path else None, command=command, figures=Path(figures) if figures else None
        )


def load_results(folder: str | Path, *more: str | Path) -> Results:
    """Every readable result record under the folders (``run --out`` folders)."""
    folders = [Path(f) for f in (folder, *more)]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise ConfigError(f"results folder(s) {', '.join(missing)} do not exist")
    runs = [ResultFolder(f).runs for f in folders]
    not_folders = [str(r) for r in runs if os.path.lexists(r) and not r.is_dir()]
    if not_folders:  # the records live in OUT/runs/<run id>/result.json: a file there would read as no runs at all
        raise ConfigError(f"{', '.join(not_folders)}: not a folder (expected OUT/runs/<run_id>/result.json)")
    return Results(folders)


def _batch_seeds(suite: SuiteConfig, batch_seeds: bool | None) -> SuiteConfig:
    """The suite with ``batch_seeds`` as the caller says (None: as it says itself)."""
    return suite if batch_seeds is None else suite.model_copy(update={"batch_seeds": batch_seeds})


def run_suite(
    config: str | Path | Mapping[str, Any] | SuiteConfig,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    seeds: list[int] | None = None,
    fresh: bool = False,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 0,
    progress: bool = True,
    storage: str | None = None,
    until_decided: Mapping[str, int] | None = None,
    batch_seeds: bool | None = None,
) -> Results:
    """Run every (scenario x strategy x seed) of a suite, as ``forgetbench run`` does; returns its results.

    ``storage``: the database URL of the tuning studies (``tune:`` entries; default SQLite in ``out/tuning``).
    ``until_decided``: ``{"max": 20}`` (and ``"step"``) adds seeds in rounds to the strategies of undecided pairs, as
    ``seeds: {start, max}`` in the config does (the suite's seeds are the first ones). ``batch_seeds``: whether one
    run's seeds train as one stacked model (None: the suite's ``batch_seeds``, on by default).

    ``out`` defaults to ``results/<suite name>``; ``data_root`` to ``$FORGETBENCH_DATA``, else
    ``~/.cache/forgetbench``. Complete runs already under ``out`` with the same config are skipped
    (``fresh`` reruns them). Raises ConfigError on invalid input, before anything runs.
    """
    from forgetbench.benchmark.data.datasets import default_data_root
    from forgetbench.benchmark.run.executors import prestart, release_prestarted, resolve_executor

    from forgetbench.benchmark.core.lock import check_unlocked

    if executor not in ("local", "process", "ray", "auto"):
        raise ConfigError(f"executor: must be one of local, process, ray, auto; got {executor!r}")
    executor = resolve_executor(executor)
    suite = None
    if out is None and executor != "local":  # the folder is named after the suite: read it first
        suite = as_suite(config)
        out = Path("results") / suite.name
    if out is not None:
        check_unlocked(Path(out))  # a second driver on the same folder is refused before Ray or workers start
    prestart(executor, workers, address)
    try:
        suite = _batch_seeds(suite or as_suite(config), batch_seeds)
        if until_decided is not None:
            suite = _until_decided(suite, seeds, until_decided)
        out = Path(out) if out else Path("results") / suite.name
        root = (Path(data_root) if data_root else default_data_root()).expanduser().resolve()
        from forgetbench.benchmark.run import suite as suite_module
        from forgetbench.reports.verdict import undecided_on

        outcome = suite_module.run_suite(
            suite,
            out,
            root,
            seeds=seeds,
            fresh=fresh,
            show_progress=progress,
            executor=executor,
            workers=workers,
            address=address,
            retries=retries,
            storage=storage,
            decide=undecided_on,
        )
    finally:
        release_prestarted()
    return Results([out], outcome)


def estimate_suite(
    config: str | Path | Mapping[str, Any] | SuiteConfig,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    seeds: list[int] | None = None,
    executor: str = "local",
    workers: int | None = None,
    until_decided: Mapping[str, int] | None = None,
    always: bool = True,
    new_process: bool = False,
    batch_seeds: bool | None = None,
    command: bool = False,
) -> Any:
    """What ``run`` would execute and its expected wall and memory (:mod:`forgetbench.benchmark.run.estimate`):
    measured from one shortened run per scenario and strategy, nothing written. With ``always`` False, None for a
    suite that plans fewer than 50 runs (``run`` does not estimate those). ``new_process``: the run will be a command
    of its own (``forgetbench run``), which pays a process's start. ``command``: this process is the command the
    estimate was asked of (the console script's ``run --estimate``): the estimate counts its own cost from the
    process's start, which is also what the run's command will pay to start."""
    from forgetbench.benchmark.core.children import process_age
    from forgetbench.benchmark.data.datasets import default_data_root
    from forgetbench.benchmark.run import estimate as estimate_module
    from forgetbench.benchmark.run.executors import resolve_executor

    suite = _batch_seeds(as_suite(config), batch_seeds)
    if until_decided is not None:
        suite = _until_decided(suite, seeds, until_decided)
    folder = Path(out) if out else Path("results") / suite.name
    if not always and not estimate_module.worth_estimating(suite, folder, seeds):
        return None
    root = (Path(data_root) if data_root else default_data_root()).expanduser().resolve()
    from forgetbench.benchmark.run.preflight import preflight

    preflight(suite, root, resolve_executor(executor))  # missing data, a factory that raises: one line, as validate
    try:
        age = process_age() if command else None
        return estimate_module.estimate(
            suite, folder, root, seeds, resolve_executor(executor), workers, new_process, command_age=age
        )
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a run that fails when measured: named, never a traceback
        raise ConfigError(
            f"--estimate: a shortened run of the suite failed while being measured ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); `forgetbench validate` checks the suite"
        ) from None


def _until_decided(suite: SuiteConfig, seeds: list[int] | None, rule: Mapping[str, int]) -> SuiteConfig:
    """``suite`` with seeds added until decided (``--seeds-until-decided --max-seeds N``): its seeds (or ``seeds``)
    first."""
    from pydantic import ValidationError

    from forgetbench.benchmark.core.config import SeedsUntilDecided

    start = len(seeds or suite.seeds)
    try:
        until = SeedsUntilDecided.model_validate({"start": start, **rule})
    except ValidationError as exc:
        raise ConfigError(
            "--seeds-until-decided: "
            + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
            )
        ) from None
    return suite.model_copy(update={"until_decided": until})


def calibrate_suite(
    config: str | Path | Mapping[str, Any] | SuiteConfig,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    seed: int | None = None,
    decades: int = 3,
    fraction: float = 0.2,
    objective: str = "ACC",
    **run_options: Any,
) -> dict[str, Any]:
    """Probe every declared strength of a suite over decades, as ``forgetbench calibrate`` does: plan, run
    (resuming what ``OUT/calibration/runs/`` holds), extend each ladder until ``objective`` has peaked
    (``ACC``, ``LA``, ``BWT`` or ``forgetting``, as tuning's) and judge each probe; write and return ``OUT/calibration.json``
    (:mod:`forgetbench.benchmark.run.calibrate`). ``run_options``: ``executor``, ``workers``, ``fresh``,
    ``show_progress``."""
    from forgetbench.benchmark.data.datasets import default_data_root

    from forgetbench.benchmark.core import store
    from forgetbench.benchmark.run.calibrate import CALIBRATION_DIR, CALIBRATION_FILE, calibrate, plan_calibration
    from forgetbench.benchmark.run.suite import run_work

    suite = as_suite(config)
    data_root = (Path(data_root) if data_root else default_data_root()).expanduser().resolve()
    out = Path(out) if out else Path("results") / suite.name
    plan = plan_calibration(suite, suite.seeds[0] if seed is None else seed, decades, fraction)
    if not plan.ladders:
        raise ConfigError(
            "calibrate: no strategy of this suite declares a strength to probe "
            f"(not probed: {', '.join(plan.without_strength) or 'none'})"
        )
    folder = Path(out) / CALIBRATION_DIR
    _, (result, _) = run_work(
        suite,
        Path(out),
        lambda run_batch: calibrate(plan, folder, run_batch, objective),
        data_root,
        total=len(plan.specs),
        **run_options,
    )
    store.atomic_write_json(Path(out) / CALIBRATION_FILE, result)
    return result
