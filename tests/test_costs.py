"""Params and MACs from torch's flop counter agree with an independent analytic count."""

import pytest

from menas_zoo.costs import genotype_cost
from menas_zoo.nets import build_model
from menas_zoo.space import Genotype, reference_genotype, sample_genotype


def analytic(genotype: Genotype) -> tuple[int, int]:
    """Count conv and linear MACs and all parameters by hand from the genotype."""
    size = -(-genotype.resolution // genotype.stem_stride)
    params = genotype.in_chans * genotype.stem * 9 + 2 * genotype.stem
    macs = size * size * genotype.stem * genotype.in_chans * 9
    for _, _, cin, b in genotype.blocks():
        hidden = b.dw_channels(cin)
        if b.hidden is not None:
            params += cin * hidden + 2 * hidden
            macs += size * size * cin * hidden
        size = -(-size // b.stride)
        params += hidden * b.kernel ** 2 + 2 * hidden
        macs += size * size * hidden * b.kernel ** 2
        if b.se:
            params += hidden * b.se + b.se + b.se * hidden + hidden
            macs += 2 * hidden * b.se
        params += hidden * b.out + 2 * b.out
        macs += size * size * hidden * b.out
    last = genotype.last_channels
    params += last * genotype.head + 2 * genotype.head
    macs += size * size * last * genotype.head
    width = genotype.head
    if genotype.fc:
        params += width * genotype.fc + genotype.fc
        macs += width * genotype.fc
        width = genotype.fc
    params += width * genotype.num_classes + genotype.num_classes
    macs += width * genotype.num_classes
    return params, macs


@pytest.mark.parametrize("genotype", [reference_genotype("mobilenetv3-small"), reference_genotype("mobilenetv3-large"),
                                      *(sample_genotype("small", s) for s in range(3)),
                                      sample_genotype("imagenet", 4, in_chans=3)],
                         ids=lambda g: g.to_compact()[:40])
def test_counter_matches_analytic_count(genotype):
    cost = genotype_cost(genotype)
    assert (cost.params, cost.macs) == analytic(genotype)
    assert cost.params == sum(p.numel() for p in build_model(genotype).parameters())


def test_published_mobilenetv3_macs():
    # Howard et al. report 56M (Small) and 217M (Large) multiply-adds at 224px.
    assert 56e6 <= genotype_cost(reference_genotype("mobilenetv3-small")).macs < 57e6
    assert 216e6 <= genotype_cost(reference_genotype("mobilenetv3-large")).macs < 218e6
