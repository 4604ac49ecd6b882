"""The closed-form cost equals torch's flop counter exactly, on every block kind and on sampled genotypes."""

import itertools

import pytest

from menas_zoo.costs import counted_cost, genotype_cost
from menas_zoo.nets import build_model
from menas_zoo.space import Genotype, reference_genotype, sample_genotype

BLOCK_KINDS = [f"k{k}{h}_c{c}_s{s}{se}_{act}"
               for k, h, c, s, se, act in itertools.product((3, 5, 7), ("", "_h40"), (16, 24), (1, 2),
                                                            ("", "_se", "_se24"),
                                                             ("re", "hs"))]


@pytest.mark.parametrize("block", BLOCK_KINDS)
def test_closed_form_matches_counter_per_block_kind(block):
    # stem 16 -> the block: covers shortcut (c16 s1), no expand conv, explicit and default SE widths.
    genotype = Genotype.from_compact(f"stem16 / {block} / head32 / fc24")
    assert genotype_cost(genotype) == counted_cost(genotype)


@pytest.mark.parametrize("genotype", [reference_genotype("mobilenetv3-small"), reference_genotype("mobilenetv3-large"),
                                      *(sample_genotype("small", s) for s in range(3)),
                                      *(sample_genotype("tiny", s, max_params=p)
                                        for s, p in ((0, 100_000), (1, 500_000))),
                                      sample_genotype("imagenet", 4, in_chans=3)],
                         ids=lambda g: g.to_compact()[:40])
def test_closed_form_matches_counter_on_whole_networks(genotype):
    cost = genotype_cost(genotype)
    assert cost == counted_cost(genotype)
    assert cost.params == sum(p.numel() for p in build_model(genotype).parameters())


def test_published_mobilenetv3_macs():
    # Howard et al. report 56M (Small) and 217M (Large) multiply-adds at 224px.
    assert 56e6 <= genotype_cost(reference_genotype("mobilenetv3-small")).macs < 57e6
    assert 216e6 <= genotype_cost(reference_genotype("mobilenetv3-large")).macs < 218e6
