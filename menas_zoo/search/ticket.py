"""A trained child becomes its lottery ticket: a physically narrower network that enters the population.

1. masks: prune the globally smallest ``prune_ratio`` of hidden channels by depthwise-BN |gamma|
   (sparsity training has pushed the unimportant ones towards zero), or that fraction of every block's
   channels (``allocation="uniform"``: |gamma| then picks which channels, not how many), keeping at
   least ``min_channels`` per block and rounding kept counts to ``channel_multiple``
   (``slim.channel_masks``). Rounding moves the real fraction away from the one asked, so the ratio
   asked of ``channel_masks`` is searched until the fraction really pruned is the closest to
   ``prune_ratio`` (:func:`ticket_masks`); with a cost budget, the fraction is raised step by step (up
   to ``max_ratio``) until the ticket fits: *prune to fit*;
2. optionally rewind: load an early snapshot of the weights before slicing (lottery-ticket rewinding);
3. materialize the narrower genotype and network with the kept slices (``slim.materialize``);
4. recalibrate BN statistics, which no longer fit the sliced network;
5. optionally fine-tune briefly (needed after rewinding, helpful otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from menas_zoo.data import DataSplits
from menas_zoo.nets import MobileNetMT
from menas_zoo.costs import genotype_cost
from menas_zoo.slim import Masks, channel_masks, mask_summary, materialize, slim_genotype
from menas_zoo.space.budget import Budget
from menas_zoo.train import TrainConfig, recalibrate_bn, train

#: Thresholds tried when searching for the real pruned fraction (global ratios before rounding).
_RATIO_GRID = [i / 100 for i in range(0, 96)]


def pruned_fraction(masks: Masks) -> float:
    """The fraction of prunable hidden channels a set of masks really removes."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


def ticket_masks(model: MobileNetMT, prune_ratio: float, *, min_channels: int = 8, channel_multiple: int = 8,
                 budget: Budget | None = None, max_ratio: float = 0.6, ratio_step: float = 0.05,
                 allocation: str = "global") -> Masks:
    """Masks that really prune the fraction closest to ``prune_ratio``; with ``budget``, the smallest
    fraction (from ``prune_ratio`` up to ``max_ratio``) whose ticket fits, or the ``max_ratio`` one."""
    candidates = {}
    for r in _RATIO_GRID:
        masks = channel_masks(model, r, min_channels, multiple_of=channel_multiple, allocation=allocation)
        candidates.setdefault(round(pruned_fraction(masks), 6), masks)
    fractions = sorted(candidates)

    def closest(target: float) -> Masks:
        return candidates[min(fractions, key=lambda f: (abs(f - target), f))]

    target, masks = prune_ratio, closest(prune_ratio)
    if budget:
        while budget.usage(genotype_cost(slim_genotype(model.genotype, masks))) > 1.0 and target < max_ratio - 1e-9:
            target = min(max_ratio, target + ratio_step)
            masks = closest(target)
    return masks


@dataclass
class Ticket:
    model: MobileNetMT  # the materialized network (its genotype is the ticket's genotype)
    masks: Masks  # bool masks over the trained child's hidden channels
    finetune_epochs: int = 0

    @property
    def summary(self) -> dict[str, list[int]]:
        return mask_summary(self.masks)

    @property
    def pruned_fraction(self) -> float:
        return pruned_fraction(self.masks)


def make_ticket(model: MobileNetMT, splits: DataSplits, *, prune_ratio: float = 0.2, min_channels: int = 8,
                channel_multiple: int = 8, budget: Budget | None = None, max_ratio: float = 0.6,
                rewind_state: dict[str, torch.Tensor] | None = None, finetune: TrainConfig | None = None,
                recalibrate: bool = True, seed: int = 0, recalibration_batches: int = 10,
                allocation: str = "global") -> Ticket:
    """Prune ``model`` (trained with BN sparsity) into its ticket; ``model`` itself is left as it was."""
    device = next(model.parameters()).device
    masks = ticket_masks(model, prune_ratio, min_channels=min_channels, channel_multiple=channel_multiple,
                         budget=budget, max_ratio=max_ratio, allocation=allocation)
    source = model
    if rewind_state is not None:
        source = MobileNetMT(model.genotype, dropout=model.dropout.p).to(device)
        source.load_state_dict(rewind_state)
    slim = materialize(source, masks)
    if recalibrate:
        recalibrate_bn(slim, splits.train, batches=recalibration_batches, device=device, seed=seed)
    epochs = 0
    if finetune is not None and finetune.epochs > 0:
        # A short, gentle run: no warm-up, no sparsity term (the structure is fixed now).
        cfg = dataclasses.replace(finetune, bn_l1=0.0, warmup_epochs=0.0, lr=finetune.resolved_lr() * 0.1)
        epochs = train(slim, splits, cfg, progress=False).epochs
    slim.eval()
    return Ticket(model=slim, masks=masks, finetune_epochs=epochs)
