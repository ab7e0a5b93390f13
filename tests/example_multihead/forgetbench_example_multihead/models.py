"""A small CNN trunk shared by every task, one linear head per task (Avalanche's MultiHeadClassifier)."""

from __future__ import annotations

from avalanche.models import MultiHeadClassifier, MultiTaskModule
from torch import nn


class MultiHeadCNN(MultiTaskModule):
    def __init__(self, channels: int = 16, hidden: int = 64, classes_per_head: int = 2):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(),
        )
        self.classifier = MultiHeadClassifier(hidden, initial_out_features=classes_per_head)

    def forward_single_task(self, x, task_label):
        return self.classifier(self.trunk(x), task_label)

    def used_parameter_names(self, task_label):
        """Optional: only read with `used_params: declared` (by default forgetbench finds these itself)."""
        head = f"classifier.classifiers.{task_label}."
        return {n for n, _ in self.named_parameters() if n.startswith("trunk.") or n.startswith(head)}


def make_model(channels: int = 16, hidden: int = 64, classes_per_head: int = 2) -> MultiHeadCNN:
    return MultiHeadCNN(channels, hidden, classes_per_head)
