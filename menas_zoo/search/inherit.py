"""Individual weight sharing: a child starts from its parent's ticket weights wherever it can.

Tensors are matched by module name (``stages.S.B.dw.conv.weight``; nets.py keeps names stable) and each
dimension by the *channel space* it indexes: the stem width, a stage's width (shared by every block of
the stage, so residual sums stay aligned), a block's hidden width, its SE width, the head, the fc.
Per space, one selection of parent channels is made and used for every tensor that touches it:

* same size     -> copy;
* fewer         -> keep the parent channels with the largest BN |gamma| (the importance slimming uses);
* more          -> copy all parent channels, the rest keep their fresh initialization;
* kernel        -> smaller: centre crop; larger: zero pad (the parent's function is kept);
* new block     -> fresh, with the residual branch's last BN gamma = 0, so the block is the identity.

A tensor whose spaces mean different things in parent and child (a classifier that reads the head in
one and the fc in the other) keeps its fresh initialization.

A crossover child has two parents: ``keys`` restricts one call to some tensors, so the child takes each
stage's weights from the parent that gave the stage (``stage_keys``) and everything else from the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from menas_zoo.nets import MobileNetMT
from menas_zoo.space.genotype import Genotype

KERNEL = "kernel"  # a spatial dimension: cropped or padded, not selected
FIXED = ("input", "classes", "depthwise")  # spaces that never change size within a search
BN_STATS = ("weight", "bias", "running_mean", "running_var")
#: BNs whose |gamma| ranks the channels of the space they produce (dw.bn ranks hidden channels, as in slim.py).
IMPORTANCE_BNS = ("stem.bn.weight", "dw.bn.weight", "project.bn.weight", "head.bn.weight")


@dataclass
class InheritReport:
    copied: int = 0  # tensors copied unchanged
    adapted: int = 0  # tensors cropped, padded or channel-selected
    fresh: int = 0  # tensors left at their initialization
    new_blocks: list[str] = field(default_factory=list)  # blocks started as the identity

    def as_dict(self) -> dict:
        return {"copied": self.copied, "adapted": self.adapted, "fresh": self.fresh, "new_blocks": self.new_blocks}


def channel_spaces(genotype: Genotype) -> dict[str, tuple[str, ...]]:
    """For every state-dict key of ``build_model(genotype)``: the channel space of each dimension."""
    spaces: dict[str, tuple[str, ...]] = {}

    def conv_bn(prefix: str, out: str, inp: str) -> None:
        spaces[f"{prefix}.conv.weight"] = (out, inp, KERNEL, KERNEL)
        for stat in BN_STATS:
            spaces[f"{prefix}.bn.{stat}"] = (out,)
        spaces[f"{prefix}.bn.num_batches_tracked"] = ()

    conv_bn("stem", "stem", "input")
    in_space = "stem"
    for s, b, _, block in genotype.blocks():
        p = f"stages.{s}.{b}"
        hidden = f"hidden{s}.{b}" if block.hidden is not None else in_space
        if block.hidden is not None:
            conv_bn(f"{p}.expand", hidden, in_space)
        conv_bn(f"{p}.dw", hidden, "depthwise")
        if block.se:
            se = f"se{s}.{b}"
            spaces[f"{p}.se.reduce.weight"] = (se, hidden, KERNEL, KERNEL)
            spaces[f"{p}.se.reduce.bias"] = (se,)
            spaces[f"{p}.se.expand.weight"] = (hidden, se, KERNEL, KERNEL)
            spaces[f"{p}.se.expand.bias"] = (hidden,)
        in_space = f"stage{s}"
        conv_bn(f"{p}.project", in_space, hidden)
    conv_bn("head", "head", in_space)
    if genotype.fc:
        spaces["fc.0.weight"] = ("fc", "head")
        spaces["fc.0.bias"] = ("fc",)
    features = "fc" if genotype.fc else "head"
    spaces["classifier.weight"] = ("classes", features)
    spaces["classifier.bias"] = ("classes",)
    return spaces


def stage_keys(stages: Iterable[int]) -> Callable[[str], bool]:
    """A ``keys`` filter for the state-dict entries of the given stages (``stages.S.*``)."""
    prefixes = tuple(f"stages.{s}." for s in stages)
    return lambda key: bool(prefixes) and key.startswith(prefixes)


@torch.no_grad()
def inherit_weights(child: MobileNetMT, parent_state: dict[str, torch.Tensor], parent_genotype: Genotype,
                    keys: Callable[[str], bool] | None = None) -> InheritReport:
    """Initialize ``child`` in place from its parent's weights; see the module doc for the rules.
    With ``keys``, only the child's tensors it accepts are touched."""
    child_spaces, parent_spaces = channel_spaces(child.genotype), channel_spaces(parent_genotype)
    selector = _ChannelSelector(parent_state, parent_spaces)
    state = child.state_dict()
    report = InheritReport()
    for key, target in state.items():
        if keys is not None and not keys(key):
            continue
        source = parent_state.get(key)
        names, parent_names = child_spaces.get(key), parent_spaces.get(key)
        if source is None or names is None or names != parent_names or source.ndim != target.ndim:
            report.fresh += 1
            continue
        if any(n in FIXED and source.shape[d] != target.shape[d] for d, n in enumerate(names)):
            report.fresh += 1
            continue
        source = source.to(target.device, target.dtype)
        if source.shape == target.shape:
            target.copy_(source)
            report.copied += 1
            continue
        positions = []
        for d, name in enumerate(names):
            if name == KERNEL:
                source = _fit_kernel(source, d, target.shape[d])
                positions.append(torch.arange(target.shape[d]))
            elif name in FIXED:
                positions.append(torch.arange(target.shape[d]))
            else:
                child_pos, parent_pos = selector(name, source.shape[d], target.shape[d])
                source = source.index_select(d, parent_pos.to(source.device))
                positions.append(child_pos)
        index = torch.meshgrid(*[p.to(target.device) for p in positions], indexing="ij")
        target[index] = source
        report.adapted += 1
    child.load_state_dict(state)
    parent_blocks = {".".join(k.split(".")[:3]) for k in parent_state if k.startswith("stages.")}
    for s, b, block in child.blocks():
        name = f"stages.{s}.{b}"
        if keys is not None and not keys(f"{name}.dw.conv.weight"):
            continue
        if name not in parent_blocks:
            report.new_blocks.append(name)
            if block.has_shortcut:  # zero residual branch: x + 0 = x, the parent's function is unchanged
                block.project.bn.weight.zero_()
                block.project.bn.bias.zero_()
    return report


def _fit_kernel(weight: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Centre-crop or zero-pad one spatial dimension of ``weight`` to ``size``."""
    have = weight.shape[dim]
    if have > size:
        return weight.narrow(dim, (have - size) // 2, size)
    if have < size:
        pad = [0, 0] * weight.ndim  # F.pad lists dims from the last one backwards
        before = (size - have) // 2
        pad[2 * (weight.ndim - 1 - dim)] = before
        pad[2 * (weight.ndim - 1 - dim) + 1] = size - have - before
        return F.pad(weight, pad)
    return weight


class _ChannelSelector:
    """One selection of parent channels per (space, parent size, child size), shared by every tensor."""

    def __init__(self, parent_state: dict[str, torch.Tensor], parent_spaces: dict[str, tuple[str, ...]]):
        self.state, self.spaces = parent_state, parent_spaces
        self.cache: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, space: str, parent_size: int, child_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (space, parent_size, child_size)
        if key not in self.cache:
            if child_size >= parent_size:
                kept = torch.arange(parent_size)
                self.cache[key] = (kept, kept)
            else:
                importance = self.importance(space, parent_size)
                kept = importance.topk(child_size).indices.sort().values  # keep the parent's channel order
                self.cache[key] = (torch.arange(child_size), kept)
        return self.cache[key]

    def importance(self, space: str, size: int) -> torch.Tensor:
        """Summed |gamma| of the BNs producing ``space`` (a stage's blocks all add into it); spaces without
        a BN (SE, fc) use the L1 norm of the rows of the layer producing them."""
        total = torch.zeros(size)
        for key, names in self.spaces.items():
            tensor = self.state.get(key)
            if key.endswith(IMPORTANCE_BNS) and names[0] == space and tensor is not None and tensor.shape[0] == size:
                total += tensor.detach().abs().float().cpu()
        if total.any():
            return total
        for key, names in self.spaces.items():
            tensor = self.state.get(key)
            if key.endswith("weight") and len(names) > 1 and names[0] == space and tensor is not None \
                    and tensor.shape[0] == size:
                return tensor.detach().abs().float().cpu().flatten(1).sum(1)
        return torch.arange(size, 0, -1, dtype=torch.float)  # no signal: keep the first channels
