"""Strength calibration: over which strengths should tuning search? Pure functions.

A *probe* is one run of a strategy with its strength (:func:`forgetbench.strategies.base.strength`) set to one
value of a ladder of decades, on a validation split held out from the training data, beside a naive run of the
same scenario and seed. The range tuning searches **brackets the peak of the objective tuning maximises among the
strengths whose penalty acts** (ACC by default; :func:`bracket`): the best acting probe's neighbours on the ladder,
each scoring below it or inert (an inert probe trains as naive does: its objective is naive's plus noise, so it is
never the peak; below the best the range starts where the penalty starts to act, :func:`acting_bound`). Where no
probe acts, the ladder extends upwards, and where none acts up to the cap nothing is chosen and the verdict says
so; where every acting strength crushes learning, the verdict says that too, with the weakest one's figures.
Where the best probe sits at an end of the ladder, the ladder extends a decade at a time on that side (only there:
the objective is still rising towards it) until the peak is bracketed, up to :data:`MAX_EXTENSION` decades beyond
the first ladder; an end that stays open is said, with why (the cap, a plateau). A diverged, collapsed or failed probe scores below every
finished one: it brackets the peak from above.

Two diagnostics are recorded per probe beside its objective; the first decides which probes may be the peak:

* it **acts** when its penalty's gradient is a visible share of the data loss's while it trains: the median over
  the experiences that had a penalty of ``||grad penalty|| / ||grad data||``, over the experience's steps, on the
  parameters the model shares with earlier ones (the record's ``<name>_penalty_to_data_gradient``:
  :class:`forgetbench.strategies.penalty.PenaltyDiagnostics`) is at least :data:`ACTS` (0.01, the bound of the
  records' inert flag).
  A strategy that records no such ratio (lwf, olora, Avalanche's own methods) acts when it forgets at most
  ``1 - FORGETTING_CUT`` of naive's forgetting (and naive forgets);
* it **crushes** learning when its plasticity (LA: the accuracy on each experience right after learning it)
  falls more than :data:`LA_DROP` below naive's (a scenario without an LA, a search, skips this test), when
  its ratio exceeds :data:`CRUSHES` (the penalty's pull twenty times the data loss's), or when the run did not
  end ``ok`` (diverged, collapsed, failed). A strength that crushes plasticity can still have the best ACC (it
  saves more forgetting than it costs): calibration and tuning choose among acting strengths on the objective, and
  say where none keeps plasticity; the report compares at matched plasticity.

:func:`acting_range` (lowest to highest strength that acts without crushing) remains the fallback where no probe
has a finite objective (a scenario that does not measure it).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

ACTS = 0.01  # below it the penalty is too small to act (strategies.penalty.INERT_RATIO is this: why 0.01, there)
CRUSHES = 20.0  # penalty / data gradient norm above which the penalty, not the data, decides every step
LA_DROP = 0.05  # plasticity lost (accuracy, 0-1) beyond which learning is crushed
FORGETTING_CUT = 0.1  # without a recorded ratio: acts when forgetting falls by at least this share of naive's
RATIO_SUFFIX = "_penalty_to_data_gradient"
MAX_EXTENSION = 3  # decades a ladder may extend beyond its first span, on each side, to bracket the peak


@dataclass(frozen=True)
class Probe:
    """One probed strength: the run's status, median penalty-to-data gradient ratio (None when the strategy
    records none), plasticity (LA) and forgetting, both as accuracies in 0-1, and the value of tuning's objective
    (NaN where the run did not finish or the scenario does not measure it)."""

    value: float
    status: str
    ratio: float | None
    la: float
    forgetting: float
    objective: float = float("nan")

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


def score(probe: Probe, maximise: bool = True) -> float:
    """The probe's objective with the sign that makes higher better; -inf for a run that did not finish ``ok`` or
    has no finite objective (it scores below every finished probe)."""
    if probe.status != "ok" or not math.isfinite(probe.objective):
        return -math.inf
    return probe.objective if maximise else -probe.objective


@dataclass(frozen=True)
class Bracket:
    """Where the objective peaks on a ladder: the best probe's strength, the range tuning searches (``low`` to
    ``high``: the nearest probes on either side of the best that score below it), whether each end brackets the
    peak and, where not, why; ``extend``: the strengths to probe next (empty once the ladder is done)."""

    best: float | None
    low: float | None
    high: float | None
    low_bracketed: bool
    high_bracketed: bool
    low_reason: str | None = None
    high_reason: str | None = None
    extend: tuple[float, ...] = ()

    @property
    def range(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)


def _decade(value: float, k: int) -> float:
    return float(f"{value * 10.0**k:.6g}")


def judges_acting(probes: Iterable[Probe], naive: Probe) -> bool:
    """Whether :func:`acts` can tell an acting probe from an inert one here: a probe recorded a penalty ratio, or
    naive forgets (what a strategy without a ratio is judged against)."""
    return any(p.ratio is not None for p in probes) or naive.forgetting > 0


def acting_bound(inert: Probe, acting: Probe) -> float:
    """The strength between an inert probe and the acting one above it where the penalty ratio reaches
    :data:`ACTS`, interpolated on log-log axes (the ratio grows as a power of the strength); the inert probe's
    strength where a ratio is unknown or not positive. Rounded to 3 significant digits, inside the two."""
    if not (inert.ratio and acting.ratio and inert.ratio > 0 and acting.ratio > inert.ratio):
        return inert.value
    share = (math.log(ACTS) - math.log(inert.ratio)) / (math.log(acting.ratio) - math.log(inert.ratio))
    bound = math.exp(math.log(inert.value) + share * (math.log(acting.value) - math.log(inert.value)))
    return min(max(float(f"{bound:.3g}"), inert.value), acting.value)


def _inert_everywhere(probes: list[Probe], cap: tuple[float, float]) -> Bracket:
    """No probe's penalty acts: nothing to choose among; the ladder extends upwards, where penalties grow."""
    ratios = [p.ratio for p in probes if p.status == "ok" and p.ratio is not None]
    largest = f" (largest penalty ratio {max(ratios):.3g} < {ACTS:g})" if ratios else ""
    why = f"no probe's penalty acts, {probes[0].value:g} to {probes[-1].value:g}{largest}"
    up = _decade(probes[-1].value, 1)
    if probes[-1].status != "ok":
        return Bracket(None, None, None, False, False, why, f"{why}; the strongest probes did not finish ok")
    if up > cap[1] * (1 + 1e-9):
        return Bracket(
            None,
            None,
            None,
            False,
            False,
            why,
            f"{why}; the cap: {MAX_EXTENSION} decades above the first ladder ({cap[1]:g})",
        )
    return Bracket(None, None, None, False, False, why, why, (up,))


def bracket(probes: Iterable[Probe], naive: Probe, cap: tuple[float, float], maximise: bool = True) -> Bracket:
    """The bracket of the objective's peak among the probes whose penalty acts (module doc). An inert probe trains
    as naive does, so its objective is naive's plus noise: it is never the peak, and where it sits below the
    best acting probe the range starts where the penalty starts to act (:func:`acting_bound`). ``cap`` (lowest,
    highest): the strengths the ladder may extend to. Ties at the top: the peak spans every tied probe, and each
    end is the nearest probe outside them; a tie that reaches an end of the ladder is a plateau, not a rise, so
    that end is not extended. No probe acts: no bracket, the ladder extends upwards. No acting probe with a
    finite objective: no bracket (``best`` None)."""
    probes = sorted(probes, key=lambda p: p.value)
    judged = judges_acting(probes, naive)
    chosen = [not judged or acts(p, naive) for p in probes]
    scores = [score(p, maximise) if ok else -math.inf for p, ok in zip(probes, chosen)]
    if probes and not any(chosen) and any(p.status == "ok" for p in probes):
        return _inert_everywhere(probes, cap)
    if not probes or max(scores) == -math.inf:
        why = "no probe finished with a finite objective"
        return Bracket(None, None, None, False, False, why, why)
    top = max(scores)
    tied = [i for i, s in enumerate(scores) if s == top]
    first, last = tied[0], tied[-1]
    best = probes[first]
    low = high = None
    low_reason = high_reason = None
    extend: list[float] = []
    plateau = f"the objective is level over the best probes, {best.value:g} to {probes[last].value:g}: not rising there"
    if first > 0:
        below = probes[first - 1]
        low = below.value if chosen[first - 1] or below.status != "ok" else acting_bound(below, best)
    else:
        low = best.value
        if last > first:  # a plateau reaching this end: the objective is not rising towards it
            low_reason = plateau
        elif _decade(best.value, -1) < cap[0] * (1 - 1e-9):
            low_reason = f"the cap: {MAX_EXTENSION} decades below the first ladder ({cap[0]:g})"
        else:
            extend.append(_decade(best.value, -1))
    if last < len(probes) - 1:
        high = probes[last + 1].value
    else:
        high = probes[last].value
        if last > first:
            high_reason = plateau
        elif _decade(probes[last].value, 1) > cap[1] * (1 + 1e-9):
            high_reason = f"the cap: {MAX_EXTENSION} decades above the first ladder ({cap[1]:g})"
        else:
            extend.append(_decade(probes[last].value, 1))
    return Bracket(
        best.value,
        low,
        high,
        first > 0,
        last < len(probes) - 1,
        low_reason,
        high_reason,
        tuple(extend),
    )


def plasticity_lines(probes: Iterable[Probe], naive: Probe) -> list[str]:
    """Where every acting probe crushes learning: one sentence saying so, with the weakest acting probe's figures
    (its LA against naive's, its penalty ratio); empty where one keeps plasticity, or none acts."""
    acting = sorted((p for p in probes if acts(p, naive)), key=lambda p: p.value)
    if not acting or any(not crushes(p, naive) for p in acting):
        return []
    weakest = acting[0]
    la = f"LA {100 * weakest.la:.1f} vs naive {100 * naive.la:.1f}" if math.isfinite(weakest.la) else "no LA"
    ratio = "" if weakest.ratio is None else f", penalty ratio {weakest.ratio:.3g}"
    return [
        f"no acting strength keeps plasticity: the weakest that acts, {weakest.value:g}, has {la}{ratio} (it "
        f"crushes learning: LA more than {100 * LA_DROP:g} points below naive's, or a ratio above {CRUSHES:g})"
    ]


NOTHING_LEARNED = (
    "no probe learned: naive and every strength ended collapsed (at chance after each task's training and at the "
    "end, judged against the split's size), so there is no peak to bracket and this study stops. Check what makes a "
    "model score chance in evaluation while it trains: BatchNorm's running statistics after few steps (momentum=None "
    "averages every batch), the learning rate, the steps per task"
)


def nothing_learned(probes: Iterable[Probe], naive: Probe) -> bool:
    """Naive and every probe collapsed: the model learned nothing at any strength (a setup problem, not a strength)."""
    probes = list(probes)
    return bool(probes) and naive.status == "collapsed" and all(p.status == "collapsed" for p in probes)


DIVERGED = ("diverged", "collapsed")


def divergence_lines(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """Per calibrated strategy whose probes diverged or collapsed, which end of its ladder they are at, named by
    their strengths: above every finished probe (too strong for this optimiser: they bracket the peak from above),
    below every one (the weakest penalties: the run diverges without its pull, so the learning rate, not the
    strength, is too high), or among them."""
    lines = []
    for entry in entries:
        probes = entry.get("probes") or []
        bad = sorted(float(p["value"]) for p in probes if p.get("status") in DIVERGED)
        done = [float(p["value"]) for p in probes if p.get("status") not in DIVERGED]
        if not bad:
            continue
        where = f"{entry.get('scenario')} / {entry.get('strategy')} {entry.get('param')} " + ", ".join(
            f"{v:g}" for v in bad
        )
        if done and min(bad) > max(done):
            why = "at the strongest end: too strong for this optimiser; they bracket the peak from above"
        elif done and max(bad) < min(done):
            why = (
                "at the weakest end: the runs diverge with the penalty's pull at its smallest, so the learning rate is "
                "too high for this model, not the strength"
            )
        elif not done:
            why = "at every strength: the learning rate is too high for this model at any strength"
        else:
            why = "between finished probes, at neither end (a run that diverges by chance; rerun with another seed)"
        lines.append(f"{where} diverged or collapsed {why}")
    return lines


def bracket_verdict(found: Bracket, probes: Iterable[Probe], naive: Probe, objective: str = "ACC") -> str:
    """One sentence: where the objective peaks and the range around it, or which end is open and why."""
    probes = sorted(probes, key=lambda p: p.value)
    if not probes:
        return "nothing was probed"
    if nothing_learned(probes, naive):
        return NOTHING_LEARNED
    span = f"probed {probes[0].value:g} to {probes[-1].value:g}"
    said = "".join(f"; {line}" for line in plasticity_lines(probes, naive))
    judged = judges_acting(probes, naive)
    if not judged:
        said += (
            "; whether its penalty acts cannot be told here (it records no penalty ratio and naive does not "
            "forget): every probe was a candidate"
        )
    if found.best is None and judged and not any(acts(p, naive) for p in probes):
        return f"inert at every strength probed: {found.high_reason}; nothing to choose among ({span})"
    inert = [f"{p.value:g}" for p in probes if judged and p.status == "ok" and not acts(p, naive)]
    if inert:
        said = f"; inert, never chosen: {', '.join(inert)}" + said
    if found.best is None:
        fallback = acting_range(probes, naive)
        if fallback is None:
            return f"no probe finished with a finite {objective} ({span}); {range_verdict(probes, naive)}"
        return (
            f"no probe finished with a finite {objective} ({span}): the range is where the penalty acts without "
            f"crushing learning, {fallback[0]:g} to {fallback[1]:g}"
        )
    peak = next(p for p in probes if p.value == found.best)
    naive_text = f" vs naive {100 * naive.objective:.1f}" if math.isfinite(naive.objective) else ""
    text = (
        f"{objective} peaks at {found.best:g} ({100 * peak.objective:.1f}{naive_text}); range {found.low:g} to "
        f"{found.high:g}"
    )
    open_ends = [
        f"not bracketed {side}: {reason}"
        for side, done, reason in (
            ("below", found.low_bracketed, found.low_reason),
            ("above", found.high_bracketed, found.high_reason),
        )
        if not done
    ]
    if not open_ends:
        return f"{text}, both ends below the peak ({span}){said}"
    return f"{text} ({span}); " + "; ".join(open_ends) + said
