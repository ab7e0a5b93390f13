"""How every run of a suite is trained: :class:`TrainingConfig` (a leaf module, imported by config,
strategies and runner alike, so none of them has to import another to know the training setup)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgetbench.benchmark.core import migrations

# np.random.seed takes 0..2**32-1; torch.manual_seed would take more, but derived seeds
# (seed * 100_003 + task) must stay within torch's 64 bits too.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class TrainingConfig(BaseModel):
    """How every run of the suite is trained."""

    # strict: a string where a number belongs ("0.1") is an error, not silently converted
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    optimizer: Literal["sgd", "adam"] = "sgd"  # the optimizer of every turn
    lr: PositiveFloat = 0.05  # learning rate
    momentum: float = Field(0.0, ge=0.0, lt=1.0)  # SGD momentum (sgd only)
    weight_decay: NonNegativeFloat = 0.0  # the optimizer's coupled weight decay
    batch_size: PositiveInt = 64  # training mini-batch size
    epochs: PositiveInt = 1  # epochs per experience (turn)
    # every turn trains exactly this many iterations (mini-batches; the data reshuffled at each pass), the
    # papers' "iterations per task": replaces epochs; a scenario's own per-turn budget (supernet) wins
    iterations_per_task: PositiveInt | None = None
    # false: the optimizer's state (Adam's moments, SGD's momentum) carries over from one turn to the next,
    # as in van de Ven & Tolias's code (`--optimizer adam`); true (default): every turn starts it afresh
    reset_optimizer: bool = True
    # clip the gradient's global L2 norm to this before every optimizer step (after every plugin's
    # gradient work); null: no clipping. ENAS trains its recurrent supernet with SGD at lr 20 and 0.25.
    grad_clip_norm: PositiveFloat | None = None
    eval_batch_size: PositiveInt = 512  # mini-batch size of evaluation and importance passes
    eval_every: PositiveInt | None = None  # iterations between forgetting-curve evaluations
    # bf16: forward pass and data loss under torch.autocast(bfloat16) (weights, gradients, optimizer
    # state, penalties and importance passes stay fp32; evaluation runs in fp32)
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False  # 4-D inputs and conv weights in channels-last memory format
    # N: after each turn, attribute every earlier model's loss increase to the shared layers (the quadratic
    # prediction against the observed increase) on N of its held-out samples; null: off
    attribution: PositiveInt | None = None
    # torch intra-op threads of every run, whichever executor runs it (local, process or Ray): a thread count
    # changes float rounding, so one setting for all gives the same numbers everywhere; null: 1 (tiny models run
    # fastest on one thread, and N runs fill N cores). Set it for large models on a machine of your own.
    threads: PositiveInt | None = None
    # Execution-only keys (they do not change a run's numbers, so resume ignores them):
    checkpoint: bool = False  # save after each experience; a rerun resumes from the last one saved
    num_cpus: PositiveFloat = 1.0  # CPUs per run (Ray scheduling; the run's torch threads are `threads`)
    num_gpus: NonNegativeFloat = 0.0  # GPUs per run (Ray scheduling)


EXECUTION_KEYS = ("checkpoint", "num_cpus", "num_gpus")


def training_identity(training: TrainingConfig) -> dict:
    """The training keys that determine a run's numbers (what resume and the ground-truth cache compare)."""
    unset = {k for k in migrations.UNSET_LATER_KEYS if getattr(training, k) is None}
    return training.model_dump(mode="json", exclude=set(EXECUTION_KEYS) | unset)
