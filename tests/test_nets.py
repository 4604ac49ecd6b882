"""The builder: references match torchvision exactly; every genotype builds and runs channels_last."""

import pytest
import torch
import torchvision

from menas_zoo.nets import build_model
from menas_zoo.space import reference_genotype, sample_genotype


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, factory", [("mobilenetv3-small", torchvision.models.mobilenet_v3_small),
                                           ("mobilenetv3-large", torchvision.models.mobilenet_v3_large)])
@pytest.mark.parametrize("num_classes", [1000, 10])
def test_reference_param_count_equals_torchvision(name, factory, num_classes):
    ours = build_model(reference_genotype(name, num_classes=num_classes))
    theirs = factory(num_classes=num_classes)
    assert n_params(ours) == n_params(theirs)
    # Same layer shapes in the same order, not just the same total.
    assert sorted(p.shape for p in ours.parameters()) == sorted(p.shape for p in theirs.parameters())


@pytest.mark.parametrize("seed", range(4))
def test_sampled_genotypes_run_channels_last(seed):
    genotype = sample_genotype("small", seed)
    model = build_model(genotype).eval().to(memory_format=torch.channels_last)
    x = torch.randn(3, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.genotype is genotype


def test_shortcut_only_when_shapes_match():
    model = build_model(sample_genotype("small", 5))
    for (_, _, in_chans, block), (_, _, module) in zip(model.genotype.blocks(), model.blocks()):
        assert module.has_shortcut == (block.stride == 1 and in_chans == block.out)


def test_imagenet_reference_runs_at_224():
    model = build_model(reference_genotype("mobilenetv3-small")).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
