"""A trained child becomes its lottery ticket: a physically narrower network that enters the population.

1. masks: prune the globally smallest ``prune_ratio`` of hidden channels by depthwise-BN |gamma|
   (BN-L1 training has pushed the unimportant ones towards zero), keeping at least ``min_channels``
   per block (``slim.channel_masks``);
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
from menas_zoo.slim import Masks, channel_masks, mask_summary, materialize
from menas_zoo.train import TrainConfig, recalibrate_bn, train


@dataclass
class Ticket:
    model: MobileNetMT  # the materialized network (its genotype is the ticket's genotype)
    masks: Masks  # bool masks over the trained child's hidden channels
    finetune_epochs: int = 0

    @property
    def summary(self) -> dict[str, list[int]]:
        return mask_summary(self.masks)


def make_ticket(model: MobileNetMT, splits: DataSplits, *, prune_ratio: float = 0.2, min_channels: int = 8,
                channel_multiple: int = 8,
                rewind_state: dict[str, torch.Tensor] | None = None, finetune: TrainConfig | None = None,
                recalibrate: bool = True, seed: int = 0) -> Ticket:
    """Prune ``model`` (trained with BN-L1) into its ticket; ``model`` itself is left as it was."""
    device = next(model.parameters()).device
    masks = channel_masks(model, prune_ratio, min_channels, multiple_of=channel_multiple)
    source = model
    if rewind_state is not None:
        source = MobileNetMT(model.genotype, dropout=model.dropout.p).to(device)
        source.load_state_dict(rewind_state)
    slim = materialize(source, masks)
    if recalibrate:
        recalibrate_bn(slim, splits.train, device=device, seed=seed)
    epochs = 0
    if finetune is not None and finetune.epochs > 0:
        # A short, gentle run: no warm-up, no sparsity term (the structure is fixed now).
        cfg = dataclasses.replace(finetune, bn_l1=0.0, warmup_epochs=0.0, lr=finetune.resolved_lr() * 0.1)
        epochs = train(slim, splits, cfg, progress=False).epochs
    slim.eval()
    return Ticket(model=slim, masks=masks, finetune_epochs=epochs)
