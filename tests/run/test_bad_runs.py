"""Bad input, table-driven (the battery's rules: tests/bad_input.py). Calibration and tuning entries that cannot be
probed or searched, and the study store: refused before any run."""

from __future__ import annotations


from bad_input import (
    Case,
    battery,
    check_refused,
    CALIBRATE,
    RUN,
    _TUNED,
    _custom,
    _strategy,
    _suite,
)

CASES: list[Case] = [
    # calibrate: its own options, and entries it cannot probe (nothing run, nothing written)
    ("calibrate-decades-zero", {"suite": _strategy("l2", l2_lambda=1.0)}, CALIBRATE + ("--decades", "0"), "--decades"),
    (
        "calibrate-fraction-one",
        {"suite": _strategy("l2", l2_lambda=1.0)},
        CALIBRATE + ("--fraction", "1"),
        "--fraction",
    ),
    (
        "calibrate-grid-on-another-param",
        {"suite": _strategy("ewc", mode=["separate", "online"])},
        CALIBRATE,
        "strategies[ewc].params.mode",
    ),
    ("calibrate-nothing-declares-a-strength", {"suite": _suite()}, CALIBRATE, "declares a strength"),
    # tune: blocks Optuna cannot search, refused before anything runs
    (
        "unknown-strategy-in-capitals-suggests",
        {"suite": _suite(strategies=[{"name": "WPL"}])},
        RUN,
        "did you mean 'wpl'?",
    ),
    (
        "custom-task-without-a-trainable-parameter",
        {"suite": _custom(model="byo_fixtures:second_task_frozen_model")},
        RUN,
        "experience1 (task label 1) uses no trainable parameter",
    ),
    # --- the study store: refused before any run (issue 67: a bad --storage used to fail after the naive references
    # and calibration probes had trained, with a traceback)
    ("storage-not-a-url", {"suite": _TUNED}, (*RUN, "--storage", "garbage"), "--storage 'garbage': not a database URL"),
    (
        "storage-driver-missing",
        {"suite": _TUNED},
        (*RUN, "--storage", "postgresql://user@localhost/forgetbench"),
        "pip install psycopg2-binary",
    ),
    (
        "storage-folder-missing",
        {"suite": _TUNED},
        (*RUN, "--storage", "sqlite:///{dir}/no/such/folder/study.db"),
        "cannot be created there",
    ),
]


@battery(CASES)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    check_refused(files, argv, field, tmp_path, capsys)
