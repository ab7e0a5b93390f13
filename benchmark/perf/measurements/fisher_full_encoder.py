"""The exact Fisher over a stock Hugging Face encoder trained end to end (MiniLM, every parameter trainable: the
embedding tables, position embeddings included, and all six layers, plus a linear head), against one forward and
backward pass over the same documents (the work of a training step without the optimiser). Says which parameters
took the general per-sample path in the passes (none since the shared position lookup is expanded to the batch)
and what the pass costs. MiniLM comes from the text extra's registry package under the data root; the token ids
are random (the cost does not depend on them). Best of 3 after a warm-up.

    OMP_NUM_THREADS=1 forgetbench perf --only fisher_full_encoder [--set documents=32] [--set length=128]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PositiveInt

from forgetbench.benchmark.perf.measurements import Measurement, best_seconds, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: PositiveInt = 32
    length: PositiveInt = 128  # tokens a document


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    import torch
    from torch import nn

    from forgetbench.benchmark.data import text
    from forgetbench.strategies.importance import exact_fisher_diagonal

    class Classifier(nn.Module):
        def __init__(self, encoder: Any, classes: int) -> None:  # a Hugging Face model
            super().__init__()
            hidden = int(encoder.config.hidden_size)
            self.encoder, self.head = encoder, nn.Linear(hidden, classes)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(input_ids=ids).last_hidden_state[:, 0])

    torch.manual_seed(0)
    model = Classifier(text.load_encoder(text.encoder_dir("minilm", opts.data_root, False)), classes=4)
    ids = torch.randint(1000, 20000, (params.documents, params.length))
    y = torch.randint(0, 4, (params.documents,))
    fallback: set[str] = set()

    def fisher() -> None:
        exact_fisher_diagonal(model, ids, y, batch_size=params.documents, fallback_taken=fallback)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(ids), y).backward()

    fisher_s, step_s = best_seconds(fisher, 3), best_seconds(forward_backward, 3)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "documents": params.documents,
        "length": params.length,
        "threads": torch.get_num_threads(),
        "fallback": sorted(fallback),
        "fisher_seconds": fisher_s,
        "step_seconds": step_s,
        "ratio": fisher_s / step_s,
    }


def lines(result: dict[str, Any]) -> list[str]:
    return [
        f"MiniLM + head, {result['parameters'] / 1e6:.1f} M parameters all trainable, {result['documents']} documents "
        f"x {result['length']} tokens, {result['threads']} thread(s)",
        f"parameters that took the general per-sample path: {result['fallback'] or 'none'}",
        f"exact Fisher {result['fisher_seconds']:.2f} s, forward + backward {result['step_seconds']:.2f} s, "
        f"ratio {result['ratio']:.2f}",
    ]


register(
    Measurement("fisher_full_encoder", "the exact Fisher over MiniLM trained end to end vs a step", Params, run, lines)
)
