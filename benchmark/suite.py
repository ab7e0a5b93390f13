"""Running a whole suite: preflight checks, resume, progress, one result file per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from benchmark import store
from benchmark.config import ConfigError, SuiteConfig
from benchmark.datasets import DataMissingError, check_available
from benchmark.runner import RunSpec, expand_suite, run
from benchmark.scenarios import SCENARIOS


@dataclass
class SuiteOutcome:
    out: Path
    run_ids: list[str] = field(default_factory=list)  # every run of the suite, in suite order
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def preflight(suite: SuiteConfig, data_root: Path) -> None:
    """Raise :class:`ConfigError` if any scenario's data is missing and may not be downloaded."""
    errors = []
    for i, spec in enumerate(suite.scenarios):
        params = SCENARIOS.get(spec.name).parse_params(spec.params)
        for dataset, download in params.data_requirements():
            try:
                check_available(dataset, data_root, download)
            except DataMissingError as exc:
                errors.append(f"scenarios[{i}].params.dataset: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))


def run_suite(
    suite: SuiteConfig,
    out: Path,
    data_root: Path,
    seeds: list[int] | None = None,
    fresh: bool = False,
    show_progress: bool = True,
) -> SuiteOutcome:
    """Run every (scenario x strategy x seed); skip runs already complete under the same config."""
    preflight(suite, data_root)
    specs = expand_suite(suite, seeds)
    store.write_suite(out, suite.model_dump(mode="json") | ({"seeds": seeds} if seeds else {}))
    outcome = SuiteOutcome(out, run_ids=[spec.run_id for spec in specs])
    todo: list[RunSpec] = []
    for spec in specs:
        previous = store.read_result(store.result_path(out, spec.run_id))
        if not fresh and store.is_complete(previous, spec.resolved()):
            outcome.skipped.append(spec.run_id)
            if previous["status"] != "ok":
                outcome.failed.append(spec.run_id)
        else:
            todo.append(spec)

    bar = tqdm(total=len(specs), initial=len(outcome.skipped), unit="run", disable=not show_progress)
    try:
        for spec in todo:
            bar.set_postfix_str(spec.run_id, refresh=True)
            record = run(spec, data_root, progress=lambda msg: bar.set_postfix_str(msg, refresh=True))
            store.write_result(out, record)
            outcome.ran.append(spec.run_id)
            if record["status"] != "ok":
                outcome.failed.append(spec.run_id)
                bar.write(f"run {spec.run_id} {record['status']}: {record['error']}")
            bar.update(1)
    finally:
        bar.close()
    return outcome
