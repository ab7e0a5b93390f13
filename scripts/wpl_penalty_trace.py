"""Trace WPL's penalty step by step on configs/wpl_small_cnn.yaml (issue 34, item 7).

    FORGETBENCH_DATA=../shared/data .venv/bin/python scripts/wpl_penalty_trace.py SEED [max_curvature=VALUE]

Prints, every 5 steps of the last two experiences, the data loss, WPL's penalty, the share of the trunk's
64 ReLU units dead on the batch and the gradient norm, then the run's final accuracies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from avalanche.core import SupervisedPlugin

from forgetbench.benchmark.front.api import run_suite
from forgetbench.benchmark.core.references import add_search_folder
from forgetbench.strategies import register_strategy
from forgetbench.strategies.penalty import stable_curvature
from forgetbench.strategies.wpl import WPLParams, WPLPlugin

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "wpl_small_cnn.yaml"


class Trace(SupervisedPlugin):
    def __init__(self, wpl: WPLPlugin):
        super().__init__()
        self.wpl, self.step = wpl, 0

    def before_training_exp(self, strategy, **kwargs):
        self.step = 0

    def after_backward(self, strategy, **kwargs):
        self.step += 1
        experience = strategy.experience.current_experience
        if experience < 3 or (self.step % 5 != 1 and self.step > 3):
            return
        with torch.no_grad():
            units = strategy.model.net.trunk(strategy.mb_x)
            dead = float((units.sum(0) == 0).float().mean())
            penalty = float(self.wpl.penalty())
            grad = float(torch.stack([p.grad.norm() for p in strategy.model.parameters() if p.grad is not None]).norm())
        print(
            f"experience {experience} step {self.step:3d}: loss {float(strategy.loss):9.3f} penalty {penalty:9.3f} "
            f"dead units {dead:.2f} grad norm {grad:7.2f}",
            flush=True,
        )


@register_strategy("wpl_traced", params=WPLParams)
def build(ctx, params):
    """WPL with a per-step trace of its penalty (scripts/wpl_penalty_trace.py)."""
    plugin = WPLPlugin(
        params, ctx.used_params, seed=ctx.seed, max_curvature=stable_curvature(params.max_curvature, ctx.training)
    )
    return ctx.build(plugins=[plugin, Trace(plugin)])


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    params = {}
    for arg in sys.argv[2:]:
        key, value = arg.split("=", 1)
        params[key] = yaml.safe_load(value)
    add_search_folder(CONFIG.parent)
    suite = yaml.safe_load(CONFIG.read_text())
    suite.update(seeds=[seed], strategies=[{"name": "wpl_traced", "params": params}])
    results = run_suite(suite, Path("results") / "wpl_penalty_trace", fresh=True, progress=False)
    record = results.records[0]
    print(record["status"], [round(a, 3) for a in record["accuracy_matrix"][-1]])
