"""Bad input, table-driven (the battery's rules: tests/bad_input.py). Strategies: continual methods on a pretrained
language model (issue 35), importance sample budgets (issue 36), Avalanche's methods by name."""

from __future__ import annotations


from bad_input import (
    Case,
    battery,
    check_refused,
    RUN,
    _strategy,
    _suite,
    _text,
)

CASES: list[Case] = [
    # --- continual methods on a pretrained language model (issue 35)
    (
        "merge-combination-type",
        {"suite": _strategy("merge", combination_type="average")},
        RUN,
        "strategies[0].params.combination_type: Input should be 'linear', 'ties', 'dare_linear', 'dare_ties' or "
        "'magnitude_prune'",
    ),
    (
        "merge-density-zero",
        {"suite": _strategy("merge", density=0)},
        RUN,
        "strategies[0].params.density: Input should be greater than 0",
    ),
    (
        "merge-density-above-one",
        {"suite": _strategy("merge", density=1.5)},
        RUN,
        "strategies[0].params.density: Input should be less than or equal to 1",
    ),
    (
        "olora-without-pretrained-backbone",
        {"suite": _strategy("olora")},
        RUN,
        "strategies[0].name: 'olora' cannot run on scenarios[0] 'split': it needs pretrained_backbone (it trains one "
        "LoRA adapter per task on a frozen pretrained backbone; the scenarios with one: text",
    ),
    (
        "text-corpora-offline",
        {"suite": _text(corpora=[{"corpus": "hf:ag_news"}, {"corpus": "hf:dbpedia_14"}])},
        RUN,
        "corpus 'hf:ag_news' is not a local folder or file, so it is a Hugging Face Hub dataset, and downloads are off",
    ),
    (
        "text-corpora-with-tasks",
        {
            "suite": _text(
                tasks=[["sport", "tech"]], corpora=[{"corpus": "bbc_news"}, {"corpus": "bbc_news", "name": "again"}]
            )
        },
        RUN,
        "tasks: with corpora every dataset is one task",
    ),
    (
        "text-corpora-same-name",
        {"suite": _text(corpora=[{"corpus": "bbc_news"}, {"corpus": "bbc_news"}])},
        RUN,
        "corpora: task names must differ",
    ),
    (
        "text-corpora-one",
        {"suite": _text(corpora=[{"corpus": "bbc_news"}])},
        RUN,
        "scenarios[0].params.corpora: List should have at least 2 items",
    ),
    (
        "osf-effective-rank-one",
        {"suite": _strategy("osf", effective_rank=1.0)},
        RUN,
        "strategies[0].params.effective_rank: Input should be less than 1",
    ),
    (
        "inflora-threshold",
        {"suite": _strategy("inflora", threshold=1.0)},
        RUN,
        "strategies[0].params.threshold: Input should be less than 1",
    ),
    (
        "ewc-importance-norm",
        {"suite": _strategy("ewc", importance_norm="max")},
        RUN,
        "strategies[0].params.importance_norm: Input should be 'none' or 'mean'",
    ),
    (
        "text-adapters-class-il",
        {"suite": _text(head="single", adapters={"rank": 4})},
        RUN,
        "adapters: one adapter per task is chosen by the task label",
    ),
    ("text-adapters-no-layer", {"suite": _text(trainable_layers=0, adapters={})}, RUN, "set trainable_layers >= 1"),
    (
        "text-adapters-target",
        {"suite": _text(adapters={"target_modules": ["qkv"]})},
        RUN,
        "adapters.target_modules: ['qkv'] name no Linear layer of the encoder's layers; allowed: attention.self.query",
    ),
    ("text-hf-offline", {"suite": _text(corpus="hf:ag_news")}, RUN, "downloads are off: set `download: true`"),
    ("text-adapters-key", {"suite": _text(adapters={"rnak": 4})}, RUN, "scenarios[0].params.adapters.rnak"),
    # --- issue 36: importance sample budgets
    (
        "ewc-importance-samples-zero",
        {"suite": _strategy("ewc", importance_samples=0)},
        RUN,
        "strategies[0].params.importance_samples: Input should be greater than 0",
    ),
    (
        "mas-importance-samples-text",
        {"suite": _strategy("mas", importance_samples="all")},
        RUN,
        "strategies[0].params.importance_samples: Input should be a valid integer",
    ),
    (
        "training-grad-clip-norm",
        {"suite": _suite(training={"grad_clip_norm": -1.0})},
        RUN,
        "training.grad_clip_norm: Input should be greater than 0",
    ),
    # Avalanche's methods by name (strategies/avalanche_zoo.py)
    (
        "avalanche-class-unknown",
        {"suite": _suite(strategies=[{"name": "avalanche.GEMM"}])},
        RUN,
        "unknown strategy 'avalanche.GEMM'; did you mean 'avalanche.GEM'?",
    ),
    (
        "avalanche-class-not-runnable",
        {"suite": _suite(strategies=[{"name": "avalanche.ICaRL"}])},
        RUN,
        "strategies[0].name: 'avalanche.ICaRL' cannot run on forgetbench's scenarios: needs a feature extractor",
    ),
    (
        "avalanche-argument-unknown",
        {"suite": _strategy("avalanche.GEM", patterns_per_exp=8, memory_strength=0.5, strength=1.0)},
        RUN,
        "strategies[0].params.strength: unknown key; did you mean 'memory_strength'? allowed: patterns_per_exp, "
        "memory_strength",
    ),
    (
        "avalanche-argument-type",
        {"suite": _strategy("avalanche.GEM", patterns_per_exp="many", memory_strength=0.5)},
        RUN,
        "strategies[0].params.patterns_per_exp: Input should be a valid integer",
    ),
    (
        "avalanche-argument-missing",
        {"suite": _strategy("avalanche.GEM", memory_strength=0.5)},
        RUN,
        "strategies[0].params.patterns_per_exp: Field required",
    ),
    (
        "avalanche-method-refused-on-scenario",
        {"suite": _strategy("avalanche.DER")},
        RUN,
        "strategies[0].name: 'avalanche.DER' cannot run on scenarios[0] 'split': it needs single_head",
    ),
    (
        "avalanche-der-on-masked-class-il",
        {
            "suite": _suite(
                scenarios=[{"name": "split", "params": {"dataset": "digits", "tasks": 2, "setting": "class-IL"}}],
                strategies=[{"name": "avalanche.DER"}],
            )
        },
        RUN,
        "it needs unmasked_outputs (DER regresses stored logits",
    ),
    (
        "mask-unseen-classes-not-class-il",
        {"suite": _suite(scenarios=[{"name": "split", "params": {"dataset": "digits", "mask_unseen_classes": False}}])},
        RUN,
        "scenarios[0].params: Value error, mask_unseen_classes: applies to setting 'class-IL' only",
    ),
    (
        "impossible-widths",
        {
            "suite": _suite(
                scenarios=[
                    {"name": "split", "params": {"dataset": "digits", "tasks": 2, "widths": [2_000_000, 2_000_000]}}
                ]
            )
        },
        RUN,
        "scenarios[0].params: the network would have 4,000,",
    ),
    (
        "impossible-widths-validate",
        {
            "suite": _suite(
                scenarios=[{"name": "permuted", "params": {"dataset": "digits", "widths": [3_000_000, 3_000_000]}}]
            )
        },
        ("validate", "{suite}", "--skip-data"),
        "more than the",
    ),
]


@battery(CASES)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    check_refused(files, argv, field, tmp_path, capsys)
