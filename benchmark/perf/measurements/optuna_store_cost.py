"""Where a tuning trial's Optuna time goes: the sampler on the in-memory copy, and the SQLite writes. Mirrors what
:class:`forgetbench.benchmark.run.tuning.MirroredStudy` does per trial (TPE asks on the in-memory copy, the trial is
created in SQLite with its point, its number read back, then both copies told it ended) on a fresh study database,
and gives the milliseconds of each part per trial.

    forgetbench perf --only optuna_store_cost [--set trials=40]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PositiveInt

from forgetbench.benchmark.perf.measurements import Measurement, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: PositiveInt = 40


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seconds = {"sampler": 0.0, "create trial": 0.0, "read its number": 0.0, "end it (both copies)": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        storage = optuna.storages.RDBStorage(f"sqlite:///{Path(folder) / 'study.db'}")
        optuna.create_study(study_name="cost", storage=storage, direction="maximize")
        study_id = storage.get_study_id_from_name("cost")
        memory = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize")
        space: dict[str, optuna.distributions.BaseDistribution] = {
            "x": optuna.distributions.FloatDistribution(0.1, 10.0, log=True)
        }
        for i in range(params.trials):
            memory.sampler = optuna.samplers.TPESampler(seed=i, n_startup_trials=5)
            t0 = time.perf_counter()
            number = memory.ask(fixed_distributions=space).number
            frozen = memory.get_trials(deepcopy=False)[number]
            t1 = time.perf_counter()
            stored = storage.create_new_trial(study_id, template_trial=frozen)
            t2 = time.perf_counter()
            storage.get_trial_number_from_id(stored)
            t3 = time.perf_counter()
            for store, trial_id in ((memory._storage, frozen._trial_id), (storage, stored)):
                store.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [float(i % 7)])
            t4 = time.perf_counter()
            for part, spent in zip(seconds, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                seconds[part] += spent
    return {"trials": params.trials, "ms_per_trial": {part: 1e3 * s / params.trials for part, s in seconds.items()}}


def lines(result: dict[str, Any]) -> list[str]:
    return [", ".join(f"{part} {ms:.2f} ms" for part, ms in result["ms_per_trial"].items()) + " per trial"]


register(Measurement("optuna_store_cost", "a tuning trial's Optuna milliseconds, part by part", Params, run, lines))
