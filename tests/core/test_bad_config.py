"""Bad input, table-driven (the battery's rules: tests/bad_input.py). The config file itself: YAML, keys and names,
grids, non-finite numbers, seeds, strict types, run ids, what this machine or the dataset cannot do, output paths and
float ranges (issue 74), the verdict's options and seeds until decided (issue 75)."""

from __future__ import annotations


import torch

from bad_input import (
    Case,
    battery,
    check_refused,
    RUN,
    _TUNED,
    _custom,
    _strategy,
    _suite,
    _yaml_with,
)

CASES: list[Case] = [
    # --- the config file itself
    ("missing-file", {}, ("run", "{dir}/nope.yaml", "--out", "{out}"), "nope.yaml"),
    ("not-yaml", {"suite": "name: [unclosed"}, RUN, "not valid YAML"),
    ("not-a-mapping", {"suite": "- just\n- a list\n"}, RUN, "<root>"),
    ("not-utf8", {"suite": b"name: t\xff\xfe\nseeds: [0]\n"}, RUN, "not UTF-8"),
    # --- keys and names
    ("unknown-key", {"suite": _suite(bogus=1)}, RUN, "bogus: unknown key"),
    ("unknown-strategy", {"suite": _suite(strategies=[{"name": "nope"}])}, RUN, "strategies[0].name"),
    (
        "unknown-dataset",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "cifar"}}])},
        RUN,
        "scenarios[0].params.dataset",
    ),
    ("negative-lambda", {"suite": _strategy("ewc", ewc_lambda=-3)}, RUN, "strategies[0].params.ewc_lambda"),
    # --- grids
    ("empty-grid", {"suite": _strategy("ewc", ewc_lambda=[])}, RUN, "strategies[0].params.ewc_lambda"),
    # --- non-finite numbers (only YAML text can write them)
    ("lr-inf", {"suite": _yaml_with("lr: 0.05", "lr: .inf")}, RUN, "training.lr"),
    (
        "attribution-zero",
        {"suite": _suite(training={**_suite()["training"], "attribution": 0})},
        RUN,
        "training.attribution",
    ),
    (
        "attribution-not-int",
        {"suite": _suite(training={**_suite()["training"], "attribution": 2.5})},
        RUN,
        "training.attribution",
    ),
    (
        "lambda-nan",
        {"suite": _yaml_with("- name: naive", "- name: ewc\n  params: {ewc_lambda: .nan}")},
        RUN,
        "strategies[0].params.ewc_lambda",
    ),
    (
        "lambda-minus-inf",
        {"suite": _yaml_with("- name: naive", "- name: ewc\n  params: {ewc_lambda: [1, -.inf]}")},
        RUN,
        "strategies[0].params.ewc_lambda[1]",
    ),
    # --- seeds
    ("seed-negative", {"suite": _suite(seeds=[-1])}, RUN, "seeds[0]"),
    ("seed-too-big", {"suite": _suite(seeds=[2**70])}, RUN, "seeds[0]"),
    ("seed-bool", {"suite": _suite(seeds=[True])}, RUN, "seeds[0]"),
    (
        "tune-seed-negative",
        {"suite": _suite(strategies=[{"name": "ewc", "tune": {"params": {"ewc_lambda": "auto"}, "seeds": [-5]}}])},
        RUN,
        "strategies[0].tune.seeds[0]",
    ),
    ("seeds-flag-negative", {"suite": _suite()}, (*RUN, "--seeds=-1"), "--seeds"),
    ("seeds-flag-too-big", {"suite": _suite()}, (*RUN, "--seeds", str(2**70)), "--seeds"),
    ("seeds-flag-not-int", {"suite": _suite()}, (*RUN, "--seeds", "a,b"), "--seeds"),
    # --- strict types: a string or a bool where a number belongs is refused, not converted
    ("lr-string", {"suite": _suite(training={"lr": "0.1"})}, RUN, "training.lr"),
    ("epochs-float", {"suite": _suite(training={"epochs": 1.5})}, RUN, "training.epochs"),
    ("precision-fp16", {"suite": _suite(training={"precision": "fp16"})}, RUN, "training.precision"),
    ("channels-last-string", {"suite": _suite(training={"channels_last": "yes"})}, RUN, "training.channels_last"),
    (
        "ewc-max-curvature-word",
        {"suite": _strategy("ewc", max_curvature="high")},
        RUN,
        "strategies[0].params.max_curvature",
    ),
    ("perf-device-unknown", {}, ("perf", "--device", "tpu", "--quick"), "--device"),
    ("perf-model-unknown", {}, ("perf", "--model", "vgg16", "--quick"), "--model"),
    ("perf-probe-unknown", {}, ("perf", "--only", "step_cost"), "--only: unknown measurement(s) step_cost"),
    (
        "perf-set-unknown-key",
        {},
        ("perf", "--only", "optuna_store_cost", "--set", "trails=5"),
        "--set: unknown key(s) trails; allowed: trials (optuna_store_cost)",
    ),
    (
        "perf-set-bad-value",
        {},
        ("perf", "--only", "optuna_store_cost", "--set", "trials=-1"),
        "--set (optuna_store_cost): trials",
    ),
    ("perf-set-without-params", {}, ("perf", "--only", "growth", "--set", "trials=5"), "none: growth takes no params"),
    ("lambda-string", {"suite": _strategy("ewc", ewc_lambda="10")}, RUN, "strategies[0].params.ewc_lambda"),
    (
        "reproduce-target",
        {"suite": _suite(reproduce={"source": "x", "settings": "y", "targets": {"ewc": {"mean": 98.6}}})},
        RUN,
        "reproduce.targets: ['ewc'] name no strategy of this suite; its strategies: naive",
    ),
    (
        "reproduce-metric",
        {
            "suite": _suite(
                reproduce={"source": "x", "settings": "y", "metric": "acc", "targets": {"naive": {"mean": 98.6}}}
            )
        },
        RUN,
        "reproduce.metric: Value error, 'acc' is not an accuracy metric; allowed: ACC, LA, last, forgetting, BWT",
    ),
    (
        "reproduce-metric-not-accuracy",
        {
            "suite": _suite(
                reproduce={
                    "source": "x",
                    "settings": "y",
                    "metric": "train_seconds",
                    "targets": {"naive": {"mean": 98.6}},
                }
            )
        },
        RUN,
        "reproduce.metric: Value error, 'train_seconds' is not an accuracy metric",
    ),
    (
        "split-setting",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "setting": "class"}}])},
        RUN,
        "scenarios[0].params.setting: Input should be 'task-IL', 'domain-IL' or 'class-IL'",
    ),
    (
        "ewc-estimator-without-exact",
        {"suite": _strategy("ewc", estimator="predicted")},
        RUN,
        "estimator applies only to importance 'exact'",
    ),
    (
        "ewc-estimator-unknown",
        {"suite": _strategy("ewc", importance="exact", estimator="sampled")},
        RUN,
        "strategies[0].params.estimator: Input should be 'empirical', 'true' or 'predicted'",
    ),
    ("lwf-alpha-negative-in-list", {"suite": _strategy("lwf", alpha=[1.0, -1.0])}, RUN, "strategies[0].params.alpha"),
    ("reset-optimizer-string", {"suite": _suite(training={"reset_optimizer": "no"})}, RUN, "training.reset_optimizer"),
    (
        "tasks-bool",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "tasks": True}}])},
        RUN,
        "scenarios[0].params.tasks",
    ),
    # --- run ids that would collide
    (
        "run-id-collision",
        {
            "suite": _suite(
                scenarios=[
                    {"name": "split", "label": "s", "params": {"dataset": "digits", "tasks": 2}},
                    {"name": "split", "label": "s__n", "params": {"dataset": "digits", "tasks": 2}},
                ],
                strategies=[{"name": "naive", "label": "n__e"}, {"name": "ewc", "label": "e"}],
            )
        },
        RUN,
        "strategies[1].label",
    ),
    ("duplicate-label", {"suite": _suite(strategies=[{"name": "ewc"}, {"name": "ewc"}])}, RUN, "strategies[1]"),
    # --- what this machine or the dataset cannot do
    (
        "data-b-out-of-range",
        {"suite": _suite(scenarios=[{"name": "two_model", "params": {"dataset": "digits", "data_b": [3, 12]}}])},
        RUN,
        "data_b",
    ),
    (
        "too-many-tasks",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "tasks": 6}}])},
        RUN,
        "scenarios[0].params",
    ),
    (
        "missing-data-offline",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "mnist"}}])},
        (*RUN, "--data-root", "{dir}/empty-data-root"),
        "scenarios[0].params.dataset",
    ),
    (
        "tiny-imagenet-missing-offline",
        {
            "suite": _suite(
                scenarios=[{"name": "split", "params": {"dataset": "tiny_imagenet", "tasks": 2, "trunk": "resnet18"}}]
            )
        },
        (*RUN, "--data-root", "{dir}/empty-data-root"),
        "scenarios[0].params.dataset: dataset 'tiny_imagenet' not found under data root",
    ),
    # --- issue 74: output paths, factories that misbehave, floats beyond the run's dtype, grid values that collide
    ("suite-name-dot-dot", {"suite": _suite(name="..")}, RUN, "name: Value error, '..' is not a plain folder name"),
    ("suite-name-dot", {"suite": _suite(name=".")}, ("validate", "{suite}"), "'.' is not a plain folder name"),
    ("label-only-dots", {"suite": _suite(strategies=[{"name": "naive", "label": ".."}])}, RUN, "not only dots"),
    (  # a config named suite.yaml run with --out at its own folder would be overwritten by the resolved config
        "out-holds-the-users-own-suite-yaml",
        {"suite": _suite(), "out/suite.yaml": "# the user's own config\nname: mine\n"},
        RUN,
        "holds a suite.yaml that is not a results folder's",
    ),
    ("factory-calls-sys-exit", {"suite": _custom(benchmark="byo_fixtures:exiting_benchmark")}, RUN, "sys.exit(0)"),
    (
        "factory-calls-sys-exit-at-validate",
        {"suite": _custom(benchmark="byo_fixtures:exiting_benchmark")},
        ("validate", "{suite}"),
        "called sys.exit(0) instead of returning",
    ),
    (
        "lr-beyond-float32",
        {"suite": _suite(training={**_suite()["training"], "lr": 1e308})},
        RUN,
        "training.lr: 1e+308 is beyond the float32 range",
    ),
    (
        "strength-beyond-float32",
        {"suite": _strategy("ewc", ewc_lambda=10**40)},
        ("validate", "{suite}"),
        "strategies[0].params.ewc_lambda",
    ),
    (
        "grid-values-one-float",
        {"suite": _strategy("ewc", ewc_lambda=[10**20, 10**20 + 1])},
        RUN,
        "are the same point once read as the strategy's params",
    ),
    # --- issue 75: seeds added until decided, the verdict's options, a strategy entry's scenarios
    ("seeds-start-below-three", {"suite": _suite(seeds={"start": 2, "max": 5})}, RUN, "seeds.start"),
    ("seeds-max-below-start", {"suite": _suite(seeds={"start": 5, "max": 4})}, RUN, "max: 4 is below start 5"),
    ("seeds-mapping-unknown-key", {"suite": _suite(seeds={"start": 3, "until": 5})}, RUN, "seeds.until"),
    (
        "margin-of-an-unknown-metric",
        {"suite": _suite(verdict={"equivalence_margin": {"forgeting": 1}})},
        RUN,
        "verdict.equivalence_margin",
    ),
    (
        "margin-not-positive",
        {"suite": _suite(verdict={"equivalence_margin": {"forgetting": 0}})},
        RUN,
        "verdict.equivalence_margin.forgetting",
    ),
    ("alpha-out-of-range", {"suite": _suite(verdict={"alpha": 0.7})}, RUN, "verdict.alpha"),
    (
        "strategy-scenarios-unknown",
        {"suite": _suite(strategies=[{"name": "naive", "scenarios": ["nope"]}])},
        RUN,
        "strategies[0].scenarios: ['nope'] name no scenario of this suite",
    ),
    (
        "same-label-on-one-scenario",
        {"suite": _suite(strategies=[{"name": "ewc"}, {"name": "ewc", "params": {"ewc_lambda": 3.0}}])},
        RUN,
        "label 'ewc' is used twice on one scenario",
    ),
    ("max-seeds-without-until-decided", {"suite": _suite()}, (*RUN, "--max-seeds", "9"), "--max-seeds / --seeds-step"),
    # --- issue 94: plug-ins at import
    (
        "imports-a-module-that-exits-0",
        {"suite": _suite(imports=["exiting"]), "exiting.py": b"import sys\nsys.exit(0)\n"},
        RUN,
        "imports: importing 'exiting' called sys.exit(0)",
    ),
    (
        "imports-a-module-that-exits-3",
        {"suite": _suite(imports=["exiting_3"]), "exiting_3.py": b"import sys\nsys.exit(3)\n"},
        ("validate", "{suite}"),
        "imports: importing 'exiting_3' called sys.exit(3)",
    ),
    (
        "imports-a-standard-library-name",
        {"suite": _suite(imports=["json"])},
        RUN,
        "imports: 'json' is a module of Python's standard library",
    ),
    (
        "imports-an-installed-name",
        {"suite": _suite(imports=["yaml"]), "yaml.py": b"X = 1\n"},
        RUN,
        "an installed module of that name shadows the plug-in",
    ),
    (
        "imports-a-file-path",
        {"suite": _suite(imports=["p_good.py"]), "p_good.py": b"X = 1\n"},
        RUN,
        "imports: 'p_good.py' is a file path; name its module ('p_good')",
    ),
    (  # a study file truncated after a SIGKILL: named, with the two ways out
        "storage-study-file-corrupt",
        {"suite": _TUNED, "out/tuning/study.db": b"SQLite format 3\x00" + b"\x17" * 3000},
        RUN,
        "study.db is corrupt",
    ),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda-without-gpu", {"suite": _suite(device="cuda")}, RUN, "device"))
    CASES.append(
        ("perf-cuda-without-gpu", {}, ("perf", "--device", "cuda", "--quick", "--dataset", "digits"), "--device cuda")
    )


@battery(CASES)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    check_refused(files, argv, field, tmp_path, capsys)
