"""Fitting genotypes to a cost budget: shrink (repair) and grow moves over a profile's choice sets.

A random draw from a profile rarely lands where a size class wants it (1 in 26 ``tiny`` draws fits under
100K params, none of ``small``'s). Instead of redrawing, a draw is *fitted*: each move changes one gene
by one step of its choice set (a stage one width narrower, a block one expansion smaller, SE off, a
smaller kernel, a stage one block shallower, a narrower stem, head or fc), and every move is priced in
closed form (``costs.py``, microseconds). Shrinking takes, among the moves that save the most, a random
one (the costliest genes go first, so no stage is starved), and stops at a target drawn uniformly in
``[low, 1.0]`` of the limit, so fitted genotypes spread over the budget instead of piling at its small
end. A draw already under ``low`` grows by random moves that stay under the target.

The same shrink repairs mutation and crossover children that came out over a limit.

:func:`widen_hidden` is the other direction for a pruned genotype: it scales every hidden width by one
factor, the largest that still fits up to a cap (MorphNet's expand step, Gordon et al. 2018): the
per-block allocation a ticket learned is kept while the width its pruning gave up is spent again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from menas_zoo.costs import Cost, genotype_cost
from menas_zoo.errors import GenotypeError
from menas_zoo.space.genotype import BlockSpec, Genotype, default_se_width, make_divisible


@dataclass(frozen=True)
class Budget:
    """Hard limits on params and/or MACs (None: no limit)."""

    max_params: int | None = None
    max_macs: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_params", "max_macs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GenotypeError(f"--{name.replace('_', '-')} must be positive, got {value:g}")

    def __bool__(self) -> bool:
        return self.max_params is not None or self.max_macs is not None

    def usage(self, cost: Cost) -> float:
        """The largest cost/limit ratio (0 without limits): <= 1.0 means the genotype fits."""
        ratios = [cost.params / self.max_params if self.max_params else 0.0,
                  cost.macs / self.max_macs if self.max_macs else 0.0]
        return max(ratios)

    def fits(self, genotype: Genotype) -> bool:
        return self.usage(genotype_cost(genotype)) <= 1.0

    def describe(self) -> str:
        parts = [f"{name} {value:,}" for name, value in (("params", self.max_params), ("MACs", self.max_macs)) if value]
        return " and ".join(parts)


def _smaller(choices, current):
    below = [c for c in choices if c < current]
    return max(below) if below else None


def _larger(choices, current):
    above = [c for c in choices if c > current]
    return min(above) if above else None


def _with_hidden(block: BlockSpec, hidden: int) -> BlockSpec:
    se = default_se_width(hidden) if block.se else 0
    return BlockSpec(block.kernel, block.out, block.stride, hidden, se, block.act)


def _set_block(g: Genotype, s: int, b: int, block: BlockSpec) -> Genotype:
    stage = g.stages[s][:b] + (block,) + g.stages[s][b + 1:]
    return g.replace(stages=g.stages[:s] + (stage,) + g.stages[s + 1:])


def set_hidden_widths(genotype: Genotype, widths: dict[tuple[int, int], int]) -> Genotype:
    """``genotype`` with the hidden width of each block ``(stage, index)`` in ``widths`` replaced (its SE
    squeeze width follows, as MobileNetV3 sizes it); blocks without an expand conv are left alone."""
    for (s, b), hidden in widths.items():
        block = genotype.stages[s][b]
        if block.hidden is not None and hidden != block.hidden:
            genotype = _set_block(genotype, s, b, _with_hidden(block, hidden))
    return genotype


def _set_stage_width(g: Genotype, s: int, out: int) -> Genotype:
    stage = tuple(BlockSpec(b.kernel, out, b.stride, b.hidden, b.se, b.act) for b in g.stages[s])
    return g.replace(stages=g.stages[:s] + (stage,) + g.stages[s + 1:])


def _moves(g: Genotype, profile, direction: int, rng: random.Random) -> Iterator[Genotype]:
    """Every genotype one gene-step away from ``g``: narrower/cheaper (direction -1) or wider (+1)."""
    step = _smaller if direction < 0 else _larger
    if (stem := step(profile.stem_choices, g.stem)) is not None:
        yield g.replace(stem=stem)
    if (head := step(profile.head_choices, g.head)) is not None:
        yield g.replace(head=head)
    if (fc := step(profile.fc_choices, g.fc)) is not None:
        yield g.replace(fc=fc)
    for s, stage in enumerate(g.stages):
        widths = profile.stage_width_choices(min(s, len(profile.base_widths) - 1))
        if (out := step(widths, stage[-1].out)) is not None:
            yield _set_stage_width(g, s, out)
        if direction < 0 and len(stage) > 1:
            yield g.replace(stages=g.stages[:s] + (stage[:-1],) + g.stages[s + 1:])
        if direction > 0 and len(stage) < profile.max_depth:
            from menas_zoo.space.sampling import sample_block

            new = sample_block(profile, rng, stage[-1].out, stage[-1].out, 1)
            yield g.replace(stages=g.stages[:s] + (stage + (new,),) + g.stages[s + 1:])
    for s, b, in_chans, block in g.blocks():
        if block.hidden is not None:
            hidden_choices = sorted({make_divisible(in_chans * e) for e in profile.expansions})
            if (hidden := step(hidden_choices, block.hidden)) is not None:
                yield _set_block(g, s, b, _with_hidden(block, hidden))
        if (kernel := step(profile.kernels, block.kernel)) is not None:
            yield _set_block(g, s, b, BlockSpec(kernel, block.out, block.stride, block.hidden, block.se, block.act))
        if direction < 0 and block.se:
            yield _set_block(g, s, b, BlockSpec(block.kernel, block.out, block.stride, block.hidden, 0, block.act))
        if direction > 0 and not block.se:
            se = default_se_width(block.dw_channels(in_chans))
            yield _set_block(g, s, b, BlockSpec(block.kernel, block.out, block.stride, block.hidden, se, block.act))


def shrink(genotype: Genotype, profile, budget: Budget, rng: random.Random, target: float = 1.0,
           low: float = 0.0) -> Genotype:
    """Cheapen ``genotype`` move by move until its usage is <= ``target`` (ideally >= ``low``).

    Raises :class:`GenotypeError` when no move is left and the genotype still does not fit.
    """
    g, usage = genotype, budget.usage(genotype_cost(genotype))
    while usage > target:
        priced = [(budget.usage(genotype_cost(m)), m) for m in _moves(g, profile, -1, rng)]
        if not priced:
            if usage <= 1.0:  # under the limit, only short of the drawn target
                break
            raise GenotypeError(f"no genotype of profile {profile.name!r} fits {budget.describe()}: the smallest "
                                f"reachable one uses {usage:.0%} of it; use a smaller profile or a larger limit")
        landing = [(u, m) for u, m in priced if low <= u <= target]
        if landing:
            usage, g = rng.choice(landing)
            break
        priced.sort(key=lambda um: um[0])
        usage, g = rng.choice(priced[:3])  # among the biggest savings: the costliest genes shrink first
    return g


def grow(genotype: Genotype, profile, budget: Budget, rng: random.Random, target: float, low: float) -> Genotype:
    """Widen ``genotype`` by random moves that stay under ``target`` until its usage reaches ``low``."""
    g, usage = genotype, budget.usage(genotype_cost(genotype))
    while usage < low:
        priced = [(budget.usage(genotype_cost(m)), m) for m in _moves(g, profile, +1, rng)]
        priced = [(u, m) for u, m in priced if u <= target]
        if not priced:
            break
        usage, g = rng.choice(priced)
    return g


def widen_hidden(genotype: Genotype, budget: Budget, *, max_factor: float, multiple: int = 8,
                 tolerance: float = 1e-3) -> Genotype:
    """Every hidden width times one factor in ``[1, max_factor]``, the largest for which the genotype
    still fits ``budget`` (widths rounded to ``multiple``, never narrower than they were). Without a
    params/MACs limit, ``max_factor`` is used; a genotype already over the limit is returned as it is."""
    def scaled(factor: float) -> Genotype:
        g = genotype
        for s, b, _, block in genotype.blocks():
            if block.hidden is None:
                continue
            hidden = max(block.hidden, multiple * round(block.hidden * factor / multiple))
            if hidden != block.hidden:
                g = _set_block(g, s, b, _with_hidden(block, hidden))
        return g

    def fits(g: Genotype) -> bool:
        return budget.usage(genotype_cost(g)) <= 1.0

    if not budget:
        return scaled(max_factor)
    if not fits(genotype):
        return genotype
    if fits(widest := scaled(max_factor)):
        return widest
    low, high = 1.0, max_factor  # the cost grows with the factor: bisect between fitting and not
    while high - low > tolerance:
        mid = (low + high) / 2
        low, high = (mid, high) if fits(scaled(mid)) else (low, mid)
    return scaled(low)


def scale_widths(genotype: Genotype, factor: float, multiple: int = 8) -> Genotype:
    """Every width (stem, block outputs, hidden and squeeze widths, head and fc) times ``factor``, rounded
    to ``multiple``: MobileNet's width multiplier, applied to a found genotype. Blocks of one width stay of
    one width, so every residual shortcut is kept."""
    if factor <= 0:
        raise GenotypeError(f"a width factor must be positive, got {factor}")

    def w(width: int) -> int:
        return make_divisible(width * factor, multiple) if width else width

    def block(b: BlockSpec) -> BlockSpec:
        return BlockSpec(b.kernel, w(b.out), b.stride, None if b.hidden is None else w(b.hidden), w(b.se), b.act)

    stages = tuple(tuple(block(b) for b in stage) for stage in genotype.stages)
    return genotype.replace(stem=w(genotype.stem), stages=stages, head=w(genotype.head), fc=w(genotype.fc))


def fit_to_budget(genotype: Genotype, profile, budget: Budget, rng: random.Random, low: float = 0.6) -> Genotype:
    """Fit a fresh draw into ``[low, 1.0]`` of the budget at a target drawn uniformly in that range."""
    if not budget:
        return genotype
    target = rng.uniform(low, 1.0)
    usage = budget.usage(genotype_cost(genotype))
    if usage > target:
        return shrink(genotype, profile, budget, rng, target=target, low=low)
    if usage < low:
        return grow(genotype, profile, budget, rng, target=target, low=low)
    return genotype


def smallest_genotype(profile, *, in_chans: int = 1, num_classes: int = 10, resolution: int | None = None) -> Genotype:
    """The cheapest genotype a profile can draw: the floor under which no budget can be met."""
    stages, in_ch = [], min(profile.stem_choices)
    for s, stride in enumerate(profile.stage_strides):
        out = min(profile.stage_width_choices(s))
        hidden = make_divisible(in_ch * min(profile.expansions))
        stages.append((BlockSpec(min(profile.kernels), out, stride, hidden, 0, profile.activations[0]),))
        in_ch = out
    return Genotype(stem=min(profile.stem_choices), stages=tuple(stages), head=min(profile.head_choices),
                    fc=min(profile.fc_choices), in_chans=in_chans, num_classes=num_classes,
                    resolution=resolution or profile.resolution, profile=profile.name,
                    stem_stride=profile.stem_stride)


def check_feasible(profile, budget: Budget, **globals_) -> None:
    """A plain error when even the profile's smallest genotype is over the budget."""
    if not budget:
        return
    floor = smallest_genotype(profile, **globals_)
    cost = genotype_cost(floor)
    if budget.usage(cost) > 1.0:
        raise GenotypeError(f"no genotype of profile {profile.name!r} fits {budget.describe()}: its smallest has "
                            f"{cost.params:,} params and {cost.macs:,} MACs; raise the limit or use a smaller profile")
