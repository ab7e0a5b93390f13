"""Strength calibration: over which strengths does a regularizer act without crushing learning? Pure functions.

A *probe* is one run of a strategy with its strength (:func:`forgetbench.strategies.base.strength`) set to one
value of a ladder of decades, on a validation split held out from the training data, beside a naive run of the
same scenario and seed. Each probe is judged against naive's:

* it **acts** when its penalty's gradient is a visible share of the data loss's at the end of its experiences:
  the median over the experiences that had a penalty of ``||grad penalty|| / ||grad data||`` (the record's
  ``<name>_penalty_to_data_gradient``) is at least :data:`ACTS` (0.05, the bound of the records' inert flag).
  A strategy that records no such ratio (lwf, olora, Avalanche's own methods) acts when it forgets at most
  ``1 - FORGETTING_CUT`` of naive's forgetting (and naive forgets);
* it **crushes** learning when its plasticity (LA: the accuracy on each experience right after learning it)
  falls more than :data:`LA_DROP` below naive's (a scenario without an LA, a search, skips this test), when
  its ratio exceeds :data:`CRUSHES` (the penalty's pull
  twenty times the data loss's), or when the run did not end ``ok`` (diverged, collapsed, failed).

The calibrated range is ``[lowest, highest]`` strength that acts without crushing (:func:`acting_range`):
the default search range of tuning, in log scale. ``None`` when no probed strength does, with the reason
(:func:`range_verdict`): a null at the strengths probed, stated as such.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

ACTS = 0.05  # = strategies.penalty.INERT_RATIO: below it the penalty is too small to act
CRUSHES = 20.0  # penalty / data gradient norm above which the penalty, not the data, decides every step
LA_DROP = 0.05  # plasticity lost (accuracy, 0-1) beyond which learning is crushed
FORGETTING_CUT = 0.1  # without a recorded ratio: acts when forgetting falls by at least this share of naive's
RATIO_SUFFIX = "_penalty_to_data_gradient"


@dataclass(frozen=True)
class Probe:
    """One probed strength: the run's status, median penalty-to-data gradient ratio (None when the strategy
    records none), plasticity (LA) and forgetting, both as accuracies in 0-1."""

    value: float
    status: str
    ratio: float | None
    la: float
    forgetting: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: a figure a failed or diverged run does not have is None, not NaN."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def ladder(centre: float, decades: int) -> list[float]:
    """``centre x 10^k`` for k in -decades..decades, rounded to 6 significant digits (1 when ``centre`` is 0)."""
    if decades < 0:
        raise ValueError(f"decades must be >= 0, got {decades}")
    centre = float(centre) if centre and math.isfinite(centre) and centre > 0 else 1.0
    return [float(f"{centre * 10.0**k:.6g}") for k in range(-decades, decades + 1)]


def median_ratio(extras: Mapping[str, Any]) -> float | None:
    """The median of the finite ``*_penalty_to_data_gradient`` values of a record's extras (the experiences
    that had a penalty); None when the strategy records none or none is finite."""
    values = [
        float(v)
        for key, series in extras.items()
        if key.endswith(RATIO_SUFFIX) and isinstance(series, list)
        for v in series
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]
    return statistics.median(values) if values else None


def acts(probe: Probe, naive: Probe) -> bool:
    """Whether the probe's penalty acts (module doc)."""
    if probe.status != "ok":
        return False
    if probe.ratio is not None:
        return probe.ratio >= ACTS
    return naive.forgetting > 0 and probe.forgetting <= (1 - FORGETTING_CUT) * naive.forgetting


def crushes(probe: Probe, naive: Probe) -> bool:
    """Whether the probe crushes learning (module doc). Where naive has no LA (a search: its turns are judged
    in perplexity, not accuracy) the status and the ratio decide alone."""
    if probe.status != "ok":
        return True
    if probe.ratio is not None and probe.ratio > CRUSHES:
        return True
    if not math.isfinite(naive.la):
        return False
    return not math.isfinite(probe.la) or probe.la < naive.la - LA_DROP


def acting_range(probes: Iterable[Probe], naive: Probe) -> tuple[float, float] | None:
    """``(lowest, highest)`` probed strength that acts without crushing learning; None when none does."""
    good = sorted(p.value for p in probes if acts(p, naive) and not crushes(p, naive))
    return (good[0], good[-1]) if good else None


def range_verdict(probes: Iterable[Probe], naive: Probe) -> str:
    """One sentence: the calibrated range, or why there is none at the strengths probed."""
    probes = sorted(probes, key=lambda p: p.value)
    if not probes:
        return "nothing was probed"
    found = acting_range(probes, naive)
    low, high = probes[0].value, probes[-1].value
    if found is not None:
        return f"acts without crushing learning from {found[0]:g} to {found[1]:g} (probed {low:g} to {high:g})"
    acting = [p for p in probes if acts(p, naive)]
    if not acting:
        return f"inert at every strength probed, {low:g} to {high:g}: probe higher"
    first = min(p.value for p in acting)
    return (
        f"acts from {first:g} but crushes learning wherever it acts (probed {low:g} to {high:g}): "
        "no strength trades well at this budget"
    )
