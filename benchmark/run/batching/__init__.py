"""Seeds at the price of one, in one folder: which runs form a batch (:mod:`.groups`), what keeps a batch from
training as one stacked model (:mod:`.refusals`), the stacked model (:mod:`.stack`), the lockstep loop over the
seeds' turns, steps, evaluations and importance passes (:mod:`.lockstep`), and the entry that trains a batch or each
seed alone (:mod:`.train`: :func:`run_seeds`, whose module doc says how the records stay each seed's own)."""

from forgetbench.benchmark.run.batching.refusals import STACKED_OPTIMIZERS, Unbatchable, model_refusal
from forgetbench.benchmark.run.batching.stack import SeedStack
from forgetbench.benchmark.run.batching.train import run_seeds

__all__ = ["run_seeds", "SeedStack", "Unbatchable", "STACKED_OPTIMIZERS", "model_refusal"]
