"""How quantities are written for people: one formatter per unit, shared by the terminal, errors and reports."""

from __future__ import annotations


def format_bytes(value: float, signed: bool = False) -> str:
    """``812 B``, ``1.5 KB``, ``44.7 TB``: 1024-based, one decimal above bytes; ``signed`` writes a ``+``."""
    sign = "+" if signed and value > 0 else ("-" if value < 0 else "")
    v = abs(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if v < 1024 or unit == "TB":
            return f"{sign}{v:.0f} {unit}" if unit == "B" else f"{sign}{v:.1f} {unit}"
        v /= 1024
    return ""  # unreachable


def display_scale(unit: str | None) -> float:
    """The factor from a metric's stored value to how it is written: accuracies and accuracy errors (stored as
    fractions) in points, x100; every other unit (seconds, nats, tau, bytes) as stored."""
    return 100.0 if unit == "accuracy" else 1.0
