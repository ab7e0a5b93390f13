"""Seeds added where a decision needs them (``seeds: {start, max, step}``): rounds of more seeds, only for the
strategies of the pairs the verdict has not decided, until every pair is decided or the budget is spent.

After the suite's first seeds (its runs, and a tuned entry's chosen point and neighbours), each round asks the
verdict's decisions (handed in by the front end as a :data:`Decider`: this layer never reads the reports) which
pairs are undecided on the runs planned so far, and adds ``step`` seeds to every strategy (or method: all its
strengths) in one, with the naive runs those seeds need in its scenario, never beyond ``max`` seeds. The decisions
are group-sequential tests planned to ``max`` seeds (:mod:`forgetbench.benchmark.core.decide`), so stopping on them
keeps their error rates.

``OUT/rounds.json`` records each round before it runs (the seeds it adds, and why): a killed suite replays the
recorded rounds (their complete runs skipped) and continues from the last, so its records and verdict are those of an
uninterrupted run. At the end it says, per scenario and strategy, why its seeds stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.decide import Undecided
from forgetbench.benchmark.core.config import SeedsUntilDecided, SuiteConfig, VerdictConfig
from forgetbench.benchmark.core.record import config_fingerprint
from forgetbench.benchmark.run.spec import RunSpec

NAIVE = "naive"


# (results folder, the run ids planned so far, the suite's verdict options, the rounds' planned most seeds) -> what
# is undecided on those runs
Decider = Callable[[Path, set[str], VerdictConfig, int], Undecided]


def _method(label: str) -> str:
    return label.partition("[")[0]


def _matches(label: str, participant: str) -> bool:
    """A run group (a strategy label) belongs to a participant of a decision: the label itself, or its method."""
    return label == participant or _method(label) == participant


class Rounds:
    """The rounds of one suite invocation over its runs in ``out`` (the specs of its first seeds)."""

    def __init__(self, suite: SuiteConfig, out: Path, first: list[RunSpec], rule: SeedsUntilDecided) -> None:
        self.suite, self.out, self.rule = suite, Path(out), rule
        self.templates: dict[tuple[str, str], RunSpec] = {}
        self.seeds: dict[tuple[str, str], list[int]] = {}
        for spec in first:
            key = (spec.scenario.display_name, spec.strategy.display_name)
            self.templates.setdefault(key, spec)
            self.seeds.setdefault(key, [])
            if spec.seed not in self.seeds[key]:
                self.seeds[key].append(spec.seed)
        self.planned = {spec.run_id for spec in first}
        initial = sorted({s for seeds in self.seeds.values() for s in seeds})
        # the order seeds are added in: the first seeds, then the next integers not among them
        extra: list[int] = []
        candidate = 0
        while len(initial) + len(extra) < rule.max:
            if candidate not in initial:
                extra.append(candidate)
            candidate += 1
        self.order = initial + extra
        # the first runs' fingerprint: rounds recorded over other first runs (another config) are not replayed
        self.first = config_fingerprint({spec.run_id: spec.resolved() for spec in first})
        self.verdict = suite.verdict.model_dump()
        self.note = ""  # why the recorded rounds were not replayed, where they were not
        self.damaged = False  # rounds.json missing or unreadable though the settings it was decided under hold
        read = self._read()
        self.state: dict[str, Any] = read or {
            "rule": rule.model_dump(),
            "verdict": self.verdict,
            "first": self.first,
            "rounds": [],
            "stopped": {},
        }
        self._hold_to_the_records(read is not None)

    def _read(self) -> dict[str, Any] | None:
        """The recorded rounds, where they were decided under this suite's rule, verdict settings and first runs;
        otherwise None, with :attr:`note` saying what changed (the rounds are then decided again, each run already
        complete skipped)."""
        path = store.ResultFolder(self.out).rounds
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            self.damaged = True
            return None
        except (OSError, ValueError) as exc:
            self.damaged = True
            self.note = f"{path} cannot be read ({str(exc).splitlines()[0][:80]}): its rounds are decided again"
            return None
        if not isinstance(state, dict) or not isinstance(state.get("rounds"), list):
            self.damaged = True
            self.note = f"{path} is not a record of rounds: its rounds are decided again"
            return None
        for key, now, what in (
            ("rule", self.rule.model_dump(), "seeds: {start, max, step}"),
            ("verdict", self.verdict, "verdict settings (alpha, margins)"),
            ("first", self.first, "first runs (another config or seed list)"),
        ):
            recorded = state.get(key)
            if key == "verdict" and recorded is None:  # rounds recorded before they kept it: the defaults decided them
                recorded = VerdictConfig().model_dump()
            if recorded != now:
                shown = "" if key == "first" else f": recorded {recorded}, now {now}"
                self.note = (
                    f"{path} was decided under other {what}{shown}; its rounds are decided again under this run's, "
                    "each run already complete skipped"
                )
                return None
        return state

    def _hold_to_the_records(self, read: bool) -> None:
        """The recorded rounds held to the records they ran (each record's ``round``): where they disagree (an
        edited file), or where the file is gone or unreadable but records of rounds exist, the rounds are re-derived
        from the records, said once in :attr:`note`; a round recorded but not yet run (a stop inside it) agrees."""
        ran = self._rounds_run()
        if not any(ran.values()):
            return
        if read:
            problem = self._disagreement(ran)
            if problem is None:
                return
            why = f"{store.ResultFolder(self.out).rounds} does not match the records ({problem})"
        elif self.damaged:
            why = self.note.partition(": its rounds")[0] or f"{store.ResultFolder(self.out).rounds} is missing"
        else:
            return  # decided under other settings: decided again (the note says so)
        self.state["rounds"] = self._derived(ran)
        self.note = (
            f"{why}: its {len(self.state['rounds'])} round(s) were re-derived from the records' round fields, each "
            "run already complete skipped"
        )

    def _rounds_run(self) -> dict[tuple[str, str], dict[int, int]]:
        """(scenario, strategy) -> seed -> the round its record says added it (1 or more), for every record in the
        folder that is this suite's run of that seed."""
        folder = store.ResultFolder(self.out)
        ran: dict[tuple[str, str], dict[int, int]] = {}
        for key, template in self.templates.items():
            for seed in self.order:
                spec = dataclasses.replace(template, seed=seed)
                record = folder.read(spec.run_id) if folder.record_path(spec.run_id).exists() else None
                if (
                    record is not None
                    and record.round
                    and store.is_planned(record, spec.resolved(), spec.retired_params())
                ):
                    ran.setdefault(key, {})[seed] = int(record.round)
        return ran

    def _disagreement(self, ran: dict[tuple[str, str], dict[int, int]]) -> str | None:
        """Where the recorded rounds and the records disagree, in words (None: they agree)."""
        recorded: dict[tuple[str, str], dict[int, int]] = {}
        for number, entry in enumerate(self.state["rounds"], start=1):
            if not isinstance(entry, dict) or entry.get("round") != number or not isinstance(entry.get("added"), dict):
                return f"its round {number} is not a round {number} of seeds"
            for name, seeds in entry["added"].items():
                scenario, _, strategy = str(name).partition("__")
                if (scenario, strategy) not in self.templates:
                    return f"round {number} adds seeds to {name!r}, not a strategy of this suite"
                if not isinstance(seeds, list) or not all(type(seed) is int for seed in seeds):
                    return f"round {number}'s seeds of {name!r} are not a list of seeds"
                mine = recorded.setdefault((scenario, strategy), {})
                for seed in seeds:
                    if seed in mine or seed in self.seeds[(scenario, strategy)]:
                        return f"{scenario} / {strategy} seed {seed} is added twice"
                    mine[seed] = number
        for (scenario, strategy), seeds in ran.items():
            for seed, number in sorted(seeds.items()):
                said = recorded.get((scenario, strategy), {}).get(seed)
                if said != number:
                    where = f"round {said}" if said is not None else "no round"
                    return f"{scenario} / {strategy} seed {seed}: its record says round {number}, rounds.json {where}"
        return None

    def _derived(self, ran: dict[tuple[str, str], dict[int, int]]) -> list[dict[str, Any]]:
        """The rounds as the records say they ran: each round's seeds per (scenario, strategy), in the order seeds
        are added."""
        rounds = max(number for seeds in ran.values() for number in seeds.values())
        derived = []
        for number in range(1, rounds + 1):
            added = {
                f"{scenario}__{strategy}": [seed for seed in self.order if seeds.get(seed) == number]
                for (scenario, strategy), seeds in ran.items()
                if number in seeds.values()
            }
            derived.append({"round": number, "added": added, "undecided": None, "from_records": True})
        return derived

    def _write(self) -> None:
        store.atomic_write_json(store.ResultFolder(self.out).rounds, self.state)

    def specs(self, added: dict[str, list[int]], round_: int) -> list[RunSpec]:
        """The runs round ``round_`` adds (``added``: ``<scenario>__<strategy>`` -> seeds), recorded as planned."""
        out = []
        for name, seeds in added.items():
            scenario, _, strategy = name.partition("__")
            key = (scenario, strategy)
            for seed in seeds:
                spec = dataclasses.replace(self.templates[key], seed=seed, round=round_)
                out.append(spec)
                self.planned.add(spec.run_id)
                if seed not in self.seeds[key]:
                    self.seeds[key].append(seed)
        return out

    def next_round(self, undecided: Undecided) -> dict[str, list[int]]:
        """The seeds the next round adds: ``step`` more to every run group in an undecided pair that has fewer than
        ``max``, and to its scenario's naive as many as its groups then have."""
        added: dict[str, list[int]] = {}
        for scenario, pairs in undecided.pairs.items():
            open_ = {label for pair in pairs for label in pair}
            groups = [
                key
                for key in self.templates
                if key[0] == scenario
                and any(_matches(key[1], p) for p in open_)
                and len(self.seeds[key]) < self.rule.max
            ]
            if not groups:
                continue
            reach = 0
            for key in groups:
                have = len(self.seeds[key])
                more = [s for s in self.order[have : have + self.rule.step] if s not in self.seeds[key]]
                if more:
                    added[f"{key[0]}__{key[1]}"] = more
                reach = max(reach, have + len(more))
            for key in self.templates:  # naive runs on every seed its scenario's methods run: their reference
                if key[0] == scenario and self.templates[key].strategy.name == NAIVE and key not in groups:
                    more = [s for s in self.order[:reach] if s not in self.seeds[key]]
                    if more:
                        added[f"{key[0]}__{key[1]}"] = more
        return added

    def stopped(self, undecided: Undecided) -> dict[str, dict[str, str]]:
        """Scenario -> strategy -> why its seeds stopped where they did."""
        out: dict[str, dict[str, str]] = {}
        for scenario, participants in undecided.participants.items():
            open_ = {label for pair in undecided.pairs.get(scenario, []) for label in pair}
            for participant in sorted(participants):
                keys = [k for k in self.templates if k[0] == scenario and _matches(k[1], participant)]
                n = max((len(self.seeds[k]) for k in keys), default=0)
                at = undecided.decided_at.get(scenario, {}).get(participant)
                if participant in open_:
                    why = f"budget: {n} seeds, the most allowed (max {self.rule.max}), with a pair still undecided"
                elif at is not None and at > self.rule.start:
                    extra = f"; it ran {n} as the reference other pairs needed" if n > at else ""
                    why = f"decided: every pair it is in was decided by {at} paired seeds{extra}"
                else:
                    why = f"decided on the first {self.rule.start} seeds" + (
                        f"; it ran {n} as the reference other pairs needed" if n > self.rule.start else ""
                    )
                out.setdefault(scenario, {})[participant] = why
        for scenario, label in self.templates:  # run, but in no deciding family: a reference, or a plasticity trader
            named = out.get(scenario, {})
            if not any(_matches(label, p) for p in named) and _method(label) not in named:
                n = len(self.seeds[(scenario, label)])
                out.setdefault(scenario, {})[_method(label)] = (
                    f"not compared after {n} seeds: a reference, or it trades plasticity (the verdict says which)"
                )
        return out


def run_rounds(
    suite: SuiteConfig,
    out: Path,
    first: list[RunSpec],
    run_batch: Callable[[list[tuple[Path, RunSpec]]], None],
    decide: Decider,
    exploring: set[str],
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Add seeds in rounds until every pair is decided or the budget is spent (module docstring); returns the final
    ``rounds.json``. ``exploring``: the run ids that explore (a tuned point's neighbours), grown with their new seeds."""
    rule = suite.until_decided
    assert rule is not None
    rounds = Rounds(suite, out, first, rule)
    if rounds.note:
        say(rounds.note)
    neighbours = {(s.scenario.display_name, s.strategy.display_name) for s in first if s.run_id in exploring}
    for recorded in rounds.state["rounds"]:  # replayed after a stop: complete runs are skipped
        specs = rounds.specs(recorded["added"], int(recorded["round"]))
        exploring |= {s.run_id for s in specs if (s.scenario.display_name, s.strategy.display_name) in neighbours}
        run_batch([(out, spec) for spec in specs])
    while True:
        undecided = decide(out, rounds.planned, suite.verdict, rule.max)
        added = rounds.next_round(undecided)
        if not added:
            rounds.state["stopped"] = rounds.stopped(undecided)
            rounds._write()
            return rounds.state
        rounds.state["rounds"].append(
            {
                "round": len(rounds.state["rounds"]) + 1,
                "added": added,
                "undecided": {scenario: [list(p) for p in pairs] for scenario, pairs in undecided.pairs.items()},
            }
        )
        rounds._write()  # before the runs: a stop replays this round
        specs = rounds.specs(added, len(rounds.state["rounds"]))
        exploring |= {s.run_id for s in specs if (s.scenario.display_name, s.strategy.display_name) in neighbours}
        run_batch([(out, spec) for spec in specs])
