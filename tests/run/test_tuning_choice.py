"""Which trial tuning chooses: among the trials whose penalty acts, the best value, ties to the lowest number."""

from __future__ import annotations


def test_an_inert_trial_is_never_chosen_while_one_acts_and_tuning_says_when_none_does():
    """The best validation ACC on a custom supernet was a strength whose penalty did nothing (its ratio under
    calibration's ACTS): its objective is naive's plus noise. Tuning chooses among the acting trials."""
    from forgetbench.benchmark.run.tuning import StudyRun

    run = StudyRun.__new__(StudyRun)
    run.tune = type("T", (), {"objective": "ACC"})()
    run.space, run.notes = {}, []
    run.resolution = lambda trial: None
    rows = [
        {"number": 0, "state": "COMPLETE", "value": 0.91, "params": {"ewc_lambda": 1.0}, "penalty_ratio": 0.004},
        {"number": 1, "state": "COMPLETE", "value": 0.88, "params": {"ewc_lambda": 100.0}, "penalty_ratio": 0.2},
        {"number": 2, "state": "COMPLETE", "value": 0.80, "params": {"ewc_lambda": 1e4}, "penalty_ratio": 3.0},
    ]
    assert run.best(rows)["number"] == 1
    zero = [{**rows[0], "penalty_ratio": 0.0}, rows[1]]  # a penalty of exactly nothing is inert too
    assert run.best(zero)["number"] == 1
    assert any("inert, never chosen" in n and "trial 0 (ewc_lambda=1, ratio 0.004)" in n for n in run.notes)
    run.notes = []
    assert run.best(rows[:1])["number"] == 0  # nothing acts: the best is taken, and said
    assert any(n.startswith("no trial's penalty acts (largest penalty ratio 0.004") for n in run.notes)


def test_the_chosen_trial_of_a_tie_is_the_lowest_number_whatever_the_order(tmp_path):
    from forgetbench.benchmark.run.tuning import StudyRun

    run = StudyRun.__new__(StudyRun)
    run.tune = type("T", (), {"objective": "ACC"})()
    run.space, run.notes = {}, []
    run.resolution = lambda trial: None  # the records' split sizes are not what this test is about
    rows = [{"number": n, "state": "COMPLETE", "value": 0.33356, "params": {}} for n in (4, 1, 3)]
    assert run.best(rows)["number"] == 1 and run.best(rows[::-1])["number"] == 1
