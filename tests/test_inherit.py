"""Individual weight sharing: every inheritance rule on a tiny network, checked number by number."""

import torch
from conftest import randomize_bn

from menas_zoo.nets import build_model
from menas_zoo.search.inherit import channel_spaces, inherit_weights
from menas_zoo.space.genotype import BlockSpec, Genotype


def tiny(stage0=(BlockSpec(3, 8, 2, hidden=16, se=8, act="hswish"),), stage1=(BlockSpec(5, 16, 2, hidden=24),),
         fc=0) -> Genotype:
    return Genotype(stem=8, stages=(tuple(stage0), tuple(stage1)), head=32, fc=fc)


def trained_parent(genotype: Genotype, seed: int = 1):
    """A parent whose BN parameters and statistics are far from their defaults, as after training."""
    torch.manual_seed(seed)
    return randomize_bn(build_model(genotype)).eval()


def test_same_genotype_copies_everything_and_keeps_the_function(real_batch):
    parent = trained_parent(tiny())
    child = build_model(tiny())
    report = inherit_weights(child, parent.state_dict(), parent.genotype)
    assert report.adapted == 0 and report.fresh == 0 and report.copied == len(parent.state_dict())
    assert torch.equal(child.eval()(real_batch), parent(real_batch))


def test_smaller_kernel_is_the_centre_crop():
    parent = trained_parent(tiny())  # stage 1 block: kernel 5
    child = build_model(tiny(stage1=(BlockSpec(3, 16, 2, hidden=24),)))
    inherit_weights(child, parent.state_dict(), parent.genotype)
    got = child.stages[1][0].dw.conv.weight
    assert got.shape[-1] == 3
    assert torch.equal(got, parent.stages[1][0].dw.conv.weight[:, :, 1:4, 1:4])


def test_larger_kernel_is_zero_padded_and_keeps_the_function(real_batch):
    parent = trained_parent(tiny())  # stage 0 block: kernel 3
    child = build_model(tiny(stage0=(BlockSpec(7, 8, 2, hidden=16, se=8, act="hswish"),)))
    inherit_weights(child, parent.state_dict(), parent.genotype)
    weight = child.stages[0][0].dw.conv.weight
    assert torch.equal(weight[:, :, 2:5, 2:5], parent.stages[0][0].dw.conv.weight)
    ring = weight.clone()
    ring[:, :, 2:5, 2:5] = 0
    assert ring.abs().sum() == 0
    assert torch.allclose(child.eval()(real_batch), parent(real_batch), atol=1e-5)


def test_fewer_channels_keep_the_largest_gamma():
    parent = trained_parent(tiny())  # stage 1 block: 24 hidden channels
    child = build_model(tiny(stage1=(BlockSpec(5, 16, 2, hidden=16),)))
    inherit_weights(child, parent.state_dict(), parent.genotype)
    gamma = parent.stages[1][0].dw.bn.weight.detach()
    kept = gamma.abs().topk(16).indices.sort().values
    p, c = parent.stages[1][0], child.stages[1][0]
    assert torch.equal(c.dw.bn.weight, gamma[kept])
    assert torch.equal(c.expand.conv.weight, p.expand.conv.weight[kept])  # rows: same channels
    assert torch.equal(c.dw.conv.weight, p.dw.conv.weight[kept])
    assert torch.equal(c.project.conv.weight, p.project.conv.weight[:, kept])  # columns: same channels


def test_more_channels_copy_the_parent_and_initialize_the_rest():
    parent = trained_parent(tiny(stage0=(BlockSpec(3, 8, 2, hidden=16),)))
    genotype = tiny(stage0=(BlockSpec(3, 8, 2, hidden=24),))
    torch.manual_seed(7)
    fresh = build_model(genotype)
    torch.manual_seed(7)
    child = build_model(genotype)
    inherit_weights(child, parent.state_dict(), parent.genotype)
    p, c, f = parent.stages[0][0], child.stages[0][0], fresh.stages[0][0]
    assert torch.equal(c.expand.conv.weight[:16], p.expand.conv.weight)
    assert torch.equal(c.expand.conv.weight[16:], f.expand.conv.weight[16:])
    assert torch.equal(c.dw.bn.weight[:16], p.dw.bn.weight)
    assert torch.equal(c.dw.bn.weight[16:], torch.ones(8))
    assert torch.equal(c.project.conv.weight[:, :16], p.project.conv.weight)


def test_wider_stage_shares_one_channel_selection_across_its_blocks():
    two = (BlockSpec(3, 16, 2, hidden=24), BlockSpec(3, 16, 1, hidden=32))
    parent = trained_parent(tiny(stage1=two))
    narrower = (BlockSpec(3, 8, 2, hidden=24), BlockSpec(3, 8, 1, hidden=32))
    child = build_model(tiny(stage1=narrower))
    inherit_weights(child, parent.state_dict(), parent.genotype)
    # The stage's channels are ranked by the summed |gamma| of every block adding into them.
    importance = sum(b.project.bn.weight.detach().abs() for b in parent.stages[1])
    kept = importance.topk(8).indices.sort().values
    for b in range(2):
        assert torch.equal(child.stages[1][b].project.bn.weight, parent.stages[1][b].project.bn.weight[kept])
    assert torch.equal(child.stages[1][1].expand.conv.weight, parent.stages[1][1].expand.conv.weight[:, kept])


def test_new_block_starts_as_the_identity(real_batch):
    parent = trained_parent(tiny())
    deeper = tiny(stage1=(BlockSpec(5, 16, 2, hidden=24), BlockSpec(3, 16, 1, hidden=48, se=16)))
    child = build_model(deeper)
    report = inherit_weights(child, parent.state_dict(), parent.genotype)
    assert report.new_blocks == ["stages.1.1"]
    assert child.stages[1][1].project.bn.weight.abs().sum() == 0
    assert torch.allclose(child.eval()(real_batch), parent(real_batch), atol=1e-6)


def test_classifier_reading_another_layer_keeps_its_initialization():
    parent = trained_parent(tiny(fc=0))
    torch.manual_seed(3)
    fresh = build_model(tiny(fc=16))
    torch.manual_seed(3)
    child = build_model(tiny(fc=16))
    report = inherit_weights(child, parent.state_dict(), parent.genotype)
    assert torch.equal(child.classifier.weight, fresh.classifier.weight)
    assert torch.equal(child.head.conv.weight, parent.head.conv.weight)
    assert torch.equal(child.classifier.bias, parent.classifier.bias)  # per class in both: still meaningful
    assert report.fresh == 3  # fc.0.weight, fc.0.bias, classifier.weight


def test_channel_spaces_cover_every_tensor():
    genotype = tiny(fc=16)
    model = build_model(genotype)
    spaces = channel_spaces(genotype)
    state = model.state_dict()
    assert set(spaces) == set(state)
    assert all(len(spaces[k]) == state[k].ndim for k in state)
