"""Parameters and multiply-accumulates of a genotype, in closed form.

Each part of the network (stem, one block, head, fc, classifier) is counted from its widths alone, so a
genotype costs microseconds to price: the budget-aware sampler and the search's repair step price
thousands of candidates. The convention is the field's and ``torch.utils.flop_counter``'s: MACs are
the multiply-accumulates of convolutions and linear layers at batch 1 and the genotype's resolution
(biases, BN, activations, pooling and the SE gate's product are not counted); params are every
trainable parameter. :func:`counted_cost` measures the same with ``FlopCounterMode`` on the meta device
and is the oracle the tests compare this closed form against, block kind by block kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from menas_zoo.space.genotype import BlockSpec, Genotype


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs}


def _out_size(size: int, stride: int) -> int:
    return -(-size // stride)  # 'same' padding with an odd kernel: ceil(size / stride)


def conv_bn_cost(in_chans: int, out_chans: int, kernel: int, out_size: int, groups: int = 1) -> Cost:
    """conv (no bias) + BN (weight, bias)."""
    weights = out_chans * (in_chans // groups) * kernel * kernel
    return Cost(weights + 2 * out_chans, weights * out_size * out_size)


def block_cost(in_chans: int, block: BlockSpec, in_size: int) -> Cost:
    """One inverted-residual block at input size ``in_size`` (see ``nets.InvertedResidual``)."""
    hidden = block.dw_channels(in_chans)
    out_size = _out_size(in_size, block.stride)
    cost = Cost(0, 0)
    if block.hidden is not None:
        cost += conv_bn_cost(in_chans, hidden, 1, in_size)
    cost += conv_bn_cost(hidden, hidden, block.kernel, out_size, groups=hidden)
    if block.se:  # two 1x1 convs with biases on the pooled (1x1) map
        cost += Cost(2 * hidden * block.se + block.se + hidden, 2 * hidden * block.se)
    return cost + conv_bn_cost(hidden, block.out, 1, out_size)


def linear_cost(in_features: int, out_features: int) -> Cost:
    return Cost(in_features * out_features + out_features, in_features * out_features)


def genotype_cost(genotype: Genotype) -> Cost:
    """Params and MACs of ``build_model(genotype)``, counted from the genotype alone."""
    size = _out_size(genotype.resolution, genotype.stem_stride)
    cost = conv_bn_cost(genotype.in_chans, genotype.stem, 3, size)
    for _, _, in_chans, block in genotype.blocks():
        cost += block_cost(in_chans, block, size)
        size = _out_size(size, block.stride)
    cost += conv_bn_cost(genotype.last_channels, genotype.head, 1, size)
    width = genotype.head
    if genotype.fc:
        cost += linear_cost(width, genotype.fc)
        width = genotype.fc
    return cost + linear_cost(width, genotype.num_classes)


def counted_cost(genotype: Genotype) -> Cost:
    """The same numbers measured by ``FlopCounterMode`` on the meta device (slow; the tests' oracle)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from menas_zoo.nets import build_model

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
