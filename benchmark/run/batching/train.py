"""Seeds at the price of one: K runs that differ only in their seed, trained as one stacked model.

Each seed is still its own run: its scenario, model initialisation, strategy and plugins are built exactly as the
per-seed runner builds them (:func:`~forgetbench.benchmark.run.runner.run`), its data order comes from its own
loader, and every plugin callback (a penalty's gradient, SI's path integral, an importance pass, the step budget,
curves) is called on that seed's own strategy. Only the arithmetic the K seeds share is done once:

* **the weights** (:class:`SeedStack`): every parameter is one ``(K, *shape)`` tensor, and each seed's own
  parameter is a view of its row (``param.data``), its ``.grad`` a view of the stacked gradient's row, so a seed's
  plugins read and write the stacked tensors in place;
* **the forward and backward pass**: one call of a stacked copy of the model (:func:`_stacked_copy`: its parameters
  the stacked tensors, its linear layers :class:`_StackedLinear`) on the seeds' ``(K, batch, ...)`` minibatches, or
  one :func:`torch.func.vmap` of the model's own forward where the copy does not reproduce it; a model whose seeds
  take other routes (a supernet, each seed on its own drawn architectures) runs through its ``forward_seeds``, each
  op once for the seeds that chose it; then one backward of the sum of the seeds' losses (the seeds share no weight,
  so each row's gradient is its own seed's);
* **the optimiser step**: one optimiser of the same class and hyper-parameters over the stacked tensors. SGD,
  Adam, AdamW, RMSprop and Adagrad update each entry from its own gradient and state alone, so a row's step is the
  step its seed's optimiser takes.

The per-seed path is the reference, and the records are bit for bit its records (``tests/run/test_batched.py``):
the stacked linear layer computes each product in the orientation PyTorch's own per-model backward does, and a routed
forward must give every seed's own model's output exactly on its first batch, or the batch is refused. What cannot be
stacked faithfully is refused before anything trains (:func:`~forgetbench.benchmark.run.batching.groups.batch_refusal`,
:func:`model_refusal`, :func:`strategy_refusal`): a random draw inside the forward pass (dropout), buffers a forward
pass updates (BatchNorm), an optimiser or criterion whose step couples entries (gradient clipping by a global norm), a
plugin that hooks the forward pass, a strategy with its own training loop, seeds whose epochs take different
numbers of steps under an optimiser that counts its steps per tensor (Adam), a
checkpointed, pruned or attributed run; and, on the CPU, a model whose turns leave many parameters unused
(:func:`idle_params_refusal`: the stack's step updates them all). Those run one seed after another, and each of their
records says why (``batch.alone``; the suite prints it once). A batch whose training raises or diverges runs again
seed by seed, so a seed that fails or diverges gets the record its own run gives.

Each record is an ordinary record of its run (same schema, fingerprint and run id) whose ``batch`` lists the seeds
it trained with (or, for a refused batch, why it ran alone), and whose ``timing.train_seconds`` is its share (1/K)
of the batch's training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from forgetbench.benchmark.core.record import RunRecord, SeedBatch
from forgetbench.benchmark.run.runner import after_the_turns, run
from forgetbench.benchmark.run.batching.groups import batch_refusal, same_but_seed
from forgetbench.benchmark.run.spec import RunSpec, now, resolve_device
from forgetbench.benchmark.train.harness import DivergedError

from forgetbench.benchmark.run.batching.refusals import (
    STACKED_OPTIMIZERS,
    Unbatchable,
    model_refusal,
    ragged_refusal,
)
from forgetbench.benchmark.run.batching.stack import SeedStack
from forgetbench.benchmark.run.batching.lockstep import ProgressCallback, _Seat, _train_together

__all__ = ["run_seeds", "SeedStack", "Unbatchable", "STACKED_OPTIMIZERS", "model_refusal"]


def run_seeds(
    specs: Sequence[RunSpec],
    data_root: Path,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
    run_alone: Callable[[RunSpec], RunRecord] | None = None,
) -> list[RunRecord]:
    """The records of ``specs`` (one run's seeds), trained as one stacked model where that is faithful; else (and
    after a batch that failed or diverged) one seed after another with ``run_alone`` (the per-seed runner), each
    record saying why in one line. A batch that runs out of device memory trains as two batches of half its seeds
    (each halved again while it does): K sized to the device by trial."""
    alone = run_alone or (lambda spec: run(spec, data_root, progress, None, cache_dir))
    reason = None if len(specs) > 1 and same_but_seed(specs) else "not one run's seeds"
    reason = reason or batch_refusal(specs[0])
    if reason is None:
        out_of_memory = False
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a run's own thread count (batch_refusal): its products' rounding, batched
        try:
            return _train_batch(specs, data_root, progress, cache_dir)
        except Unbatchable as exc:
            reason = str(exc)
        except DivergedError:
            reason = "a seed diverged in the batch: each seed ran alone for its own record"
        except torch.OutOfMemoryError:
            out_of_memory = True  # the batch's tensors are freed with the exception, as this block ends
        except Exception as exc:  # noqa: BLE001 - the per-seed runs record any failure faithfully
            reason = f"the batch failed ({type(exc).__name__}: {exc}): each seed ran alone for its own record"
        finally:
            torch.set_num_threads(threads)
        if out_of_memory:
            return _in_halves(specs, data_root, progress, cache_dir, run_alone)
    records = []
    for spec in specs:
        record = alone(spec)
        if len(specs) > 1:
            record.batch = SeedBatch(alone=reason)
        records.append(record)
    return records


def _train_batch(
    specs: Sequence[RunSpec], data_root: Path, progress: ProgressCallback | None, cache_dir: Path | None
) -> list[RunRecord]:
    """The records of ``specs`` trained as one stacked model (raises where that cannot be done faithfully)."""
    device = resolve_device(specs[0].device)
    seats = [_Seat(spec, data_root, device, progress if k == 0 else None) for k, spec in enumerate(specs)]
    if any(seat.shape() != seats[0].shape() for seat in seats):
        raise Unbatchable(
            "the seeds' tasks differ in their models or samples' shapes (each seed's search draws its own "
            "architectures)"
        )
    for seat in seats:
        seat.build_strategy()
    first = seats[0].strategy
    refusal = ragged_refusal(first.optimizer, [seat.sizes() for seat in seats], int(first.train_mb_size))
    if refusal is not None:
        raise Unbatchable(refusal)
    _train_together(seats)
    records = []
    for seat in seats:
        after_the_turns(seat.spec, data_root, device, seat.scenario, seat.strategy, seat.harness, seat.record,
                        seat.turns, cache_dir)  # fmt: skip
        whole = seat.record.timing.train_seconds * len(seats)  # each seed's share is the batch's 1/K
        seat.record.batch = SeedBatch(seeds=[spec.seed for spec in specs], train_seconds=whole)
        seat.record.finished_at = now()
        records.append(seat.record)
    return records


def _in_halves(
    specs: Sequence[RunSpec],
    data_root: Path,
    progress: ProgressCallback | None,
    cache_dir: Path | None,
    run_alone: Callable[[RunSpec], RunRecord] | None,
) -> list[RunRecord]:
    """The records of a batch that ran out of device memory, trained as two batches of half its seeds."""
    torch.cuda.empty_cache()  # the failed batch's blocks, back to the device for the halves (no-op without CUDA)
    half = -(-len(specs) // 2)
    records = [
        record
        for part in (specs[:half], specs[half:])
        for record in run_seeds(part, data_root, progress, cache_dir, run_alone)
    ]
    note = f"a batch of {len(specs)} seeds ran out of device memory: it trained as batches of at most {half}"
    for record in records:
        record.warnings = [note, *(record.warnings or [])]
    return records
