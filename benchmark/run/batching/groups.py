"""Which runs train together as one batch of seeds (:mod:`forgetbench.benchmark.run.batching`), read off their specs
alone: this module imports no torch, so the driver groups its jobs before any worker starts.

One run's seeds are the specs equal in everything but the seed (and the round that adds it), writing to the same
results folder. They go in one batch of at most :data:`MAX_SEEDS` unless the suite says ``batch_seeds: false``
(``run --batch-seeds off``) or :func:`batch_refusal` names a reason; the built models and strategies may still
refuse (a model with dropout, a strategy with its own training loop), and those seeds then run one after another.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from forgetbench.benchmark.run.spec import RunSpec

Job = Any  # run.executors.Job (key, spec, checkpoint, cache_dir, members): importing it would close a cycle via run.batching

MAX_SEEDS = 50  # seeds in one batch: K stacked models, their gradients and optimiser state in memory at once


def _without_seed(spec: RunSpec) -> str:
    """Everything of ``spec`` but its seed and round, as one comparable string (the components' models are not
    hashable)."""
    return repr((spec.suite, spec.scenario, spec.strategy, spec.training, spec.device, spec.validation_fraction,
                 spec.first_tasks, spec.prune))  # fmt: skip


def same_but_seed(specs: Sequence[RunSpec]) -> bool:
    """Whether ``specs`` are one run's seeds: everything but the seed (and the round that adds it) equal, no seed
    twice."""
    if not specs or len({spec.seed for spec in specs}) != len(specs):
        return False
    first = _without_seed(specs[0])
    return all(_without_seed(spec) == first for spec in specs[1:])


def batch_refusal(spec: RunSpec) -> str | None:
    """Why a run's seeds cannot be batched, read off its spec alone (None: they may be)."""
    training = spec.training
    if training.checkpoint:
        return "training.checkpoint is on: a checkpoint is one run's state, so each seed runs alone"
    if training.attribution:
        return "training.attribution measures each run's models apart"
    if spec.prune is not None:
        return "a pruned trial stops where its own seed falls behind"
    if training.grad_clip_norm is not None:
        return "grad_clip_norm clips each seed's global gradient norm"
    if training.precision != "fp32":
        return f"precision {training.precision}: stacked training is checked in fp32 only"
    if (training.threads or 1) > 1:
        # one product split over threads sums in another order than K products each on one thread
        return f"training.threads is {training.threads}: only a run on one thread has its products' rounding batched"
    return None


def seed_batch(members: Sequence[Job]) -> Job:
    """One job training ``members`` (one run's seeds, the same results folder) as one batch: a task of its own."""
    first = members[0]
    key = f"batch:{first.key}+{len(members) - 1}"
    return dataclasses.replace(first, key=key, checkpoint=None, members=tuple(members))


def batch_key(spec: RunSpec) -> str:
    """What one run's seeds share (the batch they may form)."""
    return _without_seed(spec)


def seed_groups(
    specs: Sequence[RunSpec],
    places: Sequence[str | None],
    size: int = MAX_SEEDS,
    refused: set[str] | frozenset[str] = frozenset(),
) -> list[list[int]]:
    """Indices of ``specs`` as the jobs they run in: each run's seeds (the same ``place``, a results folder; no reason
    to refuse; its :func:`batch_key` not in ``refused``) in groups of at most ``size``, in the order their first seed
    came; every other spec alone (its place None, or refused). The driver's batches and the estimate's are these."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (spec, place) in enumerate(zip(specs, places)):
        key = _without_seed(spec)
        alone = place is None or batch_refusal(spec) is not None or key in refused
        groups.setdefault(("alone", str(i)) if alone else (place, key), []).append(i)  # type: ignore[arg-type]
    return [members[start : start + size] for members in groups.values() for start in range(0, len(members), size)]


BATCHING_OFF = "batch_seeds is off (run --batch-seeds off): each seed trains alone"


def seed_batches(jobs: Sequence[Job], refused: Mapping[str, str] | None = None) -> list[Job]:
    """``jobs`` with each run's seeds (two or more, the same results folder, no reason to refuse) grouped into batch
    jobs of at most :data:`MAX_SEEDS` (:func:`seed_groups`); every other job as it was, with why it trains alone
    (``alone``). ``refused``: the :func:`batch_key` of runs whose batch was refused before (their seeds then spread
    over the workers), each with the batch's reason."""
    refused = refused or {}
    places = [None if job.members or job.checkpoint is not None else str(job.cache_dir) for job in jobs]
    groups = seed_groups([job.spec for job in jobs], places, refused=frozenset(refused))
    return [
        seed_batch([jobs[i] for i in group])
        if len(group) > 1
        else dataclasses.replace(jobs[group[0]], alone=_alone_reason(jobs[group[0]].spec, refused))
        for group in groups
    ]


def _alone_reason(spec: RunSpec, refused: Mapping[str, str]) -> str:
    """Why a run that :func:`seed_groups` left on its own trains alone."""
    earlier = refused.get(batch_key(spec))
    if earlier is not None:
        return f"its run's batch was refused earlier in this invocation: {earlier}"
    return batch_refusal(spec) or "no other seed of its run trains in this invocation"
