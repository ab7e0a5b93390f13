"""The exact Fisher over a stock Hugging Face encoder trained end to end (MiniLM, every parameter trainable: the
embedding tables, position embeddings included, and all six layers, plus a linear head), against one forward and
backward pass over the same documents (the work of a training step without the optimiser). Shows which parameters
took the per-sample fallback in the passes (none since the shared position lookup is expanded to the batch; the
position embeddings before) and what the pass costs. MiniLM comes from the text extra's registry package; the token ids are random (the cost does not depend on
them). Best of 3 after a warm-up, one process.
Usage: OMP_NUM_THREADS=1 python scripts/fisher_full_encoder.py [--documents 32] [--length 128]"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from forgetbench.benchmark.data import text
from fisher_layer_costs import best_ms  # this folder's timing helper (the script's folder is on sys.path)
from forgetbench.strategies import importance
from forgetbench.strategies.importance import exact_fisher_diagonal


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.config.hidden_size, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids=ids).last_hidden_state[:, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = Path(os.environ.get("FORGETBENCH_DATA", "../shared/data"))
    model = Classifier(text.load_encoder(text.encoder_dir("minilm", root, False)), classes=4)
    ids = torch.randint(1000, 20000, (args.documents, args.length))
    y = torch.randint(0, 4, (args.documents,))
    fallback: set[str] = set()  # parameters whose squares came from torch.func / the per-sample loop in a pass
    vmapped = importance._vmap_squared_grads

    def recording(model, x, targets, task_label, names):
        fallback.update(names)
        return vmapped(model, x, targets, task_label, names)

    importance._vmap_squared_grads = recording  # the looped fallback is reached through it

    def fisher() -> None:
        exact_fisher_diagonal(model, ids, y, batch_size=args.documents)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(ids), y).backward()

    fisher_s, step_s = best_ms(fisher, repeats=3) / 1e3, best_ms(forward_backward, repeats=3) / 1e3
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"MiniLM + head, {parameters / 1e6:.1f} M parameters all trainable, {args.documents} documents x "
        f"{args.length} tokens, 1 thread"
    )
    print(f"parameters that took the fallback (vmap / per-sample loop): {sorted(fallback) or 'none'}")
    print(f"exact Fisher {fisher_s:.2f} s, forward + backward {step_s:.2f} s, ratio {fisher_s / step_s:.2f}")


if __name__ == "__main__":
    main()
