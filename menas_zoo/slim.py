"""Network slimming: the structural half of a lottery ticket.

Only hidden (expanded) channels of blocks with an expand conv are prunable: they live inside one
block, so removing one touches the expand conv, both BNs, the depthwise conv, the SE and the projection
of that block alone. A channel's importance is the |gamma| of the depthwise BN, the gate right before
the projection; the BN-gamma L1 penalty (network slimming) pushes the unimportant ones towards zero.

A mask is a bool tensor over a block's hidden channels (True = keep), keyed by the block's module name
(``stages.1.0``). Two views of one ticket agree to float precision (tests prove it per block kind):

* masked dense: :func:`apply_masks` zeroes gamma and beta of the pruned depthwise-BN channels, so those
  channels are exactly 0 after relu/h-swish and feed nothing downstream;
* materialized: :func:`materialize` returns a physically narrower genotype and network with sliced weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from menas_zoo.errors import MenasError, first_line
from menas_zoo.nets import InvertedResidual, MobileNetMT, build_model
from menas_zoo.space.genotype import Genotype

Masks = dict[str, torch.Tensor]
#: How a ticket's pruned channels are shared among blocks: by one global |gamma| threshold, or the same
#: fraction in every block.
ALLOCATIONS = ("global", "uniform")


def prunable_blocks(model: MobileNetMT) -> dict[str, InvertedResidual]:
    """Blocks whose hidden channels can be pruned (those with an expand conv), by module name."""
    return {f"stages.{s}.{b}": block for s, b, block in model.blocks() if not isinstance(block.expand, nn.Identity)}


def hidden_bns(model: MobileNetMT) -> dict[str, nn.BatchNorm2d]:
    """The depthwise BN of each prunable block: its |gamma| ranks the hidden channels."""
    return {name: block.dw.bn for name, block in prunable_blocks(model).items()}


def bn_l1_penalty(model: MobileNetMT) -> torch.Tensor:
    """Sum of |gamma| over prunable hidden channels (network slimming's sparsity term)."""
    terms = [bn.weight.abs().sum() for bn in hidden_bns(model).values()]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def channel_masks(model: MobileNetMT, prune_ratio: float, min_channels: int = 8, multiple_of: int = 8,
                  allocation: str = "global") -> Masks:
    """Global pruning: drop the ``prune_ratio`` fraction of hidden channels with the smallest |gamma|,
    keeping at least ``min_channels`` (or all, if fewer) in every block. With ``allocation="uniform"``
    every block drops that fraction of its own channels instead (layer-wise pruning): |gamma| picks which
    channels, not how many, so the ticket keeps its parent's allocation of widths.

    Each block's kept count is then rounded to the nearest multiple of ``multiple_of`` (taking the next
    channels by |gamma|): ONNX Runtime's CPU convolutions and GPU tensor cores work in blocks of 8
    channels, and a ticket with odd widths measured 2-3x slower than its wider parent. ``multiple_of=1``
    keeps the exact global threshold.
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise MenasError(f"prune ratio must be in [0, 1), got {prune_ratio}")
    if allocation not in ALLOCATIONS:
        raise MenasError(f"unknown ticket allocation {allocation!r}; use one of {', '.join(ALLOCATIONS)}")
    gammas = {name: bn.weight.detach().abs().float().cpu() for name, bn in hidden_bns(model).items()}
    if not gammas:
        return {}
    everything = torch.cat(list(gammas.values()))
    n_prune = int(prune_ratio * everything.numel())
    threshold = everything.sort().values[n_prune - 1] if n_prune > 0 else -1.0
    masks = {}
    for name, gamma in gammas.items():
        if allocation == "global":
            kept = int((gamma > threshold).sum())
        else:
            kept = gamma.numel() - int(prune_ratio * gamma.numel())
        if multiple_of > 1:
            kept = max(multiple_of, int(kept / multiple_of + 0.5) * multiple_of)  # nearest, halves up
        masks[name] = _largest(gamma, min(gamma.numel(), max(kept, min_channels)))
    return masks


def top_channels(model: MobileNetMT, widths: dict[str, int]) -> Masks:
    """Masks that keep ``widths[block]`` hidden channels of each named block: those with the largest |gamma|."""
    bns = hidden_bns(model)
    unknown = sorted(set(widths) - set(bns))
    if unknown:
        raise MenasError(f"no prunable block {', '.join(unknown)} (have: {', '.join(bns) or 'none'})")
    masks = {}
    for name, kept in widths.items():
        gamma = bns[name].weight.detach().abs().float().cpu()
        if not 0 < kept <= gamma.numel():
            raise MenasError(f"{name} has {gamma.numel()} hidden channels: cannot keep {kept}")
        masks[name] = _largest(gamma, kept)
    return masks


def _largest(gamma: torch.Tensor, kept: int) -> torch.Tensor:
    keep = torch.zeros_like(gamma, dtype=torch.bool)
    keep[gamma.topk(kept).indices] = True
    return keep


def mask_summary(masks: Masks) -> dict[str, list[int]]:
    """``{block: [kept, total]}``: the prune summary stored in configs and reports."""
    return {name: [int(m.sum()), int(m.numel())] for name, m in masks.items()}


@torch.no_grad()
def apply_masks(model: MobileNetMT, masks: Masks) -> MobileNetMT:
    """Zero the pruned hidden channels in place (the masked dense view of the ticket)."""
    bns = hidden_bns(model)
    _check_masks(bns, masks)
    for name, mask in masks.items():
        pruned = ~mask.to(bns[name].weight.device)
        bns[name].weight[pruned] = 0.0
        bns[name].bias[pruned] = 0.0
    return model


def slim_genotype(genotype: Genotype, masks: Masks) -> Genotype:
    """The genotype of the materialized ticket: each masked block's ``h`` becomes its kept count."""
    stages = []
    for s, stage in enumerate(genotype.stages):
        blocks = []
        for b, block in enumerate(stage):
            mask = masks.get(f"stages.{s}.{b}")
            if mask is not None:
                if block.hidden is None:
                    raise MenasError(f"stages.{s}.{b} has no expand conv: its channels are not prunable")
                block = block.__class__(**{**block.__dict__, "hidden": int(mask.sum())})
            blocks.append(block)
        stages.append(tuple(blocks))
    return genotype.replace(stages=tuple(stages))


@torch.no_grad()
def materialize(model: MobileNetMT, masks: Masks) -> MobileNetMT:
    """Build the physically narrower network and copy the kept slices of every tensor into it."""
    _check_masks(hidden_bns(model), masks)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        idx = mask.nonzero().flatten().to(next(model.parameters()).device)
        for key in list(state):
            if not key.startswith(name + "."):
                continue
            part = key[len(name) + 1:]
            if part.startswith(("expand.", "dw.")) and not part.endswith("num_batches_tracked"):
                state[key] = state[key].index_select(0, idx)  # hidden channels are the out dim
            elif part == "se.reduce.weight" or part == "project.conv.weight":
                state[key] = state[key].index_select(1, idx)  # hidden channels are the in dim
            elif part in ("se.expand.weight", "se.expand.bias"):
                state[key] = state[key].index_select(0, idx)
    slim = build_model(slim_genotype(model.genotype, masks), dropout=model.dropout.p)
    slim.load_state_dict(state, strict=True)
    return slim.to(next(model.parameters()).device).train(model.training)


def load_masks(path: str | Path, parent: Genotype | None = None) -> Masks:
    """Read a masks file (an artifact's masks.safetensors, which ``menas_zoo.artifact`` writes): 1-D bool
    tensors only. With ``parent``, each must name one of its prunable blocks and have that block's hidden
    width (checked on the header, before any tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = {k: (fh.get_slice(k).get_dtype(), fh.get_slice(k).get_shape()) for k in fh.keys()}
        for name, (dtype, shape) in header.items():
            if dtype != "BOOL" or len(shape) != 1:
                raise MenasError(f"{path}: mask {name} must be a 1-D bool tensor, got {dtype} of shape {tuple(shape)}")
        if parent is not None:
            check_masks_fit(parent, {name: shape[0] for name, (_, shape) in header.items()}, where=str(path))
        masks = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise MenasError(f"cannot read masks from {path}: {first_line(exc)}") from None
    for name, mask in masks.items():
        if not mask.any():
            raise MenasError(f"{path}: mask {name} prunes every channel")
    return masks


def check_masks_fit(genotype: Genotype, lengths: dict[str, int], where: str = "masks") -> None:
    """Each mask (by block name, with its length) must cover the hidden channels of a prunable block."""
    hidden = {f"stages.{s}.{b}": block.hidden for s, b, _, block in genotype.blocks() if block.hidden is not None}
    for name, length in lengths.items():
        if name not in hidden:
            raise MenasError(f"{where}: mask for {name!r} matches no prunable block of the parent genotype "
                             f"(have: {', '.join(hidden) or 'none'})")
        if length != hidden[name]:
            raise MenasError(f"{where}: mask for {name} has {length} entries, but the block has {hidden[name]} "
                             "hidden channels")


def _check_masks(bns: dict[str, nn.BatchNorm2d], masks: Masks) -> None:
    for name, mask in masks.items():
        if name not in bns:
            raise MenasError(f"mask for {name!r} matches no prunable block (have: {', '.join(bns) or 'none'})")
        if mask.dtype != torch.bool or mask.shape != bns[name].weight.shape:
            raise MenasError(f"mask for {name} must be bool of shape {tuple(bns[name].weight.shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if not mask.any():
            raise MenasError(f"mask for {name} prunes every channel; keep at least one")
