"""Bad input, table-driven (the battery's rules: tests/bad_input.py). Scenarios: your own model and benchmark
(`custom`), the NAS search, the text scenario, the ENAS recurrent-cell search, your own supernet and NAS-Bench-201's
cell space."""

from __future__ import annotations


from bad_input import (
    Case,
    battery,
    check_refused,
    RUN,
    _custom,
    _enas,
    _enas_cnn,
    _nb201,
    _own_supernet,
    _search,
    _strategy,
    _suite,
    _text,
    _tuned,
)
from helpers import REPO

CASES: list[Case] = [
    # --- bring your own model and benchmark (the `custom` scenario; factories in tests/byo_fixtures.py)
    (
        "custom-module-missing",
        {"suite": _custom(model="no_such_pkg.models:make")},
        RUN,
        "scenarios[0].params.model: Value error, 'no_such_pkg.models:make': cannot import module 'no_such_pkg.models'",
    ),
    (
        "custom-attribute-missing",
        {"suite": _custom(benchmark="byo_fixtures:nope")},
        RUN,
        "module 'byo_fixtures' has no attribute 'nope'",
    ),
    (
        "custom-not-a-reference",
        {"suite": _custom(model="byo_fixtures.plain_mlp")},
        RUN,
        "not a reference of the form module.path:attribute",
    ),
    ("custom-not-callable", {"suite": _custom(model="byo_fixtures:not_callable")}, RUN, "is not callable"),
    (
        "custom-factory-raises",
        {"suite": _custom(model="byo_fixtures:raising_model")},
        RUN,
        "model byo_fixtures:raising_model raised RuntimeError: cannot build: the checkpoint file weights.pt is missing",
    ),
    ("custom-no-task-labels", {"suite": _custom(benchmark_params={"task_labels": False})}, RUN, "has no task labels"),
    (
        "unknown-logger",
        {"suite": _suite(loggers=["wandb"])},
        RUN,
        "loggers[0]: Input should be 'csv', 'tensorboard' or 'mlflow'",
    ),
    (
        "resnet18-two-widths",
        {
            "suite": _suite(
                scenarios=[
                    {
                        "name": "split",
                        "params": {"dataset": "digits", "tasks": 2, "trunk": "resnet18", "widths": [20, 40]},
                    }
                ]
            )
        },
        RUN,
        "trunk 'resnet18' takes one width, nf",
    ),
    (
        "resnet18-not-images",
        {
            "suite": _suite(
                scenarios=[{"name": "split", "params": {"dataset": "mnist1d", "tasks": 2, "trunk": "resnet18"}}]
            )
        },
        RUN,
        "trunk 'resnet18' needs an image dataset",
    ),
    (
        "custom-names-change",
        {"suite": _custom(model="byo_fixtures:growing_model")},
        RUN,
        "parameter names change between experiences",
    ),
    # --- the NAS search scenario
    (
        "search-kind",
        {"suite": _search(search="evolution")},
        RUN,
        "scenarios[0].params.search: Input should be 'random' or 'controller'",
    ),
    (
        "search-too-many-candidates",
        {"suite": _search(candidates=5)},
        RUN,
        "candidates must be in 1..ops**layers = 1..4",
    ),
    (
        "search-controller-on-a-sample",
        {"suite": _search(layers=3, candidates=5, search="controller")},
        RUN,
        "search 'controller' samples from the whole space; use candidates: null",
    ),
    ("search-space-too-large", {"suite": _search(layers=13)}, RUN, "give a sample size"),
    ("search-top-k", {"suite": _search(top_k=9)}, RUN, "top_k must be in 1..4"),
    ("search-validation-size", {"suite": _search(validation_size=5000)}, RUN, "validation_size must be below the"),
    (
        "search-controller-key",
        {"suite": _search(controller={"lr": 0.01, "temperature": 5})},
        RUN,
        "scenarios[0].params.controller.temperature",
    ),
    (
        "search-baseline-decay",
        {"suite": _search(controller={"baseline_decay": 1.0})},
        RUN,
        "scenarios[0].params.controller.baseline_decay",
    ),
    (
        "search-ground-truth-of-one-candidate",
        {"suite": _search(candidates=1)},
        RUN,
        "the ground truth's ranking (standalone) needs at least 2 candidates",
    ),
    (
        "supernet-standalone-of-one-architecture",
        {
            "suite": _suite(
                scenarios=[
                    {"name": "supernet", "params": {"dataset": "digits", "architectures": 1, "standalone": True}}
                ]
            )
        },
        RUN,
        "standalone: a ranking needs at least 2 architectures",
    ),
    (
        "supernet-steps-per-turn-null",
        {"suite": _suite(scenarios=[{"name": "supernet", "params": {"dataset": "digits", "steps_per_turn": None}}])},
        RUN,
        "scenarios[0].params.steps_per_turn",
    ),
    # --- the text scenario (its preflight reads the corpus and the encoder's config)
    ("text-unknown-corpus", {"suite": _text(corpus="ag_news")}, RUN, "unknown text corpus 'ag_news'"),
    (
        "text-unknown-class",
        {"suite": _text(tasks=[["business", "zebras"]])},
        RUN,
        "tasks: unknown class(es) ['zebras'] of corpus 'bbc_news'",
    ),
    (
        "text-class-twice",
        {"suite": _text(tasks=[["business", "tech"], ["tech", "sports"]])},
        RUN,
        "tasks: a class may appear in one task only",
    ),
    ("text-trainable-layers", {"suite": _text(trainable_layers=7)}, RUN, "trainable_layers must be in 0..6"),
    (
        "text-head",
        {"suite": _text(head="domain")},
        RUN,
        "scenarios[0].params.head: Input should be 'multi', 'single' or 'shared'",
    ),
    (
        "text-adapters-shared-head",
        {"suite": _text(head="shared", adapters={"rank": 4})},
        RUN,
        "adapters: one adapter per task is chosen by the task label, which head: shared",
    ),
    # --- the ENAS recurrent-cell search (issue 33)
    (
        "enas-nodes-0",
        {"suite": _enas(nodes=0)},
        RUN,
        "scenarios[0].params.nodes: Input should be greater than or equal to 1",
    ),
    (
        "enas-activation",
        {"suite": _enas(activations=["tanh", "gelu"])},
        RUN,
        "scenarios[0].params.activations[1]: Input should be 'tanh', 'relu', 'identity' or 'sigmoid'",
    ),
    (
        "enas-bptt-longer-than-validation",
        {"suite": _enas(bptt=500)},
        RUN,
        "bptt must be below the validation split's 289 tokens",
    ),
    (
        "enas-vocabulary-1",
        {"suite": _enas(vocabulary=1)},
        RUN,
        "scenarios[0].params.vocabulary: Input should be greater than or equal to 2",
    ),
    (
        "enas-corpus-folder-without-train",
        {"suite": _enas(corpus=f"folder:{REPO / 'tests' / 'data'}")},
        RUN,
        "needs train.txt, valid.txt and test.txt; missing: train.txt",
    ),
    ("enas-hf-offline", {"suite": _enas(corpus="hf:ptb_text_only")}, RUN, "downloads are off: set `download: true`"),
    ("enas-tied-sizes", {"suite": _enas(embedding=16)}, RUN, "embedding must equal hidden"),
    (
        "enas-retrain-steps-negative",
        {"suite": _enas(retrain_steps=-1)},
        RUN,
        "scenarios[0].params.retrain_steps: Input should be greater than or equal to 0",
    ),
    (
        "enas-controller-key",
        {"suite": _enas(controller={"temprature": 5})},
        RUN,
        "scenarios[0].params.controller.temprature",
    ),
    (
        "enas-cnn-nodes-0",
        {"suite": _enas_cnn(nodes=0)},
        RUN,
        "scenarios[0].params.nodes: Input should be greater than or equal to 1",
    ),
    (
        "enas-cnn-op",
        {"suite": _enas_cnn(ops=["sep_conv_3x3", "conv_7x7"])},
        RUN,
        "scenarios[0].params.ops[1]: Input should be 'sep_conv_3x3', 'sep_conv_5x5', 'avg_pool_3x3', 'max_pool_3x3' or "
        "'identity'",
    ),
    (
        "enas-cnn-not-images",
        {"suite": _enas_cnn(dataset="mnist1d")},
        RUN,
        "the micro-CNN search needs an image dataset (C, H, W); 'mnist1d' is not one",
    ),
    (
        "enas-cnn-eval-size",
        {"suite": _enas_cnn(eval_size=500)},
        RUN,
        "eval_size must be at most validation_size (100), got 500",
    ),
    (
        "enas-cnn-validation-size",
        {"suite": _enas_cnn(validation_size=5000, eval_size=None)},
        RUN,
        "validation_size must be below the 1347 training images of 'digits'",
    ),
    ("enas-cnn-unknown-dataset", {"suite": _enas_cnn(dataset="cifar-10")}, RUN, "unknown dataset 'cifar-10'; allowed:"),
    (
        "wpl-fisher-mode",
        {"suite": _strategy("wpl", fisher="running")},
        RUN,
        "strategies[0].params.fisher: Input should be 'exact' or 'minibatch'",
    ),
    (
        "wpl-fisher-online-is-wpl-online",
        {"suite": _strategy("wpl", fisher="online", clip_norm=10.0)},
        RUN,
        "clip_norm, fisher: online: wpl_online now (name: wpl_online)",
    ),
    # your own supernet (the `custom_supernet` scenario; factories in tests/byo_fixtures.py)
    (
        "own-supernet-architecture-without-a-trainable-parameter",
        {"suite": _own_supernet(choices=[["zero"], ["lin", "skip"]], model_params={"freeze_head": True})},
        RUN,
        "architecture zero-skip uses no trainable parameter",
    ),
    (
        "own-supernet-unknown-option-in-fixed-list",
        {"suite": _own_supernet(search="fixed", architectures=[["lin", "lin"], ["lin", "c5"]])},
        RUN,
        "architectures[1]: decision 1 has no option 'c5' (allowed: ['lin', 'skip'])",
    ),
    (
        "own-supernet-no-space",
        {"suite": _own_supernet(choices=None)},
        RUN,
        "give the search space either as choices",
    ),
    (
        "own-supernet-empty-decision",
        {"suite": _own_supernet(choices=[["lin"], []])},
        RUN,
        "decision 1 offers no option",
    ),
    (
        "own-supernet-option-twice",
        {"suite": _own_supernet(choices=[["lin", "lin"]])},
        RUN,
        "decision 0 names an option twice",
    ),
    (
        "own-supernet-data-and-dataset",
        {"suite": _own_supernet(dataset="digits")},
        RUN,
        "give the data either as dataset",
    ),
    (
        "own-supernet-list-without-fixed",
        {"suite": _own_supernet(architectures=[["lin", "lin"]])},
        RUN,
        "architectures: only search 'fixed'",
    ),
    (
        "own-supernet-turns-against-the-fixed-list",
        {"suite": _own_supernet(search="fixed", architectures=[["lin", "lin"]], turns_per_epoch=3)},
        RUN,
        "turns_per_epoch: search 'fixed' trains the 1 listed",
    ),
    (
        "own-supernet-model-not-a-module",
        {"suite": _own_supernet(model="byo_fixtures:not_a_supernet")},
        RUN,
        "returned str, not a torch nn.Module",
    ),
    (
        "own-supernet-data-lengths-differ",
        {"suite": _own_supernet(data="byo_fixtures:bad_splits")},
        RUN,
        "data: train has 4 inputs and 3 labels",
    ),
    (
        "own-supernet-space-without-choices",
        {"suite": _own_supernet(choices=None, space="byo_fixtures:NoChoices")},
        RUN,
        "has no choices",
    ),
    (
        "own-supernet-ground-truth-of-one",
        {"suite": _own_supernet(ground_truth={"architectures": 1})},
        RUN,
        "a ranking needs at least 2 architectures",
    ),
    (
        "own-supernet-ground-truth-larger-than-the-space",
        {"suite": _own_supernet(ground_truth={"architectures": 7})},
        RUN,
        "ground_truth.architectures must be in 1..6",
    ),
    # NAS-Bench-201's cell space (the `nb201` scenario)
    (
        "nb201-benchmark-file-missing",
        {"suite": _nb201(nb201="/nonexistent/NAS-Bench-201-v1_1-096897.pth", ground_truth={"architectures": 2})},
        RUN,
        "nb201: /nonexistent/NAS-Bench-201-v1_1-096897.pth is not a file",
    ),
    ("nb201-file-without-ground-truth", {"suite": _nb201(nb201="x.pth")}, RUN, "nb201: give ground_truth"),
    (
        "nb201-not-an-architecture-string",
        {"suite": _nb201(search="fixed", architectures=["|nor_conv_3x3~0|+|none~0|"])},
        RUN,
        "architectures[0]",
    ),
    ("nb201-not-an-image-dataset", {"suite": _nb201(dataset="mnist1d")}, RUN, "needs an image dataset"),
    ("tune-unknown-param", {"suite": _tuned({"l2_lamda": "auto"})}, RUN, "tune.params.l2_lamda: not a param"),
    (
        "tune-auto-on-a-non-strength",
        {"suite": _tuned({"alpha": "auto"}, name="mas")},
        RUN,
        "tune.params.alpha: auto (the calibrated range)",
    ),
    (
        "tune-low-above-high",
        {"suite": _tuned({"l2_lambda": {"low": 10, "high": 1}})},
        RUN,
        "strategies[0].tune.params.l2_lambda",
    ),
    ("tune-log-range-from-zero", {"suite": _tuned({"l2_lambda": {"low": 0, "high": 1}})}, RUN, "log-scale range"),
    ("tune-zero-trials", {"suite": _tuned({"l2_lambda": "auto"}, trials=0)}, RUN, "strategies[0].tune.trials"),
    (
        "tune-unknown-sampler",
        {"suite": _tuned({"l2_lambda": "auto"}, sampler="cmaes")},
        RUN,
        "strategies[0].tune.sampler",
    ),
    (
        "selection-retired-for-tune",  # one way to choose a strength: the error writes the tune block that replaces it
        {"suite": _suite(strategies=[{"name": "l2", "params": {"l2_lambda": [1, 10]}, "selection": {"metric": "LA"}}])},
        RUN,
        "`tune: {params: {l2_lambda: {choices: [1, 10]}}, sampler: grid, trials: 2, objective: LA}`",
    ),
    (
        "tune-and-a-grid",
        {
            "suite": _suite(
                strategies=[{"name": "l2", "params": {"l2_lambda": [1, 10]}, "tune": {"params": {"l2_lambda": "auto"}}}]
            )
        },
        RUN,
        "strategies[0].tune.params: a tuned entry takes one value per param, not a grid (l2_lambda)",
    ),
    (
        "tune-grid-more-trials-than-combinations",
        {
            "suite": _suite(
                strategies=[
                    {
                        "name": "l2",
                        "tune": {"params": {"l2_lambda": {"choices": [1, 10]}}, "sampler": "grid", "trials": 3},
                    }
                ]
            )
        },
        RUN,
        "trials 3 > the grid's 2 combination(s)",
    ),
    (
        "tune-on-an-unknown-scenario",
        {"suite": _tuned({"l2_lambda": "auto"}, scenario="splt")},
        RUN,
        "strategies[0].tune.scenario: 'splt' is not a scenario of this suite; did you mean 'split'?",
    ),
    (
        "tune-first-tasks-one",
        {"suite": _tuned({"l2_lambda": "auto"}, first_tasks=1)},
        RUN,
        "strategies[0].tune.first_tasks",
    ),
    (
        "tune-unknown-pruning",
        {"suite": _tuned({"l2_lambda": "auto"}, pruning="mean")},
        RUN,
        "strategies[0].tune.pruning",
    ),
    (
        "tune-pruning-startup-without-pruning",
        {"suite": _tuned({"l2_lambda": "auto"}, pruning_startup=2)},
        RUN,
        "pruning_startup is read only with pruning: median or quartile",
    ),
    (
        "tune-pruning-points-without-pruning",
        {"suite": _tuned({"l2_lambda": "auto"}, pruning_points=1)},
        RUN,
        "pruning_points is read only with pruning: median or quartile",
    ),
    (
        "tune-pruning-points-out-of-range",
        {"suite": _tuned({"l2_lambda": "auto"}, pruning="median", trials=8, pruning_points=10)},
        RUN,
        "strategies[0].tune.pruning_points",
    ),
    (
        "tune-pruning-that-cannot-prune",
        {"suite": _tuned({"l2_lambda": "auto"}, trials=4, pruning="median")},
        RUN,
        "pruning_startup 4 >= trials 4",
    ),
    (
        "tune-with-a-grid",
        {
            "suite": _suite(
                strategies=[
                    {
                        "name": "ewc",
                        "params": {"mode": ["separate", "online"]},
                        "tune": {"params": {"ewc_lambda": "auto"}},
                    }
                ]
            )
        },
        RUN,
        "not a grid (mode)",
    ),
]


@battery(CASES)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    check_refused(files, argv, field, tmp_path, capsys)
