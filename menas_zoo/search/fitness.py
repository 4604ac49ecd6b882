"""Fitness: validation accuracy under a cost constraint (MACs, parameters, latency).

The accuracy is measured on the validation split carved from the training set, never on the test
split. A constraint is either a hard limit (children over it are rejected before any training, and a
measured ticket over it ranks below every feasible one) or a MnasNet-style soft penalty::

    fitness = accuracy x prod over exceeded limits of (cost / limit) ** -w

Only costs over their limit are penalized, so "best fitness" keeps meaning "best accuracy under the
limit" for every feasible model. Latency comes from an injected function (model -> milliseconds);
``run.py`` imports the exporter's ONNX Runtime measurement (``menas_zoo.export.latency``) only when a
latency limit is set and no function is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

LatencyFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class CostLimits:
    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    penalty: float | None = None  # None: hard limits

    @property
    def hard(self) -> bool:
        return self.penalty is None

    def ratios(self, macs: int, params: int, latency_ms: float | None = None) -> dict[str, float]:
        """cost / limit for every limit that is set (and measured)."""
        out = {}
        for name, cost, limit in (("macs", macs, self.max_macs), ("params", params, self.max_params),
                                  ("latency_ms", latency_ms, self.max_latency_ms)):
            if limit is not None and cost is not None:
                out[name] = cost / limit
        return out

    def violations(self, macs: int, params: int, latency_ms: float | None = None) -> list[str]:
        return [name for name, ratio in self.ratios(macs, params, latency_ms).items() if ratio > 1.0]

    def fits(self, macs: int, params: int, latency_ms: float | None = None) -> bool:
        return not self.violations(macs, params, latency_ms)

    def fitness(self, accuracy: float, macs: int, params: int, latency_ms: float | None = None) -> float:
        over = [r for r in self.ratios(macs, params, latency_ms).values() if r > 1.0]
        if not over:
            return accuracy
        if self.hard:
            # Ranks below every feasible model while keeping infeasible ones ordered by accuracy; finite,
            # so trials.jsonl stays plain JSON.
            return accuracy - 1.0
        return accuracy * math.prod(r ** -self.penalty for r in over)
