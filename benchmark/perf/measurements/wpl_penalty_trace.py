"""WPL's penalty step by step on configs/wpl_small_cnn.yaml: every 5 steps of the last two experiences, the data
loss, WPL's penalty, the share of the trunk's 64 ReLU units dead on the batch and the gradient norm, then the run's
final accuracies (results/wpl_penalty_trace).

    forgetbench perf --only wpl_penalty_trace [--set seed=2] [--set wpl={max_curvature: 100}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from forgetbench.benchmark.perf.measurements import REPO, Measurement, register

CONFIG = REPO / "configs" / "wpl_small_cnn.yaml"
TRACE: list[dict[str, Any]] = []  # the traced steps of the run under way (a plugin's only way out of the runner)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: NonNegativeInt = 2
    wpl: dict[str, Any] = Field(default_factory=dict)  # WPL's params for the run (e.g. max_curvature)


def _register() -> None:
    """The ``wpl_traced`` strategy: WPL with a plugin that records the penalty after each backward pass."""
    import torch
    from avalanche.core import SupervisedPlugin

    from forgetbench.strategies import STRATEGIES, register_strategy
    from forgetbench.strategies.penalty import stable_curvature
    from forgetbench.strategies.wpl import WPLParams, WPLPlugin

    if "wpl_traced" in STRATEGIES:
        return

    class Trace(SupervisedPlugin):
        def __init__(self, wpl: WPLPlugin):
            super().__init__()
            self.wpl, self.step = wpl, 0

        def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            self.step = 0

        def after_backward(self, strategy: Any, **kwargs: Any) -> None:
            self.step += 1
            experience = strategy.experience.current_experience
            if experience < 3 or (self.step % 5 != 1 and self.step > 3):
                return
            with torch.no_grad():
                units = strategy.model.net.trunk(strategy.mb_x)
                grads = [p.grad.norm() for p in strategy.model.parameters() if p.grad is not None]
                TRACE.append(
                    {
                        "experience": experience,
                        "step": self.step,
                        "loss": float(strategy.loss),
                        "penalty": float(self.wpl.penalty()),
                        "dead_units": float((units.sum(0) == 0).float().mean()),
                        "grad_norm": float(torch.stack(grads).norm()),
                    }
                )

    @register_strategy("wpl_traced", params=WPLParams)
    def build(ctx: Any, params: WPLParams) -> Any:
        """WPL with a per-step trace of its penalty (``perf --only wpl_penalty_trace``)."""
        plugin = WPLPlugin(
            params, ctx.used_params, seed=ctx.seed, max_curvature=stable_curvature(params.max_curvature, ctx.training)
        )
        return ctx.build(plugins=[plugin, Trace(plugin)])


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    import yaml

    from forgetbench.benchmark.core.references import add_search_folder
    from forgetbench.benchmark.core.config import resolve_config
    from forgetbench.benchmark.core.store import load_results
    from forgetbench.benchmark.run.suite import run_suite

    _register()
    add_search_folder(CONFIG.parent)
    suite = yaml.safe_load(CONFIG.read_text())
    suite.update(seeds=[params.seed], strategies=[{"name": "wpl_traced", "params": params.wpl}])
    TRACE.clear()
    out = Path("results") / "wpl_penalty_trace"
    run_suite(resolve_config(suite), out, opts.data_root, fresh=True, show_progress=False)
    record = load_results(out)[0]
    return {"status": record.status, "final": list(record.accuracy_matrix[-1]), "steps": list(TRACE)}


def lines(result: dict[str, Any]) -> list[str]:
    out = [
        f"experience {s['experience']} step {s['step']:3d}: loss {s['loss']:9.3f} penalty {s['penalty']:9.3f} "
        f"dead units {s['dead_units']:.2f} grad norm {s['grad_norm']:7.2f}"
        for s in result["steps"]
    ]
    return out + [f"{result['status']} {[round(a, 3) for a in result['final']]}"]


register(Measurement("wpl_penalty_trace", "WPL's penalty, loss and dead units step by step", Params, run, lines))
