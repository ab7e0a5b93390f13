"""Bad input, table-driven: every case goes through the CLI entry point and must exit 2, name the
field at fault, print no traceback and write nothing under ``--out``.

Add a row for every new kind of bad input. A row is ``(id, files, argv, field)``: ``files`` maps
file names to their content (a dict is written as YAML, ``bytes`` as is), ``argv`` is the command
line with ``{name}`` standing for that file's path and ``{out}`` for the output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from forgetbench.benchmark.front.cli import main
from conftest import tiny_suite
from byo_fixtures import tiny_supernet_params
from helpers import REPO

RUN = ("run", "{suite}", "--out", "{out}", "--quiet")
CALIBRATE = ("calibrate", "{suite}", "--out", "{out}", "--quiet")


def _suite(**overrides: Any) -> dict[str, Any]:
    return tiny_suite(**overrides)


def _strategy(name: str, **params: Any) -> dict[str, Any]:
    return _suite(strategies=[{"name": name, "params": params}])


_TUNED = _suite(strategies=[{"name": "l2", "tune": {"params": {"l2_lambda": {"low": 0.1, "high": 1.0}}, "trials": 2}}])


def _yaml_with(line_old: str, line_new: str) -> str:
    """The tiny suite as YAML text with one line replaced (for values only YAML text can carry)."""
    text = yaml.safe_dump(_suite(), sort_keys=False)
    assert line_old in text
    return text.replace(line_old, line_new)


def _tuned(params: dict[str, Any], name: str = "l2", **tune: Any) -> dict[str, Any]:
    """The tiny suite with one strategy entry tuned by ``tune: {params, **tune}``."""
    return _suite(strategies=[{"name": name, "tune": {"params": params, **tune}}])


def _custom(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `custom` scenario (a multi-head MLP on two tensor tasks), params overridden."""
    base = {"model": "byo_fixtures:multihead_mlp", "benchmark": "byo_fixtures:tensor_benchmark"}
    return _suite(scenarios=[{"name": "custom", "params": base | params}])


def _search(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `supernet_search` scenario (2 positions x 2 ops on digits), params overridden."""
    base = {"dataset": "digits", "layers": 2, "ops": 2, "width": 8, "validation_size": 100}
    return _suite(scenarios=[{"name": "supernet_search", "params": base | params}])


def _enas(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `enas_rnn` scenario (a 3-node cell on the test corpus folder), params overridden."""
    base = {
        "corpus": f"folder:{REPO / 'tests' / 'data' / 'lm_corpus'}",
        "vocabulary": 30,
        "nodes": 3,
        "embedding": 8,
        "hidden": 8,
        "bptt": 6,
        "epochs": 1,
        "turns_per_epoch": 2,
        "steps_per_turn": 1,
    }
    return _suite(scenarios=[{"name": "enas_rnn", "params": base | params}])


def _own_supernet(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `custom_supernet` scenario (tests/byo_fixtures.py's MLP supernet on points)."""
    base = tiny_supernet_params(search="random", epochs=1, turns_per_epoch=2, steps_per_turn=1)
    return _suite(scenarios=[{"name": "custom_supernet", "params": base | params}])


def _nb201(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `nb201` scenario (NAS-Bench-201's cell space at 4 channels on digits)."""
    base = {"dataset": "digits", "channels": 4, "validation_size": 100, "epochs": 1, "turns_per_epoch": 2}
    return _suite(scenarios=[{"name": "nb201", "params": base | params}])


def _enas_cnn(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `enas_cnn` scenario (a 2-node cell on digits), params overridden."""
    base = {
        "dataset": "digits",
        "nodes": 2,
        "channels": 4,
        "cells_per_stage": 1,
        "reductions": 1,
        "validation_size": 100,
        "eval_size": 50,
        "epochs": 1,
        "turns_per_epoch": 2,
        "steps_per_turn": 1,
    }
    return _suite(scenarios=[{"name": "enas_cnn", "params": base | params}])


def _text(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `text` scenario (BBC News on MiniLM), params overridden."""
    return _suite(scenarios=[{"name": "text", "params": {"corpus": "bbc_news", "max_length": 16} | params}])


# nine levels of ten aliases each: 10^9 values once expanded, a few hundred bytes as text
_ALIAS_BOMB = (
    "\n".join(
        ["name: t", 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        + [f"{b}: &{b} [{', '.join(['*' + a] * 10)}]" for a, b in zip("abcdefgh", "bcdefghi")]
        + ["strategies: [*i]"]
    )
    + "\n"
)

_RECORD = {  # the least a readable result file holds
    "schema_version": 2,
    "run_id": "r",
    "suite": "t",
    "seed": 0,
    "status": "ok",
    "config": {},
    "scenario": {"name": "split", "label": "split"},
    "strategy": {"name": "naive", "label": "naive"},
    "accuracy_matrix": [[0.9, 0.5], [0.7, 0.95]],
    "experiences": ["t0", "t1"],
    "init_accuracy": [0.5, 0.5],
}

CASES: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
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
    # --- command-line options
    ("retries-negative", {"suite": _suite()}, (*RUN, "--retries", "-1"), "--retries"),
    ("workers-zero", {"suite": _suite()}, (*RUN, "--executor", "process", "--workers", "0"), "--workers"),
    ("executor-unknown", {"suite": _suite()}, (*RUN, "--executor", "slurm"), "--executor"),
    # --- the report command
    ("report-missing-folder", {}, ("report", "{dir}/no-results"), "no-results"),
    (
        "report-output-is-a-directory",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "-o", "{out}"),
        "-o/--output",
    ),
    (
        "report-import-unknown-module",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "--import", "no_such_metrics_module"),
        "--import no_such_metrics_module",
    ),
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
    # --- issue 34: found as new and as hostile users
    ("yaml-alias-bomb", {"suite": _ALIAS_BOMB}, RUN, "expands to more than 100,000 values"),
    ("yaml-deep-nesting", {"suite": "name: t\nseeds: " + "[" * 2000 + "]" * 2000 + "\n"}, RUN, "nests deeper than 64"),
    (
        "label-10000-characters",
        {"suite": _suite(strategies=[{"name": "naive", "label": "a" * 10_000}])},
        RUN,
        "strategies[0].label: Value error, label is 10000 characters long; at most 100",
    ),
    ("suite-name-too-long", {"suite": _suite(name="n" * 300)}, RUN, "name: String should have at most 100 characters"),
    (
        "out-is-a-file",
        {"suite": _suite(), "taken": "not a folder"},
        ("run", "{suite}", "--out", "{taken}"),
        "is a file, not a folder",
    ),
    (
        "out-under-a-file",
        {"suite": _suite(), "taken": "x"},
        ("run", "{suite}", "--out", "{taken}/sub"),
        "is a file, not a folder",
    ),
    (
        "report-output-under-a-file",
        {"results/runs/r/result.json": json.dumps(_RECORD), "taken": "x"},
        ("report", "{dir}/results", "-o", "{taken}/report.html"),
        "-o/--output",
    ),
    (
        "report-strategies-unknown",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("report", "{dir}/results", "--strategies", "ewc[ewc_lambda=1]"),
        "--strategies: no runs of ewc[ewc_lambda=1]",
    ),
    ("table-missing-folder", {}, ("table", "zoo", "{dir}/no-results"), "no-results"),
    (
        "table-kind-unknown",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("table", "zo", "{dir}/results"),
        "invalid choice: 'zo'",
    ),
    (
        "table-no-row",
        {"results/runs/r/result.json": json.dumps(_RECORD)},
        ("table", "frontier", "{dir}/results"),
        "no run the frontier table reads",
    ),
    (
        "report-figures-under-a-file",
        {"results/runs/r/result.json": json.dumps(_RECORD), "taken": "x"},
        ("report", "{dir}/results", "-o", "{dir}/r.html", "--figures", "{taken}/figures"),
        "--figures",
    ),
    (
        "validate-skip-data-factory-keyword",
        {"suite": _custom(benchmark_params={"n_tasks": 3})},
        ("validate", "{suite}", "--skip-data"),
        "unexpected keyword argument 'n_tasks'",
    ),
    (
        "validate-skip-data-no-task-labels",
        {"suite": _custom(benchmark_params={"task_labels": False})},
        ("validate", "{suite}", "--skip-data"),
        "has no task labels",
    ),
    (
        "unknown-key-lists-allowed",
        {"suite": _strategy("ewc", ewc_lamda=100)},
        RUN,
        "strategies[0].params.ewc_lamda: unknown key; did you mean 'ewc_lambda'? allowed: ewc_lambda",
    ),
    (
        "unknown-nested-key-lists-allowed",
        {"suite": _suite(training={"lrr": 0.1})},
        RUN,
        "training.lrr: unknown key; did you mean 'lr'? allowed: optimizer, lr",
    ),
    (
        "unknown-root-key-lists-allowed",
        {"suite": _suite(strategy=[{"name": "naive"}])},
        RUN,
        "strategy: unknown key; did you mean 'strategies'? allowed: name, seeds",
    ),
    (
        "unknown-strategy-suggests",
        {"suite": _suite(strategies=[{"name": "wlp"}])},
        RUN,
        "unknown strategy 'wlp'; did you mean 'wpl'?",
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


def _materialise(tmp_path: Path, files: dict[str, Any]) -> dict[str, str]:
    paths = {"dir": str(tmp_path)}
    for name, content in files.items():
        path = tmp_path / (name if "." in name else f"{name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        paths[name] = str(path)
    return paths


def _snapshot(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize(("files", "argv", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_the_field_and_writes_nothing(files, argv, field, tmp_path, capsys):
    paths = _materialise(tmp_path, files)
    out = tmp_path / "out"
    if "report" in argv:
        out.mkdir()  # `-o` at an existing directory
    before = _snapshot(tmp_path)
    args = [a.format(out=out, **paths) for a in argv]
    started = time.perf_counter()
    try:
        status = main(args)
    except SystemExit as exc:  # argparse usage errors exit 2 themselves
        status = exc.code
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert status == 2, err
    assert field in err, err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before, "bad input wrote files"
    assert seconds < 60, f"refusing bad input took {seconds:.0f} s"  # an alias bomb ran 60 s and grew past 1.2 GB


@pytest.mark.slow  # the console script in a subprocess: 3 s: for the full tier, not the inner loop
def test_bad_input_through_the_installed_console_script(tmp_path):
    """The same contract end to end: the real `forgetbench` process, its stderr and exit status."""
    config = tmp_path / "suite.yaml"
    config.write_bytes(b"name: t\xff\n")
    script = Path(sys.executable).with_name("forgetbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "forgetbench.benchmark.front.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [*command, "run", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# --- result records the store cannot trust (issue 67): table-driven. Each row damages a copy of a good results folder;
# `report` and `load_results` refuse the damaged file by name with its reason (never averaging it, never hanging,
# never a traceback, never touching an original file), and a rerun of the same command reruns the run it stood for.


def _json_edit(edit):
    def damage(run: Path) -> None:
        path = run / "result.json"
        path.write_text(edit(path.read_text()))

    return damage


def _with_nan(data: dict) -> str:
    data["accuracy_matrix"][1][0] = 0.123456789
    return json.dumps(data).replace("0.123456789", "NaN")


def _stray_copy(run: Path) -> None:  # a copy of the run in another folder, holding the run's id and other numbers
    data = json.loads((run / "result.json").read_text())
    data["accuracy_matrix"] = [[0.1, 0.1], [0.1, 0.1]]
    (run.parent / "zzz_copy").mkdir()
    (run.parent / "zzz_copy" / "result.json").write_text(json.dumps(data))


def _same_run_twice(run: Path) -> None:  # a consistent record of the same scenario, strategy and seed, other numbers
    (run.parent.parent / "plan.json").unlink()  # in a folder written before plans (with one, the copy is not planned)
    data = json.loads((run / "result.json").read_text())
    data["run_id"] += "b"
    data["accuracy_matrix"] = [[0.1, 0.1], [0.1, 0.1]]
    (run.parent / data["run_id"]).mkdir()
    (run.parent / data["run_id"] / "result.json").write_text(json.dumps(data))


def _foreign_run(run: Path) -> None:  # a record of another suite's run (lr 0.5, seed 2) copied in beside the runs
    data = json.loads((run / "result.json").read_text())
    data["config"]["training"]["lr"] = 0.5
    data["config"]["seed"] = data["seed"] = 2
    data["run_id"] = data["run_id"].replace("seed0", "seed2")
    data["suite"], data["fingerprint"] = "other", None
    (run.parent / data["run_id"]).mkdir()
    (run.parent / data["run_id"] / "result.json").write_text(json.dumps(data))
    (run / "result.json").unlink()  # and the run itself missing: the foreign record must not stand in for it


def _edit(change):
    """A damage that edits the record's JSON object in place."""

    def damage(run: Path) -> None:
        data = json.loads((run / "result.json").read_text())
        change(data)
        (run / "result.json").write_text(json.dumps(data))

    return damage


def _set(path: str, value: Any):
    """Set ``a.b.0.1``-style ``path`` of the record to ``value``."""

    def change(data: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return _edit(change)


def _without_plan(change):
    """A damage in a folder written before plans (no OUT/plan.json): the records are held to each other."""

    def damage(run: Path) -> None:
        (run.parent.parent / "plan.json").unlink()
        _edit(change)(run)

    return damage


def _other_suites(data: dict) -> None:
    data["suite"], data["fingerprint"] = "other", None
    data["config"]["training"]["lr"] = 0.5


def _one_task_record(data: dict) -> None:  # a consistent record of a 1-task run: it names 1 experience and 1 row
    data["experiences"], data["rows_planned"] = data["experiences"][:1], 1
    data["accuracy_matrix"], data["init_accuracy"] = [[data["accuracy_matrix"][0][0]]], data["init_accuracy"][:1]


def _three_experiences(data: dict) -> None:  # a 3 x 3 matrix naming a third experience, rows_planned to match
    data["experiences"] = [*data["experiences"], "task2(1,9)"]
    data["accuracy_matrix"] = [[0.5, 0.5, 0.5]] * 3
    data["init_accuracy"], data["rows_planned"] = [0.5] * 3, 3


def _replace_with(make):
    def damage(run: Path) -> None:
        (run / "result.json").unlink()
        make(run / "result.json")

    return damage


RECORD_DEFECTS = [
    # (id, damage, the words that name why, whether the run's own record survives (only a stray copy leaves it))
    ("stray-copy-with-the-runs-id", _stray_copy, "is not its folder's name", True),
    (
        "run-id-differs-from-its-folder",
        _json_edit(lambda t: t.replace('"run_id": "split__naive__seed0"', '"run_id": "split__naive__seed7"')),
        "is not its folder's name",
        False,
    ),
    ("two-records-of-one-run", _same_run_twice, "differs from it", False),
    (
        "nan-in-the-matrix",
        _json_edit(lambda t: _with_nan(json.loads(t))),
        "NaN",
        False,
    ),
    (
        "nan-train-seconds",
        _json_edit(
            lambda t: json.dumps(json.loads(t) | {"timing": {"train_seconds": 1.5}}).replace(
                '"train_seconds": 1.5', '"train_seconds": NaN'
            )
        ),
        "NaN",
        False,
    ),
    (
        "matrix-wider-than-the-experiences",
        _json_edit(lambda t: json.dumps(json.loads(t) | {"accuracy_matrix": [[0.5] * 9] * 9})),
        "column(s) but the record names 2 experience(s)",
        False,
    ),
    ("result-is-a-directory", _replace_with(lambda p: p.mkdir()), "a directory", False),
    ("dangling-symlink", _replace_with(lambda p: p.symlink_to(p.parent / "gone.json")), "symbolic link", False),
    ("symlink-loop", _replace_with(lambda p: p.symlink_to(p)), "symbolic link", False),
    ("fifo", _replace_with(lambda p: os.mkfifo(p)), "FIFO", False),
    ("byte-order-mark", _json_edit(lambda t: "\ufeff" + t), "byte-order mark", False),
    ("folder-without-its-record", _replace_with(lambda p: None), "holds no result.json", False),
    # issue 74: a record is checked against the suite that asked for it, and the schema is strict
    ("record-of-another-suite", _foreign_run, "is not a run this suite planned", False),
    (
        "config-edited-after-the-run",
        _set("config.training.lr", 0.5),
        "the config was edited after the run",
        False,
    ),
    (
        "config-and-fingerprint-edited",
        _edit(lambda d: d["config"]["training"].update(lr=0.5) or d.update(fingerprint=None)),
        "training.lr: 0.5 in the record, 0.05 planned",
        False,
    ),
    (
        "only-the-first-row",
        _edit(lambda d: d.update(accuracy_matrix=d["accuracy_matrix"][:1])),
        "with 1 of the 2 rows",
        False,
    ),
    (
        "partial-matrix-without-rows-planned",
        _edit(lambda d: d.update(accuracy_matrix=d["accuracy_matrix"][:1], rows_planned=None)),
        "has 1 row(s) over 2",
        False,
    ),
    ("three-experiences-in-a-two-task-suite", _edit(_three_experiences), "has 3 row(s) over 3", False),
    ("a-one-task-record", _edit(_one_task_record), "has 1 row(s) over 1", False),
    ("ok-with-an-empty-matrix", _edit(lambda d: d.update(accuracy_matrix=[], rows_planned=None)), "but empty", False),
    ("bool-in-the-matrix", _set("accuracy_matrix.1.0", True), "valid number", False),
    ("string-in-the-matrix", _set("accuracy_matrix.1.0", "0.95"), "valid number", False),
    ("negative-train-seconds", _set("timing.train_seconds", -100), "greater than or equal to 0", False),
    ("negative-regularizer-bytes", _set("memory.regularizer_bytes", -5), "greater than or equal to 0", False),
    ("seed-beyond-range", _edit(lambda d: d.update(seed=10**30)), "seed", False),
    ("another-suites-record-without-a-plan", _without_plan(_other_suites), "suite: 'other', where the folder's", False),
    (
        "an-edited-lr-without-a-plan",
        _without_plan(lambda d: d["config"]["training"].update(lr=0.5) or d.update(fingerprint=None)),
        "training.lr: 0.5 in the record, 0.05 in the others",
        False,
    ),
    ("seed-not-its-run-ids", _edit(lambda d: d.update(seed=7)), "names seed 0", False),
]
_DEFECT_SUITE = tiny_suite(seeds=[0, 1], strategies=[{"name": "naive"}, {"name": "ewc"}])


@pytest.fixture(scope="module")
def good_results(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("good")
    config = folder / "suite.yaml"
    config.write_text(yaml.safe_dump(_DEFECT_SUITE))
    assert main(["run", str(config), "--out", str(folder / "results"), "--quiet", "--no-report"]) == 0
    return config, folder / "results"


def _originals(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.glob("runs/*/*") if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize(
    ("damage", "why", "survives"), [r[1:] for r in RECORD_DEFECTS], ids=[r[0] for r in RECORD_DEFECTS]
)
@pytest.mark.timeout(120)  # a FIFO opened for reading would block forever
def test_a_record_the_store_cannot_trust_is_refused_by_name_and_rerun(
    damage, why, survives, good_results, tmp_path, capsys, caplog
):
    import shutil

    import forgetbench

    config, good = good_results
    clean = forgetbench.load_results(good).summary()
    folder = tmp_path / "results"
    shutil.copytree(good, folder, symlinks=True)
    victim = folder / "runs" / "split__naive__seed0"
    damage(victim)
    before = _originals(folder)

    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    import html

    assert why in caplog.text and why in html.unescape((folder / "report.html").read_text())  # named, with why
    summary = forgetbench.load_results(folder).summary()
    assert _originals(folder) == before  # nothing read was changed
    naive = summary[summary.strategy == "naive"].iloc[0]
    expected = clean[clean.strategy == "naive"].iloc[0]
    if survives:  # the stray copy is refused and the run's own record stands: the summary is the clean one
        pd.testing.assert_frame_equal(summary, clean)
    else:  # the run is left out, never averaged with numbers it does not have
        assert (naive.ok, expected.ok) == (1, 2)

    caplog.clear()
    status = main(["run", str(config), "--out", str(folder), "--quiet", "--no-report"])
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    if survives or damage is _same_run_twice:  # resume reads each run's own record: nothing to run again
        assert status == 0 and "0 run(s) executed" in printed.out
    else:
        assert status == 0 and "1 run(s) executed" in printed.out  # the refused run, and only it, ran again
        moved = [p / "result.json" for p in (folder / "set_aside").glob("*")]  # what stood in its place: kept
        assert [os.path.lexists(p) for p in moved] == [True] * (
            0 if damage in (_foreign_run, RECORD_DEFECTS[11][1]) else 1
        )
        numbers = [c for c in clean.columns if "seconds" not in c]  # timings differ from run to run
        pd.testing.assert_frame_equal(forgetbench.load_results(folder).summary()[numbers], clean[numbers])


def test_load_results_of_a_folder_whose_runs_is_a_file_is_an_error(tmp_path):
    import forgetbench
    from forgetbench.benchmark.core.config import ConfigError

    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ConfigError, match="runs: not a folder"):
        forgetbench.load_results(tmp_path)


def _disk_fills_after(monkeypatch, module, name: str, writes: int) -> None:
    """``module.name`` (a writer) raises ENOSPC from its ``writes + 1``-th call on, as a full disk does."""
    import errno

    real, calls = getattr(module, name), {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, full)


def test_a_full_disk_during_run_stops_with_one_line_and_the_rerun_continues(tmp_path, capsys, monkeypatch):
    from forgetbench.benchmark.core import store

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_DEFECT_SUITE))
    out = tmp_path / "out"
    _disk_fills_after(monkeypatch, store, "write_result", 2)  # the third run's record finds the disk full
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"the disk holding {out} is full" in err and "rerun the same command" in err
    assert len(list(out.glob("runs/*/result.json"))) == 2 and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "2 run(s) executed, 2 skipped" in capsys.readouterr().out


def test_a_full_disk_during_report_leaves_the_report_and_its_tables_as_they_were(
    good_results, tmp_path, capsys, monkeypatch
):
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(good_results[1], folder)
    assert main(["report", str(folder)]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    (folder / "runs" / "split__ewc__seed1" / "result.json").unlink()  # the next report would differ everywhere
    _disk_fills_after(monkeypatch, os, "fsync", 1)  # the second file of the set finds the disk full
    assert main(["report", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is full" in err and "as they were" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # all old, no temporary
