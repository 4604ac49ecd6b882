"""Genotype -> ``nn.Module``: the one network class of MobileNet3-MT.

    stem    conv3x3 + BN + h-swish                        (B, in_chans, R, R) -> (B, stem, R/s, R/s)
    stages  inverted-residual blocks, one nn.Sequential per stage
    head    conv1x1 + BN + h-swish -> global average pool  -> (B, head)
    fc      [Linear + h-swish] + dropout -> Linear         -> (B, num_classes)

Every width is read from the genotype, so a physically pruned network (odd hidden widths, an SE
narrower or wider than the MobileNetV3 rule) is just another genotype. Module names are stable
(``stages.S.B.expand/dw/se/project``): slimming and weight inheritance address layers by them.
"""

from __future__ import annotations

import dataclasses

from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

from menas_zoo.space.genotype import BlockSpec, Genotype

BN_EPS = 1e-3


def make_act(name: str | None) -> nn.Module:
    return {"relu": nn.ReLU(inplace=True), "hswish": nn.Hardswish(inplace=True), None: nn.Identity()}[name]


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN -> activation; ``act=None`` for the linear projection."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu"):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_chans, eps=BN_EPS),
            act=make_act(act),
        ))


class SqueezeExcite(nn.Module):
    """Channel attention with an explicit squeeze width (pruning narrows ``channels``, not ``width``)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, width, 1)
        self.expand = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        gate = self.expand(torch.relu(self.reduce(gate)))
        return x * nn.functional.hardsigmoid(gate)


class InvertedResidual(nn.Module):
    """[expand 1x1] -> depthwise kxk -> [SE] -> project 1x1, with an identity shortcut when shapes allow."""

    def __init__(self, in_chans: int, block: BlockSpec):
        super().__init__()
        hidden = block.dw_channels(in_chans)
        self.expand = ConvBNAct(in_chans, hidden, 1, act=block.act) if block.hidden is not None else nn.Identity()
        self.dw = ConvBNAct(hidden, hidden, block.kernel, block.stride, groups=hidden, act=block.act)
        self.se = SqueezeExcite(hidden, block.se) if block.se else nn.Identity()
        self.project = ConvBNAct(hidden, block.out, 1, act=None)
        self.has_shortcut = block.has_shortcut(in_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))  # (B, out, H/s, W/s)
        return x + out if self.has_shortcut else out


class MobileNetMT(nn.Module):
    """A MobileNet3-MT network built from its genotype (``model.genotype``)."""

    def __init__(self, genotype: Genotype, dropout: float = 0.2):
        super().__init__()
        self.genotype = genotype
        g = genotype
        self.stem = ConvBNAct(g.in_chans, g.stem, 3, g.stem_stride, act="hswish")
        self.stages = nn.Sequential(*(
            nn.Sequential(*(InvertedResidual(in_chans, block) for _, _, in_chans, block in _stage_blocks(g, s)))
            for s in range(len(g.stages))
        ))
        self.head = ConvBNAct(g.last_channels, g.head, 1, act="hswish")
        if g.fc:
            self.fc = nn.Sequential(nn.Linear(g.head, g.fc), nn.Hardswish(inplace=True))
        else:
            self.fc = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(g.fc or g.head, g.num_classes)
        if not self.classifier.weight.is_meta:  # a meta network only has shapes (checked before loading)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))  # (B, head, H', W')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))  # (B, head)
        return self.classifier(self.dropout(self.fc(x)))  # (B, num_classes)

    def blocks(self) -> Iterator[tuple[int, int, InvertedResidual]]:
        """Yield ``(stage, index, block_module)`` in genotype order."""
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                yield s, b, block

    def block_table(self) -> list[dict]:
        """One row per block: its string, widths, options and parameter count (what ``info`` shows)."""
        rows = []
        for (s, b, in_ch, block), (_, _, module) in zip(self.genotype.blocks(), self.blocks()):
            rows.append({"stage": s + 1, "block": b + 1, "string": block.to_string(in_ch), "in": in_ch,
                         "hidden": block.dw_channels(in_ch), "out": block.out, "kernel": block.kernel,
                         "stride": block.stride, "se": block.se, "act": block.act,
                         "shortcut": block.has_shortcut(in_ch), "params": sum(p.numel() for p in module.parameters())})
        return rows


def _stage_blocks(genotype: Genotype, stage: int):
    return [entry for entry in genotype.blocks() if entry[0] == stage]


def build_model(genotype: Genotype, dropout: float = 0.2) -> MobileNetMT:
    """Build the network of ``genotype`` with fresh weights."""
    return MobileNetMT(genotype, dropout=dropout)


def adapt_model(model: MobileNetMT, *, num_classes: int | None = None, in_chans: int | None = None) -> MobileNetMT:
    """The same trained network for another number of classes or input channels, keeping every weight
    that still fits (what fine-tuning a zoo model on one's own data starts from).

    Other classes: a new classifier, freshly initialized (the old one scores classes that no longer
    exist). Other channels: the stem's 3x3 conv is kept, its input-channel weights summed for one
    channel, or repeated cyclically and scaled by old/new for more, so a grey image repeated over the
    new channels gives the same features as before.
    """
    g = model.genotype
    num_classes = g.num_classes if num_classes is None else num_classes
    in_chans = g.in_chans if in_chans is None else in_chans
    if (num_classes, in_chans) == (g.num_classes, g.in_chans):
        return model
    new = MobileNetMT(dataclasses.replace(g, num_classes=num_classes, in_chans=in_chans), dropout=model.dropout.p)
    state = model.state_dict()
    if num_classes != g.num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if in_chans != g.in_chans:
        state["stem.conv.weight"] = _adapt_stem_weight(state["stem.conv.weight"], in_chans)
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing), (missing, unexpected)
    return new.train(model.training)


def _adapt_stem_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(out, old, k, k) -> (out, in_chans, k, k): summed for one channel, else tiled and scaled by old/new."""
    old = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_chans) % old
    return weight[:, index] * (old / in_chans)
