"""Parameters and multiply-accumulates of a genotype, counted by ``torch.utils.flop_counter``.

The network is built on the meta device, so counting a 5M-parameter model costs milliseconds and no
memory, and results are cached per genotype (genotypes are hashable). MACs are the counter's FLOPs / 2
at batch 1 and the genotype's resolution: convolutions and linear layers, as the field reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from menas_zoo.nets import build_model
from menas_zoo.space.genotype import Genotype


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs}


@lru_cache(maxsize=4096)
def genotype_cost(genotype: Genotype) -> Cost:
    with torch.device("meta"):
        model = build_model(genotype).eval()
        x = torch.empty(1, genotype.in_chans, genotype.resolution, genotype.resolution)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(x)
    return Cost(params=params, macs=counter.get_total_flops() // 2)


def count_params(genotype: Genotype) -> int:
    return genotype_cost(genotype).params


def count_macs(genotype: Genotype) -> int:
    return genotype_cost(genotype).macs


def human(n: float) -> str:
    """1234567 -> '1.23M' (for tables)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))
